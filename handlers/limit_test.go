package handlers_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

// TestLimiterOutcomes: the limiter sees every attempt with the sink's own
// latency (never the backoff) and an outcome that says whether the failure
// was a load signal.
func TestLimiterOutcomes(t *testing.T) {
	tests := []struct {
		name string
		give error
		want backpressure.Signal
	}{
		{"success", nil, backpressure.Success},
		{"timeout", context.DeadlineExceeded, backpressure.Overload},
		{"overloaded", handlers.Overloaded(errFlaky), backpressure.Overload},
		{"http 429", &handlers.HTTPError{Status: http.StatusTooManyRequests}, backpressure.Overload},
		{"http 503", &handlers.HTTPError{Status: http.StatusServiceUnavailable}, backpressure.Overload},
		{"retry after", handlers.RetryAfter(errFlaky, time.Second), backpressure.Overload},
		{"http 500", &handlers.HTTPError{Status: http.StatusInternalServerError}, backpressure.Ignore},
		{"http 400", &handlers.HTTPError{Status: http.StatusBadRequest}, backpressure.Ignore},
		{"plain error", errFlaky, backpressure.Ignore},
		{"permanent", pipeline.Permanent(errFlaky), backpressure.Ignore},
		{"panic", errPanic, backpressure.Ignore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			lim := newFixedLimiter(4)
			sink := func(context.Context, msg) error {
				clk.Advance(7 * time.Millisecond)
				if tt.give == errPanic {
					panic("boom")
				}
				return tt.give
			}
			h := mustGuard(t, sink, handlers.Clock(clk), handlers.Limiter(lim),
				handlers.Retry(handlers.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Second, MaxDelay: time.Second}))
			_ = h(context.Background(), msg{})
			rs := lim.Releases()
			if len(rs) == 0 {
				t.Fatal("no release")
			}
			for _, r := range rs {
				if r.outcome != tt.want || r.latency != 7*time.Millisecond {
					t.Errorf("release(%v, %v); want (7ms, %v)", r.latency, r.outcome, tt.want)
				}
			}
			if lim.InFlight() != 0 {
				t.Errorf("%d slots still held", lim.InFlight())
			}
		})
	}
}

// TestLimiterCancelledIsIgnored: an attempt cut short by a revoke says
// nothing about load.
func TestLimiterCancelledIsIgnored(t *testing.T) {
	lim := newFixedLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	sink := func(ctx context.Context, m msg) error { cancel(); return ctx.Err() }
	h := mustGuard(t, sink, handlers.Limiter(lim))
	if err := h(ctx, msg{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if rs := lim.Releases(); len(rs) != 1 || rs[0].outcome != backpressure.Ignore {
		t.Errorf("releases = %v; want one Ignore", rs)
	}
}

// TestLimiterWaitRespectsDeadline: a slot obtained too late is given back
// unused and the record ends as a deadline failure without an attempt.
func TestLimiterWaitRespectsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newFixedLimiter(1)
		release := make(chan struct{})
		sink := func(ctx context.Context, m msg) error {
			if m.id == 1 {
				<-release
			}
			return nil
		}
		h := mustGuard(t, sink, handlers.Limiter(lim), handlers.MinBudget(50*time.Millisecond))
		done := make(chan error)
		go func() { done <- h(context.Background(), msg{id: 1}) }()
		synctest.Wait() // record 1 holds the only slot

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		go func() {
			time.Sleep(980 * time.Millisecond)
			close(release)
		}()
		err := h(ctx, msg{id: 2})
		var fe *pipeline.FailureError
		if !errors.As(err, &fe) || fe.Class != pipeline.ClassDeadline || fe.Attempts != 0 {
			t.Errorf("err = %v; want class deadline after 0 attempts", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if rs := lim.Releases(); len(rs) != 2 || rs[1].outcome != backpressure.Ignore {
			t.Errorf("releases = %v; want the late slot released as Ignore", rs)
		}
	})
}

// TestTimeoutCappedByBudget: each attempt gets the per-attempt timeout, or
// the time left before the deadline if that is shorter; a timed-out attempt
// is retried.
func TestTimeoutCappedByBudget(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration
		deadline time.Duration // 0: none
		want     []time.Duration
	}{
		{"no deadline", 100 * time.Millisecond, 0, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
		{"deadline further", 100 * time.Millisecond, time.Second, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
		{"deadline nearer", time.Second, 150 * time.Millisecond, []time.Duration{150 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got []time.Duration
				sink := func(ctx context.Context, m msg) error {
					dl, ok := ctx.Deadline()
					if !ok {
						t.Fatal("attempt without a deadline")
					}
					got = append(got, time.Until(dl))
					<-ctx.Done()
					return ctx.Err()
				}
				h := mustGuard(t, sink, handlers.Timeout(tt.timeout),
					handlers.Retry(handlers.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}))
				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				err := h(ctx, msg{})
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v; want it to wrap context.DeadlineExceeded", err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("attempt budgets = %v; want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("attempt budgets = %v; want %v", got, tt.want)
					}
				}
			})
		})
	}
}

// countingClock counts the guards' clock reads.
type countingClock struct {
	*fakeClock
	reads atomic.Int64
}

func (c *countingClock) Now() time.Time {
	c.reads.Add(1)
	return c.fakeClock.Now()
}

// TestGuardReadsTheClockTwicePerAttempt: the time of an attempt is read
// once by the retry layer and passed down, and the end once by the limiter,
// whatever guards sit between (the breaker, which reads the wall clock in
// gobreaker, aside).
func TestGuardReadsTheClockTwicePerAttempt(t *testing.T) {
	clk := &countingClock{fakeClock: newFakeClock()}
	lim, err := backpressure.NewAdaptive(backpressure.Clock(clk))
	if err != nil {
		t.Fatal(err)
	}
	sink := func(context.Context, msg) error { clk.Advance(time.Millisecond); return nil }
	h := mustGuard(t, sink, handlers.Clock(clk),
		handlers.Budget(time.Minute),
		handlers.Retry(handlers.RetryPolicy{}),
		handlers.RateLimit(rate.Inf, 1),
		handlers.Limiter(lim),
		handlers.Timeout(time.Second))
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(time.Hour))
	defer cancel()
	const calls = 100
	before := clk.reads.Load()
	for range calls {
		if err := h(ctx, msg{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := clk.reads.Load() - before; got != 2*calls {
		t.Fatalf("%d clock reads for %d calls; want 2 each", got, calls)
	}
	if got := lim.InFlight(); got != 0 {
		t.Fatalf("%d slots held after the calls", got)
	}
}
