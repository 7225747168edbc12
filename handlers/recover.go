package handlers

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// recoverLayer is the innermost guard but chaos: a panic in the layers
// inside becomes a *pipeline.PanicError carrying its stack (the retry layer
// gives the record up with class panic, and the pipeline logs the panic
// with its stack once, when it dead-letters the record). It also reports
// HookAttempt.
func recoverLayer[M any](c *cfg) layer[M] {
	name, clock, hooks := c.name, c.clock, &c.hooks
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (end time.Time, err error) {
			hooked := len(hooks.attempt) > 0
			var start time.Time
			if hooked {
				start = orNow(clock, at.now)
			}
			defer func() {
				if v := recover(); v != nil {
					end = clock.Now()
					err = &pipeline.PanicError{Value: v, Stack: debug.Stack(), At: end}
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
