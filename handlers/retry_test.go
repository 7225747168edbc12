package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

var errFlaky = errors.New("flaky")

// scripted returns a sink that returns errs[i] on its i-th call (nil past
// the end; a panic for errPanic) and counts its calls.
func scripted(calls *atomic.Int64, errs ...error) func(context.Context, msg) error {
	return func(context.Context, msg) error {
		i := calls.Add(1) - 1
		if int(i) >= len(errs) {
			return nil
		}
		if errs[i] == errPanic {
			panic("sink blew up")
		}
		return errs[i]
	}
}

var errPanic = errors.New("panic please")

func repeat(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func TestRetryClassifies(t *testing.T) {
	retry := handlers.Retry(handlers.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	tests := []struct {
		name      string
		give      []error
		opts      []handlers.Opt
		wantClass string // "" means success
		wantCalls int64
	}{
		{"ok", nil, []handlers.Opt{retry}, "", 1},
		{"transient then ok", repeat(errFlaky, 2), []handlers.Opt{retry}, "", 3},
		{"always transient", repeat(errFlaky, 10), []handlers.Opt{retry}, pipeline.ClassExhausted, 3},
		{"permanent", []error{pipeline.Permanent(errFlaky)}, []handlers.Opt{retry}, pipeline.ClassPermanent, 1},
		{"http 400", []error{&handlers.HTTPError{Status: http.StatusBadRequest}}, []handlers.Opt{retry}, pipeline.ClassPermanent, 1},
		{"http 503", repeat(&handlers.HTTPError{Status: http.StatusServiceUnavailable}, 10), []handlers.Opt{retry}, pipeline.ClassExhausted, 3},
		{"panic", []error{errPanic}, []handlers.Opt{retry}, pipeline.ClassPanic, 1},
		{"decode failure kept", []error{fmt.Errorf("sink: %w", &pipeline.DecodeError{Err: errors.New("bad bytes")})}, []handlers.Opt{retry}, pipeline.ClassDecode, 1},
		{"no retry transient", []error{errFlaky}, nil, pipeline.ClassError, 1},
		{"no retry permanent", []error{pipeline.Permanent(errFlaky)}, nil, pipeline.ClassPermanent, 1},
		{"custom classifier", []error{errFlaky}, []handlers.Opt{retry, handlers.Classify(func(error) handlers.Verdict {
			return handlers.Verdict{Permanent: true}
		})}, pipeline.ClassPermanent, 1},
		{"classifier cannot unmark permanent", []error{pipeline.Permanent(errFlaky)}, []handlers.Opt{retry, handlers.Classify(func(error) handlers.Verdict {
			return handlers.Verdict{}
		})}, pipeline.ClassPermanent, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			h := mustGuard(t, scripted(&calls, tt.give...), append(tt.opts, handlers.Clock(newFakeClock()))...)
			err := h(context.Background(), msg{})
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("sink calls = %d; want %d", got, tt.wantCalls)
			}
			if tt.wantClass == "" {
				if err != nil {
					t.Fatalf("err = %v; want nil", err)
				}
				return
			}
			var fe *pipeline.FailureError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T); want *FailureError", err, err)
			}
			if fe.Class != tt.wantClass || int64(fe.Attempts) != tt.wantCalls {
				t.Errorf("class, attempts = %q, %d; want %q, %d", fe.Class, fe.Attempts, tt.wantClass, tt.wantCalls)
			}
		})
	}
}

func TestRetryFailureTimes(t *testing.T) {
	clk := newFakeClock()
	var calls atomic.Int64
	sink := func(ctx context.Context, m msg) error {
		calls.Add(1)
		clk.Advance(time.Second) // the sink takes a second
		return errFlaky
	}
	h := mustGuard(t, sink, handlers.Clock(clk), handlers.Retry(handlers.RetryPolicy{
		MaxAttempts: 3, BaseDelay: time.Minute, MaxDelay: time.Minute, Budget: handlers.RetryBudget{Unlimited: true},
	}))
	err := h(context.Background(), msg{})
	var fe *pipeline.FailureError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v; want *FailureError", err)
	}
	var slept time.Duration
	for _, s := range clk.Sleeps() {
		slept += s.d
	}
	wantFirst, wantLast := epoch.Add(time.Second), epoch.Add(3*time.Second+slept)
	if !fe.First.Equal(wantFirst) || !fe.Last.Equal(wantLast) {
		t.Errorf("first, last = %v, %v; want %v, %v", fe.First, fe.Last, wantFirst, wantLast)
	}
	if !errors.Is(err, errFlaky) {
		t.Errorf("err = %v does not wrap the last sink error", err)
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		deadline  time.Duration // 0: none
		hint      time.Duration
		wantSleep []time.Duration
		wantClass string
	}{
		{"hint longer than MaxDelay", 0, 30 * time.Second, []time.Duration{30 * time.Second}, ""},
		{"hint fits the deadline", time.Minute, 30 * time.Second, []time.Duration{30 * time.Second}, ""},
		{"hint would overrun", 10 * time.Second, 30 * time.Second, nil, pipeline.ClassDeadline},
		{"hint would leave under the minimum", 30*time.Second + 5*time.Millisecond, 30 * time.Second, nil, pipeline.ClassDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			var calls atomic.Int64
			h := mustGuard(t, scripted(&calls, handlers.RetryAfter(errFlaky, tt.hint)), handlers.Clock(clk),
				handlers.Retry(handlers.RetryPolicy{MaxDelay: time.Second}))
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, clk.Now().Add(tt.deadline))
				defer cancel()
			}
			err := h(ctx, msg{})
			var got []time.Duration
			for _, s := range clk.Sleeps() {
				got = append(got, s.d)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantSleep) {
				t.Errorf("sleeps = %v; want %v", got, tt.wantSleep)
			}
			var fe *pipeline.FailureError
			switch {
			case tt.wantClass == "" && err != nil:
				t.Errorf("err = %v; want nil", err)
			case tt.wantClass != "" && (!errors.As(err, &fe) || fe.Class != tt.wantClass || fe.Attempts != 1):
				t.Errorf("err = %v; want class %s after 1 attempt", err, tt.wantClass)
			}
		})
	}
}

// TestRetryCancellationIsNotAFailure: a revoke or shutdown cancels the
// record's context; the chain returns the error as is, with no verdict.
func TestRetryCancellationIsNotAFailure(t *testing.T) {
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sinkErr := fmt.Errorf("write: %w", context.Canceled)
	sink := func(ctx context.Context, m msg) error {
		cancel()
		return sinkErr
	}
	h := mustGuard(t, sink, handlers.Clock(newFakeClock()), handlers.Hooks(rec), handlers.Retry(handlers.RetryPolicy{}))
	err := h(ctx, msg{})
	if err != sinkErr {
		t.Fatalf("err = %v (%T); want the sink's error as is", err, err)
	}
	var f interface{ FailureClass() string }
	if errors.As(err, &f) {
		t.Errorf("a cancellation was turned into a failure of class %s", f.FailureClass())
	}
	if got := rec.Outcomes(); len(got) != 1 || got[0].outcome != handlers.OutcomeAbandoned {
		t.Errorf("outcomes = %v; want one %q", got, handlers.OutcomeAbandoned)
	}
}

// TestRetryBudgetCapsAmplification: at 100% failure, attempts per record stay
// within 1 + Ratio + (Burst + PerSecond*T)/N, however many attempts each
// record may make, and the budget does allow its share of retries.
func TestRetryBudgetCapsAmplification(t *testing.T) {
	tests := []struct {
		name    string
		budget  handlers.RetryBudget
		records int
		gap     time.Duration // time between records
		workers int
	}{
		{"defaults, busy sink", handlers.RetryBudget{}, 20000, time.Millisecond, 1},
		{"defaults, quiet sink", handlers.RetryBudget{}, 2000, 50 * time.Millisecond, 1},
		{"ratio 0.1 no floor to speak of", handlers.RetryBudget{Ratio: 0.1, PerSecond: 0.001, Burst: 5}, 20000, time.Millisecond, 1},
		{"concurrent", handlers.RetryBudget{Ratio: 0.2, PerSecond: 5, Burst: 20}, 8000, time.Millisecond, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			var attempts atomic.Int64
			sink := func(context.Context, msg) error { attempts.Add(1); return errFlaky }
			h := mustGuard(t, sink, handlers.Clock(clk), handlers.Seed(1), handlers.Retry(handlers.RetryPolicy{
				MaxAttempts: 10, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond, Budget: tt.budget,
			}))
			start := clk.Now()
			var budgetGiveUps atomic.Int64
			work := make(chan struct{})
			done := make(chan struct{})
			for range tt.workers {
				go func() {
					defer func() { done <- struct{}{} }()
					for range work {
						err := h(context.Background(), msg{})
						if errors.Is(err, pipeline.ErrBudget) {
							budgetGiveUps.Add(1)
						}
					}
				}()
			}
			for range tt.records {
				clk.Advance(tt.gap)
				work <- struct{}{}
			}
			close(work)
			for range tt.workers {
				<-done
			}
			elapsed := clk.Now().Sub(start).Seconds()
			b := tt.budget
			b.Ratio = cmp(b.Ratio, 0.2)
			b.PerSecond = cmp(b.PerSecond, 10)
			b.Burst = cmp(b.Burst, 10*b.PerSecond)
			n := float64(tt.records)
			bound := 1 + b.Ratio + (b.Burst+b.PerSecond*elapsed)/n
			got := float64(attempts.Load()) / n
			t.Logf("attempts/records = %.3f, bound %.3f over %.1fs, %d budget give-ups", got, bound, elapsed, budgetGiveUps.Load())
			if got > bound+1e-9 {
				t.Errorf("attempts/records = %.3f > bound %.3f", got, bound)
			}
			if got < 1+b.Ratio*0.9 {
				t.Errorf("attempts/records = %.3f: the budget allowed fewer retries than its ratio %.2f", got, b.Ratio)
			}
			if budgetGiveUps.Load() == 0 {
				t.Error("no record was given up for lack of budget")
			}
		})
	}
}

func cmp(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// TestRetryNeverOverrunsDeadline is a property test over random policies,
// deadlines, sink latencies and hints: no attempt starts with less than the
// minimum budget left, no backoff ends later than the minimum budget before
// the deadline, and the chain returns by the deadline (the sink honours its
// context).
func TestRetryNeverOverrunsDeadline(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		clk := newFakeClock()
		minBudget := time.Duration(rng.IntN(50)) * time.Millisecond
		deadline := clk.Now().Add(time.Duration(1+rng.IntN(5000)) * time.Millisecond)
		latency := time.Duration(rng.IntN(400)) * time.Millisecond
		hintP := rng.Float64()
		var starts []time.Time
		sink := func(ctx context.Context, m msg) error {
			now := clk.Now()
			starts = append(starts, now)
			if end := now.Add(latency); end.After(deadline) {
				clk.Advance(deadline.Sub(now))
				return context.DeadlineExceeded
			}
			clk.Advance(latency)
			if rng.Float64() < hintP {
				return handlers.RetryAfter(errFlaky, time.Duration(rng.IntN(2000))*time.Millisecond)
			}
			return errFlaky
		}
		h := mustGuard(t, sink, handlers.Clock(clk), handlers.MinBudget(minBudget), handlers.Seed(uint64(i)),
			handlers.Retry(handlers.RetryPolicy{
				MaxAttempts: 1 + rng.IntN(20),
				BaseDelay:   time.Duration(1+rng.IntN(200)) * time.Millisecond,
				MaxDelay:    time.Duration(200+rng.IntN(2000)) * time.Millisecond,
				Budget:      handlers.RetryBudget{Unlimited: true},
			}))
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := h(ctx, msg{})
		cancel()
		for _, s := range starts {
			if left := deadline.Sub(s); left < minBudget {
				t.Fatalf("case %d: an attempt started with %v left, under the minimum %v", i, left, minBudget)
			}
		}
		for _, s := range clk.Sleeps() {
			if end := s.at.Add(s.d); deadline.Sub(end) < minBudget {
				t.Fatalf("case %d: a backoff of %v ended %v before the deadline, under the minimum %v", i, s.d, deadline.Sub(end), minBudget)
			}
		}
		if clk.Now().After(deadline) {
			t.Fatalf("case %d: returned %v after the deadline", i, clk.Now().Sub(deadline))
		}
		var fe *pipeline.FailureError
		if !errors.As(err, &fe) || (fe.Class != pipeline.ClassDeadline && fe.Class != pipeline.ClassExhausted) {
			t.Fatalf("case %d: err = %v; want class deadline or exhausted", i, err)
		}
		if fe.Attempts != len(starts) {
			t.Fatalf("case %d: FailureError says %d attempts; the sink was called %d times", i, fe.Attempts, len(starts))
		}
	}
}

// TestPanicErrorSaysItOnce is the regression test for a recovered panic
// whose dead-letter text read "panic after 1 attempt: panic after 1
// attempt: ..." (the retry layer wrapped the recovery guard's verdict).
func TestPanicErrorSaysItOnce(t *testing.T) {
	h := mustGuard(t, func(context.Context, msg) error { panic("boom") }, handlers.Retry(handlers.RetryPolicy{}))
	err := h(context.Background(), msg{})
	var fe *pipeline.FailureError
	if !errors.As(err, &fe) || fe.Class != pipeline.ClassPanic {
		t.Fatalf("error %v, want a panic failure", err)
	}
	if n := strings.Count(err.Error(), "panic after"); n != 1 {
		t.Fatalf("error text says %q %d times: %s", "panic after", n, err)
	}
}
