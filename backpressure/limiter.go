package backpressure

import (
	"context"
	"time"
)

// Signal is what a finished call tells a limiter about the downstream's
// load. It is not the fate of a record (pipeline.Outcome): a call that failed
// and will be retried may still be a Success sample of latency, and a failed
// call that says nothing about load is Ignore.
type Signal int

const (
	// Success: the call completed; its latency is a load signal.
	Success Signal = iota
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
	// Release frees a slot acquired earlier and reports what the call
	// says about the downstream's load.
	Release(latency time.Duration, s Signal)
	// Limit is the current concurrency limit.
	Limit() int
	// InFlight is how many slots are held now.
	InFlight() int
}
