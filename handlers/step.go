package handlers

import (
	"context"
	"time"

	"github.com/sluice-go/sluice"
)

// step is one layer of a guarded call below the retry layer. Clock reads
// are not free (tens of nanoseconds on a virtual machine, the largest cost
// of the chain), and neither are deadline contexts (an allocation each), so
// both travel with the call in an attempt instead of being made by every
// layer. A step returns the time the sink returned if a layer read it, else
// zero, so that the layers outside need not read it again.
type step[M any] func(ctx context.Context, m M, at attempt) (time.Time, error)

// attempt is what the retry layer passes down with each attempt.
type attempt struct {
	// now is a recent reading of the clock: the retry layer reads it once
	// per attempt, and a layer that waits reads it again before passing it
	// on. Zero if no layer asked for it; a layer that needs it then reads
	// it.
	now time.Time
	// dl is the record's deadline for this sink, or zero: ctx's own. Guard
	// passes Budget's deadline here rather than in a context of its
	// own when a per-attempt timeout follows, which then makes one context
	// carry both.
	dl time.Time
}

// deadline is the attempt's deadline: at.dl, or ctx's.
func (at attempt) deadline(ctx context.Context) (time.Time, bool) {
	if !at.dl.IsZero() {
		return at.dl, true
	}
	return ctx.Deadline()
}

// room reports whether the attempt leaves at least need before its
// deadline at now.
func (at attempt) room(ctx context.Context, now time.Time, need time.Duration) bool {
	dl, ok := at.deadline(ctx)
	return !ok || dl.Sub(now) >= need
}

// layer wraps a step in one guard.
type layer[M any] func(step[M]) step[M]

// sinkStep is the innermost step: the sink itself.
func sinkStep[M any](h func(context.Context, M) error) step[M] {
	return func(ctx context.Context, m M, _ attempt) (time.Time, error) {
		return time.Time{}, h(ctx, m)
	}
}

// orNow returns t, or the clock's time if t is zero.
func orNow(clock sluice.Clock, t time.Time) time.Time {
	if t.IsZero() {
		return clock.Now()
	}
	return t
}
