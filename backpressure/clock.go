package backpressure

import "time"

// Clock tells the time. The limiters only ever ask for the current time: they
// start no timers and no goroutines, so a virtual clock that a test or a
// simulator advances by hand drives every rule deterministically.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
