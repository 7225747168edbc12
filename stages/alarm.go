package stages

import (
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// alarm calls fire at a time set by its stage, on the pipeline's clock, from
// a goroutine the partition owns. fire returns the next time to fire at, or
// the zero time for none. The stage sets a new time with set; the latest set
// wins.
type alarm struct {
	env  *pipeline.Env
	fire func() time.Time
	at   chan time.Time // capacity 1: the latest time set
	quit chan struct{}
}

func newAlarm(env *pipeline.Env, fire func() time.Time) *alarm {
	a := &alarm{env: env, fire: fire, at: make(chan time.Time, 1), quit: make(chan struct{})}
	env.Go(a.run)
	return a
}

// set asks for fire to be called at t. Calls must not be concurrent (stages
// call it under their lock).
func (a *alarm) set(t time.Time) {
	select {
	case <-a.at:
	default:
	}
	a.at <- t
}

// stop ends the alarm's goroutine; fire is not called after stop returns...
// unless it was already running, which the stage handles with its lock.
func (a *alarm) stop() { close(a.quit) }

func (a *alarm) run() {
	clock := a.env.Clock()
	done := a.env.Context().Done()
	var timer sluice.Timer
	var fired <-chan time.Time
	arm := func(t time.Time) {
		if timer != nil {
			timer.Stop()
			timer, fired = nil, nil
		}
		if !t.IsZero() {
			timer = clock.NewTimer(max(0, t.Sub(clock.Now())))
			fired = timer.C()
		}
	}
	defer arm(time.Time{})
	for {
		select {
		case t := <-a.at:
			arm(t)
		case <-fired:
			timer, fired = nil, nil
			arm(a.fire())
		case <-a.quit:
			return
		case <-done:
			return
		}
	}
}
