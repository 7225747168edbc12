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
	return middleware(recoverLayer[M](c)), nil
}

func recoverLayer[M any](c *cfg) layer[M] {
	name, logger, clock, hooks := c.name, c.logger, c.clock, &c.hooks
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (end time.Time, err error) {
			hooked := len(hooks.attempt) > 0
			var start time.Time
			if hooked {
				start = orNow(clock, at.now)
			}
			defer func() {
				if v := recover(); v != nil {
					stack := debug.Stack()
					logger.ErrorContext(ctx, "sink panicked", "sink", name, "panic", v, "stack", string(stack))
					end = clock.Now()
					err = &FailureError{Class: ClassPanic, Attempts: 1, First: end, Last: end, Err: &PanicError{Value: v, Stack: stack}}
				}
				if hooked {
					end = orNow(clock, end)
					lat := end.Sub(start)
					for _, h := range hooks.attempt {
						h.OnAttempt(name, lat, err)
					}
				}
			}()
			return next(ctx, m, at)
		}
	}
}
