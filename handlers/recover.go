package handlers

import (
	"context"
	"runtime/debug"
	"time"
)

// Recover returns the panic-recovery guard alone: a panic in the layers
// inside becomes a *FailureError of class panic wrapping a *PanicError, and
// is logged at error level with its stack. It also reports HookAttempt.
// Shared options used: name, logger, clock, hooks. Guard puts it innermost,
// around the user's sink.
func Recover[M any](opts ...Opt) (Middleware[M], error) {
	c, err := newCfg(opts)
	if err != nil {
		return nil, err
	}
	return recoverMW[M](c), nil
}

func recoverMW[M any](c *cfg) Middleware[M] {
	name, logger, clock, hooks := c.name, c.logger, c.clock, &c.hooks
	return func(next Handler[M]) Handler[M] {
		return func(ctx context.Context, m M) (err error) {
			var start time.Time
			if len(hooks.attempt) > 0 {
				start = clock.Now()
			}
			defer func() {
				if v := recover(); v != nil {
					stack := debug.Stack()
					logger.ErrorContext(ctx, "sink panicked", "sink", name, "panic", v, "stack", string(stack))
					now := clock.Now()
					err = &FailureError{Class: ClassPanic, Attempts: 1, First: now, Last: now, Err: &PanicError{Value: v, Stack: stack}}
				}
				if len(hooks.attempt) > 0 {
					lat := clock.Now().Sub(start)
					for _, h := range hooks.attempt {
						h.OnAttempt(name, lat, err)
					}
				}
			}()
			return next(ctx, m)
		}
	}
}
