package handlers_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

// TestRateLimitHoldsOverRetries: the rate limit paces every attempt, retries
// included: in any interval, attempts stay within burst + rate * interval.
func TestRateLimitHoldsOverRetries(t *testing.T) {
	tests := []struct {
		name  string
		limit rate.Limit
		burst int
		fails int // failures before each record succeeds
	}{
		{"10/s burst 1, two retries each", 10, 1, 2},
		{"100/s burst 20, one retry each", 100, 20, 1},
		{"3/s burst 3, no retries", 3, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			rec := &recorder{}
			var starts []time.Time
			var n int
			sink := func(context.Context, msg) error {
				starts = append(starts, clk.Now())
				n++
				if n%(tt.fails+1) != 0 {
					return errFlaky
				}
				return nil
			}
			h := mustGuard(t, sink, handlers.Clock(clk), handlers.Hooks(rec), handlers.RateLimit(tt.limit, tt.burst),
				handlers.Retry(handlers.RetryPolicy{MaxAttempts: tt.fails + 1, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond,
					Budget: handlers.RetryBudget{Unlimited: true}}))
			const records = 200
			for range records {
				if err := h(context.Background(), msg{}); err != nil {
					t.Fatal(err)
				}
			}
			if want := records * (tt.fails + 1); len(starts) != want {
				t.Fatalf("attempts = %d; want %d", len(starts), want)
			}
			assertPaced(t, starts, tt.limit, tt.burst)
			if len(rec.waits) != len(starts) {
				t.Errorf("rate-wait hook called %d times for %d attempts", len(rec.waits), len(starts))
			}
		})
	}
}

// TestInfiniteRateLimitLetsEveryAttemptThrough: RateLimit(rate.Inf, ...)
// never waits, retries included, and still tells the hook about every
// attempt (with a wait of zero).
func TestInfiniteRateLimitLetsEveryAttemptThrough(t *testing.T) {
	for _, withHook := range []bool{false, true} {
		clk := newFakeClock()
		rec := &recorder{}
		var n int
		sink := func(context.Context, msg) error {
			n++
			if n%2 == 1 {
				return errFlaky
			}
			return nil
		}
		opts := []handlers.Opt{handlers.Clock(clk), handlers.RateLimit(rate.Inf, 1),
			handlers.Retry(handlers.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond,
				Budget: handlers.RetryBudget{Unlimited: true}})}
		if withHook {
			opts = append(opts, handlers.Hooks(rec))
		}
		h := mustGuard(t, sink, opts...)
		start := clk.Now()
		for range 100 {
			if err := h(context.Background(), msg{}); err != nil {
				t.Fatal(err)
			}
		}
		if n != 200 {
			t.Fatalf("hook %t: %d attempts; want 200", withHook, n)
		}
		if d := clk.Now().Sub(start); d > time.Millisecond {
			t.Errorf("hook %t: the attempts waited %v", withHook, d)
		}
		if !withHook {
			continue
		}
		if len(rec.waits) != n {
			t.Errorf("rate-wait hook called %d times for %d attempts", len(rec.waits), n)
		}
		for _, w := range rec.waits {
			if w != 0 {
				t.Fatalf("rate-wait hook told of a wait of %v", w)
			}
		}
	}
}

// assertPaced checks that any window [starts[i], starts[j]] holds at most
// burst + limit * width attempts.
func assertPaced(t *testing.T, starts []time.Time, limit rate.Limit, burst int) {
	t.Helper()
	for i := range starts {
		for j := i; j < len(starts); j++ {
			width := starts[j].Sub(starts[i]).Seconds()
			if n := float64(j - i + 1); n > float64(burst)+float64(limit)*width+1e-6 {
				t.Fatalf("%v attempts within %.3fs; the limit allows %v", n, width, float64(burst)+float64(limit)*width)
			}
		}
	}
	total := starts[len(starts)-1].Sub(starts[0]).Seconds()
	if rate := float64(len(starts)) / total; rate > 1.01*float64(limit)+float64(burst)/total {
		t.Errorf("average rate %.2f/s over %.1fs; limit %v", rate, total, limit)
	}
}

// TestRateLimitConcurrent: many workers share one sink's rate limit.
func TestRateLimitConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var starts []time.Time
		sink := func(context.Context, msg) error {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return nil
		}
		h := mustGuard(t, sink, handlers.RateLimit(50, 5))
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				// A record whose wait would overrun the deadline is given
				// up at once; then stop.
				for h(ctx, msg{}) == nil {
				}
			})
		}
		wg.Wait()
		if len(starts) < 150 {
			t.Fatalf("only %d attempts in 4s at 50/s", len(starts))
		}
		assertPaced(t, starts, 50, 5)
	})
}

// TestGroupRateLimitDividesByMembers: each member allows total / members.
func TestGroupRateLimitDividesByMembers(t *testing.T) {
	clk := newFakeClock()
	var members atomic.Int64
	members.Store(4)
	var starts []time.Time
	sink := func(context.Context, msg) error { starts = append(starts, clk.Now()); return nil }
	h := mustGuard(t, sink, handlers.Clock(clk), handlers.GroupRateLimit(100, 8, func() int { return int(members.Load()) }))
	run := func(d time.Duration) (n int) {
		before, end := len(starts), clk.Now().Add(d)
		for clk.Now().Before(end) {
			if err := h(context.Background(), msg{}); err != nil {
				t.Fatal(err)
			}
		}
		return len(starts) - before
	}
	tests := []struct {
		members int64
		want    float64 // attempts a second
	}{
		{4, 25}, {2, 50}, {1, 100}, {0, 100}, {10, 10},
	}
	for _, tt := range tests {
		members.Store(tt.members)
		run(time.Second) // settle the bucket
		got := float64(run(10*time.Second)) / 10
		if got < tt.want*0.95 || got > tt.want*1.05 {
			t.Errorf("%d members: %.1f attempts/s; want about %v", tt.members, got, tt.want)
		}
	}
}

// TestRateLimitWaitRespectsDeadline: an attempt whose rate-limit wait would
// overrun the deadline is not started and takes no token.
func TestRateLimitWaitRespectsDeadline(t *testing.T) {
	clk := newFakeClock()
	var calls atomic.Int64
	h := mustGuard(t, scripted(&calls), handlers.Clock(clk), handlers.RateLimit(1, 1))
	if err := h(context.Background(), msg{}); err != nil { // takes the only token
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(500*time.Millisecond))
	defer cancel()
	err := h(ctx, msg{})
	var fe *pipeline.FailureError
	if !asFailure(err, &fe) || fe.Class != pipeline.ClassDeadline || fe.Attempts != 0 {
		t.Fatalf("err = %v; want class deadline after 0 attempts", err)
	}
	if len(clk.Sleeps()) != 0 {
		t.Errorf("slept %v for a doomed attempt", clk.Sleeps())
	}
	// The refused attempt gave its reservation back: one second after the
	// first call, a token is there again.
	clk.Advance(time.Second)
	if err := h(context.Background(), msg{}); err != nil || len(clk.Sleeps()) != 0 {
		t.Errorf("err = %v, sleeps = %v; want an immediate attempt", err, clk.Sleeps())
	}
}
