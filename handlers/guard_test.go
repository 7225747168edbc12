package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/handlers"
)

func TestGuardRejectsBadOptions(t *testing.T) {
	sink := func(context.Context, msg) error { return nil }
	tests := []struct {
		name string
		give []handlers.Opt
		want string // in the message
	}{
		{"empty name", []handlers.Opt{handlers.WithName("")}, "WithName: name"},
		{"negative min budget", []handlers.Opt{handlers.WithMinBudget(-1)}, "WithMinBudget: min"},
		{"zero budget", []handlers.Opt{handlers.WithBudget(0)}, "WithBudget: d"},
		{"negative attempts", []handlers.Opt{handlers.WithRetry(handlers.RetryPolicy{MaxAttempts: -1})}, "WithRetry: MaxAttempts"},
		{"max below base", []handlers.Opt{handlers.WithRetry(handlers.RetryPolicy{BaseDelay: time.Second, MaxDelay: time.Millisecond})}, "WithRetry: MaxDelay"},
		{"negative ratio", []handlers.Opt{handlers.WithRetry(handlers.RetryPolicy{Budget: handlers.RetryBudget{Ratio: -0.1}})}, "Budget.Ratio"},
		{"failure ratio above 1", []handlers.Opt{handlers.WithBreaker(handlers.BreakerPolicy{FailureRatio: 1.5})}, "WithBreaker: FailureRatio"},
		{"failure ratio NaN", []handlers.Opt{handlers.WithBreaker(handlers.BreakerPolicy{FailureRatio: math.NaN()})}, "WithBreaker: FailureRatio"},
		{"too many buckets", []handlers.Opt{handlers.WithBreaker(handlers.BreakerPolicy{Window: 5, Buckets: 10})}, "WithBreaker: Buckets"},
		{"zero rate", []handlers.Opt{handlers.WithRateLimit(0, 1)}, "WithRateLimit: r"},
		{"zero burst", []handlers.Opt{handlers.WithRateLimit(10, 0)}, "WithRateLimit: burst"},
		{"two rate limits", []handlers.Opt{handlers.WithRateLimit(10, 1), handlers.WithGroupRateLimit(10, 1, func() int { return 1 })}, "conflicts with WithRateLimit"},
		{"nil members", []handlers.Opt{handlers.WithGroupRateLimit(10, 1, nil)}, "WithGroupRateLimit: members"},
		{"nil limiter", []handlers.Opt{handlers.WithLimiter(nil)}, "WithLimiter: l"},
		{"zero timeout", []handlers.Opt{handlers.WithTimeout(0)}, "WithTimeout: d"},
		{"chaos rate", []handlers.Opt{handlers.WithChaos(handlers.ChaosPolicy{ErrorRate: 2})}, "WithChaos: ErrorRate"},
		{"useless hook", []handlers.Opt{handlers.WithHooks(42)}, "WithHooks: hooks[0] = int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlers.Guard[msg](sink, tt.give...)
			if !errors.Is(err, handlers.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want a config error mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := handlers.Guard[msg](nil); !errors.Is(err, handlers.ErrConfig) {
		t.Errorf("nil sink: err = %v; want a config error", err)
	}
}

func TestRecoverLogsStack(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	h := mustGuard(t, func(context.Context, msg) error { panic("kaboom") }, handlers.WithLogger(logger), handlers.WithName("orders-db"))
	err := h(context.Background(), msg{})
	var fe *handlers.FailureError
	var pe *handlers.PanicError
	if !errors.As(err, &fe) || fe.Class != handlers.ClassPanic || !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Fatalf("err = %v; want a panic failure carrying the value", err)
	}
	if !errors.Is(err, handlers.ErrPanic) {
		t.Error("errors.Is(err, ErrPanic) = false")
	}
	if strings.Contains(err.Error(), "goroutine") {
		t.Errorf("the stack leaked into the error message: %q", err.Error())
	}
	if log := buf.String(); !strings.Contains(log, "sink=orders-db") || !strings.Contains(log, "kaboom") || !strings.Contains(log, "guard_test.go") {
		t.Errorf("log lacks the sink, the value or the stack: %s", log)
	}
}

// TestChaosIsSeededAndCalibrated: the injected rates match the policy and a
// seed repeats a run exactly.
func TestChaosIsSeededAndCalibrated(t *testing.T) {
	p := handlers.ChaosPolicy{LatencyRate: 0.5, Latency: 10 * time.Millisecond, ErrorRate: 0.2, PermanentRate: 0.1}
	run := func(seed uint64) (trace []byte, transient, permanent, delayed int) {
		clk := newFakeClock()
		mw, err := handlers.Chaos[msg](p, handlers.WithClock(clk), handlers.WithSeed(seed))
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		h := mw(scripted(&calls))
		for range 20000 {
			before := clk.NumSleeps()
			err := h(context.Background(), msg{})
			c := byte('.')
			switch {
			case errors.Is(err, handlers.ErrPermanent):
				permanent++
				c = 'P'
			case errors.Is(err, handlers.ErrInjected):
				transient++
				c = 'E'
			}
			if clk.NumSleeps() > before {
				delayed++
				c += 1
			}
			trace = append(trace, c)
		}
		return trace, transient, permanent, delayed
	}
	t1, transient, permanent, delayed := run(42)
	near := func(name string, got int, want float64) {
		if f := float64(got) / 20000; math.Abs(f-want) > 0.015 {
			t.Errorf("%s rate %.3f; want %.3f", name, f, want)
		}
	}
	near("transient", transient, 0.2)
	near("permanent", permanent, 0.8*0.1)
	near("latency", delayed, 0.5)
	if t2, _, _, _ := run(42); !bytes.Equal(t1, t2) {
		t.Error("the same seed gave a different run")
	}
	if t3, _, _, _ := run(43); bytes.Equal(t1, t3) {
		t.Error("a different seed gave the same run")
	}
}

func TestChainOrder(t *testing.T) {
	var trace []string
	mw := func(name string) handlers.Middleware[msg] {
		return func(next handlers.Handler[msg]) handlers.Handler[msg] {
			return func(ctx context.Context, m msg) error {
				trace = append(trace, name)
				return next(ctx, m)
			}
		}
	}
	h := handlers.Chain(func(context.Context, msg) error { trace = append(trace, "sink"); return nil }, mw("a"), mw("b"), mw("c"))
	_ = h(context.Background(), msg{})
	if got := strings.Join(trace, " "); got != "a b c sink" {
		t.Errorf("order = %q; want a b c sink", got)
	}
}

// TestHooksSeeEveryAttempt: the attempt, retry, rate-wait and outcome hooks
// are told about a record that succeeds on its third attempt.
func TestHooksSeeEveryAttempt(t *testing.T) {
	rec := &recorder{}
	var calls atomic.Int64
	h := mustGuard(t, scripted(&calls, errFlaky, errFlaky), handlers.WithClock(newFakeClock()), handlers.WithHooks(rec),
		handlers.WithRateLimit(1000, 1), handlers.WithRetry(handlers.RetryPolicy{}))
	if err := h(context.Background(), msg{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.attempts) != 3 || len(rec.retries) != 2 || len(rec.waits) != 3 {
		t.Errorf("attempts %d, retries %d, waits %d; want 3, 2, 3", len(rec.attempts), len(rec.retries), len(rec.waits))
	}
	if got := rec.Outcomes(); len(got) != 1 || got[0] != (outcome{handlers.OutcomeOK, 3}) {
		t.Errorf("outcomes = %v; want [{ok 3}]", got)
	}
}

// TestBudgetCapsTheRecordDeadline: WithBudget gives the sink at most its
// budget even when the record has more time.
func TestBudgetCapsTheRecordDeadline(t *testing.T) {
	clk := newFakeClock()
	var got time.Duration
	sink := func(ctx context.Context, m msg) error {
		dl, _ := ctx.Deadline()
		got = dl.Sub(clk.Now())
		return nil
	}
	h := mustGuard(t, sink, handlers.WithClock(clk), handlers.WithBudget(time.Second))
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(time.Hour))
	defer cancel()
	_ = h(ctx, msg{})
	if got != time.Second {
		t.Errorf("sink budget = %v; want 1s", got)
	}
	ctx, cancel = context.WithDeadline(context.Background(), clk.Now().Add(time.Millisecond*500))
	defer cancel()
	_ = h(ctx, msg{})
	if got != 500*time.Millisecond {
		t.Errorf("sink budget = %v; want the record's 500ms", got)
	}
}
