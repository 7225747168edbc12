// Package deadline gives contexts a deadline without arming a timer until
// someone waits for it.
//
// context.WithDeadline starts a runtime timer and registers the child with
// its parent, about half a microsecond and several allocations, even when
// nothing ever waits on Done: the common case for a sink guard that only
// reads the deadline, and for a fast sink. A context from New reports its
// deadline and answers Err against the clock at once, and arms a real timer
// only on the first call to Done (a nested one arms its parent's too, as
// context.WithDeadline would register with it).
//
// It is internal because pipeline and handlers both use it and may not
// import each other; it knows nothing of either.
package deadline

import (
	"context"
	"sync/atomic"
	"time"
)

// New returns a context that is done when parent is or when d passes, like
// context.WithDeadline; its Cancel must be called when the work is done. It
// returns nil if parent's own deadline is not after d: parent will do, there
// is nothing to add. One allocation, of 48 bytes.
func New(parent context.Context, d time.Time) *Ctx {
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return nil
	}
	return &Ctx{parent: parent, deadline: d}
}

// Ctx is a deadline context whose timer is armed on the first Done.
type Ctx struct {
	parent   context.Context
	deadline time.Time
	// state is nil until the first Done or Cancel; then canceled (Cancel
	// came first) or the armed context.
	state atomic.Pointer[armed]
}

type armed struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// canceled marks a Ctx cancelled before anyone waited on it.
var canceled = new(armed)

// Deadline returns the deadline given to New.
func (c *Ctx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done arms the deadline's timer (and parent's, if it is a Ctx too) on the
// first call.
func (c *Ctx) Done() <-chan struct{} {
	if a := c.state.Load(); a != nil && a != canceled {
		return a.ctx.Done()
	}
	return c.arm().ctx.Done()
}

// arm makes the real context once; a Cancel that came first cancels it at
// once, one that comes after finds it.
func (c *Ctx) arm() *armed {
	parent := c.parent
	if p, ok := parent.(*Ctx); ok {
		// Hang the timer on the parent's real context: context registers a
		// child with a parent of its own kinds, and would start a goroutine
		// to watch any other kind (a Ctx) until one of them is done.
		parent = p.arm().ctx
	}
	for {
		a := c.state.Load()
		if a != nil && a != canceled {
			return a
		}
		ctx, cancel := context.WithDeadline(parent, c.deadline)
		if a == canceled {
			cancel()
		}
		n := &armed{ctx, cancel}
		if c.state.CompareAndSwap(a, n) {
			return n
		}
		cancel() // another Done or a Cancel came between: look again
	}
}

// Err reports the parent's error, Canceled after Cancel, or
// DeadlineExceeded once the deadline has passed (a clock read, until Done
// was called).
func (c *Ctx) Err() error {
	a := c.state.Load()
	if a != nil && a != canceled {
		return a.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if a == canceled {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value returns the parent's value for key.
func (c *Ctx) Value(key any) any { return c.parent.Value(key) }

// Cancel ends the context and releases its timer, if it was armed. It may
// be called more than once.
func (c *Ctx) Cancel() {
	for {
		a := c.state.Load()
		switch {
		case a == canceled:
			return
		case a != nil:
			a.cancel()
			return
		case c.state.CompareAndSwap(nil, canceled):
			return
		}
	}
}

func (c *Ctx) String() string { return "deadline.New(" + c.deadline.String() + ")" }

// Sleep waits d, or until ctx is done, and then returns ctx.Err(); it
// returns nil after a full wait. A d of zero or less returns at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
