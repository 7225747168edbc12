package backpressure

import (
	"context"
	"time"
)

// Outcome says what a finished call tells a limiter about the downstream's
// load.
type Outcome int

const (
	// Success: the call completed; its latency is a load signal.
	Success Outcome = iota
	// Overload: the call failed in a way that signals load, such as a
	// timeout, HTTP 429 or 503, or an explicit overload error.
	Overload
	// Ignore: the call failed in a way that says nothing about load (a bad
	// request, a decode error, a cancelled context). The sample is dropped.
	Ignore
)

// Limiter bounds how many calls run at once.
//
// Callers Acquire before each call and Release after it with the latency of
// the call alone, measured around the downstream call and never across
// backoff sleeps or queueing.
type Limiter interface {
	// Acquire waits for a slot. It returns ctx.Err() if ctx is done first,
	// and then the caller must not Release.
	Acquire(ctx context.Context) error
	// Release frees a slot acquired earlier and reports the call's outcome.
	Release(latency time.Duration, outcome Outcome)
	// Limit is the current concurrency limit.
	Limit() int
	// InFlight is how many slots are held now.
	InFlight() int
}
