package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/internal/deadline"
)

// The limiters of package backpressure offer these, and the guard uses
// them when a Limiter has them: TryAcquire admits without a clock read
// when a slot is free (the attempt's time is the call's start), ReleaseAt
// takes the end time the guard has read anyway.
type (
	tryAcquirer interface{ TryAcquire() bool }
	releaserAt  interface {
		ReleaseAt(end time.Time, latency time.Duration, o backpressure.Signal)
	}
)

func limitLayer[M any](c *cfg, l backpressure.Limiter) layer[M] {
	clock, classify, min := c.clock, c.classifier, c.minBudget
	try, _ := l.(tryAcquirer)
	at, _ := l.(releaserAt)
	release := func(end time.Time, lat time.Duration, o backpressure.Signal) {
		if at != nil {
			at.ReleaseAt(end, lat, o)
			return
		}
		l.Release(lat, o)
	}
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (end time.Time, err error) {
			var start time.Time
			// A free slot is taken without looking at ctx: asking a
			// deadline context for Err reads the clock, and the sink sees
			// ctx anyway.
			if try != nil && try.TryAcquire() {
				start = orNow(clock, at.now)
			} else {
				if err := acquire(ctx, l, at); err != nil {
					return time.Time{}, waitErr(err)
				}
				start = clock.Now() // it may have waited
			}
			if !at.room(ctx, start, min) {
				release(start, 0, backpressure.Ignore)
				return time.Time{}, errNoBudget
			}
			done := false
			defer func() {
				// Only reached without done if next panicked.
				if !done {
					end := clock.Now()
					release(end, end.Sub(start), backpressure.Ignore)
				}
			}()
			at.now = start
			end, err = next(ctx, m, at)
			done = true
			end = orNow(clock, end)
			release(end, end.Sub(start), outcome(ctx, classify, err))
			return end, err
		}
	}
}

// acquire waits for a slot of l, until ctx is done or the attempt's
// deadline passes.
func acquire(ctx context.Context, l backpressure.Limiter, at attempt) error {
	if !at.dl.IsZero() {
		if c := deadline.New(ctx, at.dl); c != nil {
			defer c.Cancel()
			ctx = c
		}
	}
	return l.Acquire(ctx)
}

// outcome is what an attempt's error tells the limiter about load.
func outcome(ctx context.Context, classify Classifier, err error) backpressure.Signal {
	switch {
	case err == nil:
		return backpressure.Success
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled), errors.Is(err, context.Canceled):
		return backpressure.Ignore
	case verdict(classify, err).Overload:
		return backpressure.Overload
	}
	return backpressure.Ignore
}

func timeoutLayer[M any](c *cfg, d time.Duration) layer[M] {
	clock, min := c.clock, c.minBudget
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (time.Time, error) {
			now := orNow(clock, at.now)
			at.now = now
			dl := now.Add(d)
			if rec, ok := at.deadline(ctx); ok {
				left := rec.Sub(now)
				if left < min {
					return time.Time{}, errNoBudget
				}
				if left <= d {
					// The record's deadline is the tighter bound.
					dl = rec
				}
			}
			// One context for the record's deadline and the timeout; no
			// timer until the sink waits on Done, so a sink that never
			// blocks pays no timer at all.
			if c := deadline.New(ctx, dl); c != nil {
				defer c.Cancel()
				ctx = c
			}
			return next(ctx, m, at)
		}
	}
}
