package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/internal/deadline"
)

// Limit returns the concurrency guard alone: every call acquires a slot of l
// and releases it with the latency of the layers inside (the sink alone in
// Guard) and its outcome (see WithLimiter). Shared options used: clock,
// classifier, minimum budget. A slot acquired too late, with less than the
// minimum budget left, is released unused and the guard returns an error
// matching ErrDeadline.
func Limit[M any](l backpressure.Limiter, opts ...Opt) (Middleware[M], error) {
	c, err := newCfg(append(opts[:len(opts):len(opts)], WithLimiter(l)))
	if err != nil {
		return nil, err
	}
	return limit[M](c, l), nil
}

func limit[M any](c *cfg, l backpressure.Limiter) Middleware[M] {
	clock, classify, min := c.clock, c.classifier, c.minBudget
	return func(next Handler[M]) Handler[M] {
		return func(ctx context.Context, m M) (err error) {
			if err := l.Acquire(ctx); err != nil {
				return waitErr(err)
			}
			start := clock.Now()
			if !room(ctx, start, min) {
				l.Release(0, backpressure.Ignore)
				return errNoBudget
			}
			done := false
			defer func() {
				// Only reached without done if next panicked.
				if !done {
					l.Release(clock.Now().Sub(start), backpressure.Ignore)
				}
			}()
			err = next(ctx, m)
			done = true
			l.Release(clock.Now().Sub(start), outcome(ctx, classify, err))
			return err
		}
	}
}

// outcome is what an attempt's error tells the limiter about load.
func outcome(ctx context.Context, classify Classifier, err error) backpressure.Outcome {
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

// Timeout returns the per-attempt timeout guard alone: each call gets at most
// d, or the time left before its deadline if that is shorter. Shared options
// used: clock, minimum budget. A call with less than the minimum budget left
// is not started; the guard returns an error matching ErrDeadline.
func Timeout[M any](d time.Duration, opts ...Opt) (Middleware[M], error) {
	c, err := newCfg(append(opts[:len(opts):len(opts)], WithTimeout(d)))
	if err != nil {
		return nil, err
	}
	return timeout[M](c, d), nil
}

func timeout[M any](c *cfg, d time.Duration) Middleware[M] {
	clock, min := c.clock, c.minBudget
	return func(next Handler[M]) Handler[M] {
		return func(ctx context.Context, m M) error {
			now := clock.Now()
			if dl, ok := ctx.Deadline(); ok {
				left := dl.Sub(now)
				if left < min {
					return errNoBudget
				}
				if left <= d {
					// The record's deadline is the tighter bound.
					return next(ctx, m)
				}
			}
			// No timer until the sink waits on Done: a sink that never
			// blocks pays no timer at all.
			ctx, cancel := deadline.With(ctx, now.Add(d))
			defer cancel()
			return next(ctx, m)
		}
	}
}
