package handlers

import (
	"context"
	"time"

	"github.com/sluice-go/sluice/internal/deadline"
)

// Clock is the time source of the retry, rate-limit, budget, limiter and
// chaos guards. Tests inject a fake one so that backoffs and rate-limit waits
// take no real time. The breaker is the exception: gobreaker reads the wall
// clock, so its open period and waits use real time (test it under
// testing/synctest).
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done and then returns ctx.Err().
	// A d of zero or less returns at once (nil, or ctx.Err() if ctx is
	// already done).
	Sleep(ctx context.Context, d time.Duration) error
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error { return deadline.Sleep(ctx, d) }
