package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

// The breaker follows the wall clock (gobreaker does), so these tests run in
// a synctest bubble, where the wall clock is fake and advances only when
// every goroutine of the bubble is blocked.

// breakerHandler is the breaker guard alone (handlers.BreakerAlone, an
// internal seam of export_test.go): the breaker's own counting, opening and
// probing, which Guard's retry layer would hide behind its outage waits.
func breakerHandler(t *testing.T, p handlers.BreakerPolicy, rec *recorder, sink func(context.Context, msg) error) func(context.Context, msg) error {
	t.Helper()
	h, err := handlers.BreakerAlone(sink, handlers.Breaker(p), handlers.Logger(quiet), handlers.Hooks(rec))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBreakerOpensWithinHalfWindow: after a window full of successes, 100%
// failure at a steady rate opens the breaker within half its window, the
// worst case for a failure ratio of one half.
func TestBreakerOpensWithinHalfWindow(t *testing.T) {
	tests := []struct {
		give handlers.BreakerPolicy
		rate int // calls a second
	}{
		{handlers.BreakerPolicy{}, 10},
		{handlers.BreakerPolicy{Window: 2 * time.Second, Buckets: 4, MinRequests: 10}, 50},
		{handlers.BreakerPolicy{Window: time.Minute, Buckets: 6, MinRequests: 20}, 5},
		{handlers.BreakerPolicy{Window: 10 * time.Second, Buckets: 20, FailureRatio: 0.3}, 7},
		{handlers.BreakerPolicy{Window: 10 * time.Second, Buckets: 1}, 10},
	}
	for _, tt := range tests {
		window := tt.give.Window
		if window == 0 {
			window = handlers.DefaultBreakerWindow
		}
		t.Run(fmt.Sprintf("%+v at %d per s", tt.give, tt.rate), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				var failing atomic.Bool
				h := breakerHandler(t, tt.give, rec, func(context.Context, msg) error {
					if failing.Load() {
						return errFlaky
					}
					return nil
				})
				gap := time.Second / time.Duration(tt.rate)
				for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(gap) {
					if err := h(context.Background(), msg{}); err != nil {
						t.Fatalf("healthy call: %v", err)
					}
				}
				failing.Store(true)
				start := time.Now()
				for len(rec.States()) == 0 {
					if time.Since(start) > window {
						t.Fatalf("breaker still closed after a whole window of failures")
					}
					if err := h(context.Background(), msg{}); !errors.Is(err, errFlaky) {
						t.Fatalf("failing call: err = %v; want the sink's error", err)
					}
					time.Sleep(gap)
				}
				sc := rec.States()[0]
				took := sc.at.Sub(start)
				t.Logf("opened after %v of failure", took)
				if sc.to != handlers.BreakerOpen || took > window/2 {
					t.Errorf("breaker went %v -> %v after %v of failure; want open within %v", sc.from, sc.to, took, window/2)
				}
			})
		})
	}
}

// TestBreakerClosesAfterHalfOpenSuccesses: OpenTimeout after opening, the
// breaker lets probes through and closes after HalfOpenProbes successes, not
// before; a failed probe opens it again.
func TestBreakerClosesAfterHalfOpenSuccesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var failing atomic.Bool
		failing.Store(true)
		p := handlers.BreakerPolicy{MinRequests: 5, OpenTimeout: 2 * time.Second, HalfOpenProbes: 3}
		h := breakerHandler(t, p, rec, func(context.Context, msg) error {
			if failing.Load() {
				return errFlaky
			}
			return nil
		})
		for range 5 {
			_ = h(context.Background(), msg{})
		}
		openedAt := time.Now()
		want := []handlers.BreakerState{handlers.BreakerOpen}
		assertStates(t, rec, want)

		// A call now waits out the open period and is the first probe. It
		// fails, so the breaker opens again.
		if err := h(context.Background(), msg{}); !errors.Is(err, errFlaky) {
			t.Fatalf("probe: err = %v; want the sink's error", err)
		}
		if waited := time.Since(openedAt); waited < p.OpenTimeout || waited > p.OpenTimeout+10*time.Millisecond {
			t.Errorf("the probe went through after %v; want just after %v", waited, p.OpenTimeout)
		}
		want = append(want, handlers.BreakerHalfOpen, handlers.BreakerOpen)
		assertStates(t, rec, want)

		failing.Store(false)
		for i := range p.HalfOpenProbes {
			if err := h(context.Background(), msg{}); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
			if i == 0 {
				want = append(want, handlers.BreakerHalfOpen)
			}
			if i == p.HalfOpenProbes-1 {
				want = append(want, handlers.BreakerClosed)
			}
			assertStates(t, rec, want)
		}
	})
}

func assertStates(t *testing.T, rec *recorder, want []handlers.BreakerState) {
	t.Helper()
	var got []handlers.BreakerState
	for _, sc := range rec.States() {
		got = append(got, sc.to)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("breaker states = %v; want %v", got, want)
	}
}

// TestBreakerOutageSpendsNoAttempts: records that meet an open breaker wait
// for it instead of failing. With the sink down for a while, every record
// succeeds once it is back, within few attempts, and the chain never
// returns a breaker error.
func TestBreakerOutageSpendsNoAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		t0 := time.Now()
		const outage = 3 * time.Second
		var calls atomic.Int64
		sink := func(ctx context.Context, m msg) error {
			calls.Add(1)
			time.Sleep(5 * time.Millisecond)
			if time.Since(t0) < outage {
				return handlers.Overloaded(errFlaky)
			}
			return nil
		}
		h := mustGuard(t, sink, handlers.Hooks(rec),
			handlers.Retry(handlers.RetryPolicy{MaxAttempts: 4, BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond}),
			handlers.Breaker(handlers.BreakerPolicy{MinRequests: 5, OpenTimeout: 2 * time.Second}))
		const workers, each = 10, 20
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range workers {
			wg.Go(func() {
				for range each {
					if err := h(context.Background(), msg{}); err != nil {
						failed.Add(1)
						t.Errorf("record failed: %v", err)
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%d records failed during the outage", failed.Load())
		}
		states := rec.States()
		if len(states) < 3 || states[0].to != handlers.BreakerOpen || states[len(states)-1].to != handlers.BreakerClosed {
			t.Errorf("breaker states = %v; want open ... closed", states)
		}
		if opened := states[0].at.Sub(t0); opened > time.Second {
			t.Errorf("breaker opened %v into the outage", opened)
		}
		maxAttempts := 0
		for _, o := range rec.Outcomes() {
			maxAttempts = max(maxAttempts, o.attempts)
		}
		t.Logf("%d records, %d sink calls, at most %d attempts per record, states %v", workers*each, calls.Load(), maxAttempts, states)
		if extra := calls.Load() - workers*each; extra > 2*workers {
			t.Errorf("%d calls beyond one per record: the outage was hammered", extra)
		}
	})
}

// TestBreakerIgnoresPermanentAndCancelled: permanent errors, panics and
// cancellations say nothing about the downstream's health and never open the
// breaker; timeouts do.
func TestBreakerIgnoresPermanentAndCancelled(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		sinkErr  error
		wantOpen bool
	}{
		{"permanent", context.Background(), pipeline.Permanent(errFlaky), false},
		{"http 404", context.Background(), &handlers.HTTPError{Status: 404}, false},
		{"panic", context.Background(), errPanic, false},
		{"cancelled record", cancelled, context.Canceled, false},
		{"timeout", context.Background(), context.DeadlineExceeded, true},
		{"transient", context.Background(), errFlaky, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				var calls atomic.Int64
				h := mustGuard(t, scripted(&calls, repeat(tt.sinkErr, 100)...), handlers.Hooks(rec),
					handlers.Retry(handlers.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
					handlers.Breaker(handlers.BreakerPolicy{MinRequests: 10}))
				for range 30 {
					_ = h(tt.ctx, msg{})
					if len(rec.States()) > 0 {
						break
					}
				}
				if got := len(rec.States()) > 0; got != tt.wantOpen {
					t.Errorf("breaker opened = %v; want %v", got, tt.wantOpen)
				}
			})
		})
	}
}

// TestBreakerWaitEndsWithTheRecord: a record waiting on an open breaker ends
// at once, as a deadline failure, when its deadline would pass before the
// breaker half-opens, and as is when it is cancelled.
func TestBreakerWaitEndsWithTheRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var calls atomic.Int64
		var down atomic.Bool
		down.Store(true)
		sink := func(context.Context, msg) error {
			calls.Add(1)
			if down.Load() {
				return errFlaky
			}
			return nil
		}
		h := mustGuard(t, sink, handlers.Hooks(rec),
			handlers.Retry(handlers.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
			handlers.Breaker(handlers.BreakerPolicy{MinRequests: 5, OpenTimeout: 10 * time.Second}))
		first := make(chan error)
		go func() { first <- h(context.Background(), msg{}) }()
		// The first record fails until the breaker opens, then waits.
		for deadline := time.Now().Add(time.Second); len(rec.States()) == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		assertStates(t, rec, []handlers.BreakerState{handlers.BreakerOpen})

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := h(ctx, msg{})
		var fe *pipeline.FailureError
		if !errors.As(err, &fe) || fe.Class != pipeline.ClassDeadline || fe.Attempts != 0 {
			t.Errorf("err = %v; want class deadline after 0 attempts", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("a doomed record waited %v", waited)
		}

		ctx, cancel = context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- h(ctx, msg{}) }()
		time.Sleep(time.Second)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
			t.Errorf("err = %v; want context.Canceled as is", err)
		}
		if calls.Load() != 5 {
			t.Errorf("sink calls = %d; want 5: waiting records must not call the sink", calls.Load())
		}

		down.Store(false)
		if err := <-first; err != nil {
			t.Errorf("the first record: %v; want success after the outage", err)
		}
		if calls.Load() != 6 {
			t.Errorf("sink calls = %d; want 6: one probe after the open period", calls.Load())
		}
	})
}

// TestOutageIsNotAPoisonPill: while the sink answers nothing, a record's
// failures are the outage's: it is never given up as exhausted or out of
// budget, even alone on its lane. A record that fails while other records
// get through is given up after MaxAttempts; alone on its lane it cannot be
// told from an outage, so only its deadline ends it.
func TestOutageIsNotAPoisonPill(t *testing.T) {
	tests := []struct {
		name       string
		lanes      int
		records    int
		wantPoison []string
	}{
		{"one lane", 1, 40, []string{pipeline.ClassDeadline}},
		{"eight lanes", 8, 400, []string{pipeline.ClassExhausted, pipeline.ClassBudget}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				t0 := time.Now()
				const outage = time.Minute
				var calls atomic.Int64
				sink := func(ctx context.Context, m msg) error {
					calls.Add(1)
					time.Sleep(10 * time.Millisecond)
					switch {
					case time.Since(t0) < outage:
						return errFlaky
					case m.id == 13:
						return errFlaky // poison: fails while the others succeed
					}
					return nil
				}
				h := mustGuard(t, sink, handlers.Hooks(rec),
					handlers.Retry(handlers.RetryPolicy{MaxAttempts: 3, Budget: handlers.RetryBudget{Burst: 1, PerSecond: 0.1}}),
					handlers.Breaker(handlers.BreakerPolicy{}))
				records := tt.records
				work := make(chan int)
				var wg sync.WaitGroup
				errs := make([]error, records)
				for range tt.lanes {
					wg.Go(func() {
						for id := range work {
							ctx, cancel := context.WithTimeout(context.Background(), 2*outage)
							errs[id] = h(ctx, msg{id: id})
							cancel()
						}
					})
				}
				for id := range records {
					work <- id
				}
				close(work)
				wg.Wait()
				for id, err := range errs {
					var fe *pipeline.FailureError
					switch {
					case id == 13 && (!errors.As(err, &fe) || !slices.Contains(tt.wantPoison, fe.Class)):
						t.Errorf("poison record: err = %v; want a class in %v", err, tt.wantPoison)
					case id != 13 && err != nil:
						t.Errorf("record %d: %v; want success after the outage", id, err)
					}
				}
				states := rec.States()
				if len(states) == 0 || states[0].to != handlers.BreakerOpen || states[0].at.Sub(t0) > 5*time.Second {
					t.Errorf("breaker states %v; want it open within 5s of the outage", states)
				}
				t.Logf("%d calls for %d records, breaker opened %d times", calls.Load(), records, len(states)/2)
			})
		})
	}
}

// TestBreakerIgnoresBadLuckAtHighTraffic: random errors well under the
// failure ratio never open the breaker, even though runs of ConsecutiveFailures
// errors occur: that rule applies only at little traffic.
func TestBreakerIgnoresBadLuckAtHighTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		rng := rand.New(rand.NewPCG(8, 9))
		run, longest := 0, 0
		h := breakerHandler(t, handlers.BreakerPolicy{}, rec, func(context.Context, msg) error {
			if rng.Float64() < 0.3 {
				run++
				longest = max(longest, run)
				return errFlaky
			}
			run = 0
			return nil
		})
		for range 60 * 100 { // a minute at 100 calls a second
			_ = h(context.Background(), msg{})
			time.Sleep(10 * time.Millisecond)
		}
		if longest < handlers.DefaultConsecutive {
			t.Fatalf("longest run of errors %d; the test needs one of %d", longest, handlers.DefaultConsecutive)
		}
		if states := rec.States(); len(states) > 0 {
			t.Errorf("breaker changed state at 30%% errors: %v", states)
		}
	})
}

// TestBlipBeforeAnOutageIsNotExhausted is the regression test for a record
// dead-lettered by an outage (found by sluice demo): its first attempt
// failed on a one-off 503 while other calls still succeeded, then the sink
// went down and the record spent its attempts before the breaker opened.
// Those successes came before the outage, yet they made the record look
// like the only one failing. Whether the sink answers anyone must be judged
// over the record's last backoff, not since its first failure.
func TestBlipBeforeAnOutageIsNotExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		const outageFrom, outageTo = 105 * time.Millisecond, 2 * time.Second
		var blipped atomic.Bool
		sink := func(ctx context.Context, m msg) error {
			time.Sleep(time.Millisecond)
			el := time.Since(t0)
			if m.id == 1 && el < outageFrom {
				blipped.Store(true)
				return handlers.Overloaded(errFlaky) // the blip: this record only
			}
			if el >= outageFrom && el < outageTo {
				return handlers.Overloaded(errFlaky) // the outage: everyone
			}
			return nil
		}
		// A breaker slow to open, so that the record runs out of attempts
		// while it is still closed.
		h := mustGuard(t, sink,
			handlers.Retry(handlers.RetryPolicy{MaxAttempts: 4, BaseDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond}),
			handlers.Breaker(handlers.BreakerPolicy{MinRequests: 1_000_000, ConsecutiveFailures: 1_000_000}))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 { // other records, before and through the outage
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					_ = h(context.Background(), msg{id: 100 + w*1000 + i})
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		err := h(context.Background(), msg{id: 1})
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("a record that met an outage was given up: %v", err)
		}
		if el := time.Since(t0); el < outageTo || !blipped.Load() {
			t.Fatalf("the record succeeded at %v (blipped %t), before the outage ended", el, blipped.Load())
		}
	})
}
