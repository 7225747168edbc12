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

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

func TestGuardRejectsBadOptions(t *testing.T) {
	sink := func(context.Context, msg) error { return nil }
	tests := []struct {
		name          string
		give          []handlers.Opt
		option, field string
	}{
		{"empty name", []handlers.Opt{handlers.Name("")}, "Name", ""},
		{"negative min budget", []handlers.Opt{handlers.MinBudget(-1)}, "MinBudget", ""},
		{"zero budget", []handlers.Opt{handlers.Budget(0)}, "Budget", ""},
		{"negative attempts", []handlers.Opt{handlers.Retry(handlers.RetryPolicy{MaxAttempts: -1})}, "Retry", "MaxAttempts"},
		{"max below base", []handlers.Opt{handlers.Retry(handlers.RetryPolicy{BaseDelay: time.Second, MaxDelay: time.Millisecond})}, "Retry", "MaxDelay"},
		{"negative ratio", []handlers.Opt{handlers.Retry(handlers.RetryPolicy{Budget: handlers.RetryBudget{Ratio: -0.1}})}, "Retry", "Budget.Ratio"},
		{"failure ratio above 1", []handlers.Opt{handlers.Breaker(handlers.BreakerPolicy{FailureRatio: 1.5})}, "Breaker", "FailureRatio"},
		{"failure ratio NaN", []handlers.Opt{handlers.Breaker(handlers.BreakerPolicy{FailureRatio: math.NaN()})}, "Breaker", "FailureRatio"},
		{"too many buckets", []handlers.Opt{handlers.Breaker(handlers.BreakerPolicy{Window: 5, Buckets: 10})}, "Breaker", "Buckets"},
		{"zero rate", []handlers.Opt{handlers.RateLimit(0, 1)}, "RateLimit", "r"},
		{"zero burst", []handlers.Opt{handlers.RateLimit(10, 0)}, "RateLimit", "burst"},
		{"zero group rate", []handlers.Opt{handlers.GroupRateLimit(0, 1, func() int { return 1 })}, "GroupRateLimit", "total"},
		{"two rate limits", []handlers.Opt{handlers.RateLimit(10, 1), handlers.GroupRateLimit(10, 1, func() int { return 1 })}, "GroupRateLimit", ""},
		{"nil members", []handlers.Opt{handlers.GroupRateLimit(10, 1, nil)}, "GroupRateLimit", "members"},
		{"nil limiter", []handlers.Opt{handlers.Limiter(nil)}, "Limiter", ""},
		{"zero timeout", []handlers.Opt{handlers.Timeout(0)}, "Timeout", ""},
		{"chaos rate", []handlers.Opt{handlers.Chaos(handlers.ChaosPolicy{ErrorRate: 2})}, "Chaos", "ErrorRate"},
		{"useless hook", []handlers.Opt{handlers.Hooks(42)}, "Hooks", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlers.Guard[msg](sink, tt.give...)
			var ce *sluice.ConfigError
			if !errors.Is(err, sluice.ErrConfig) || !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a *sluice.ConfigError", err)
			}
			if ce.Package != "handlers" || ce.Option != tt.option || ce.Field != tt.field {
				t.Errorf("err = %v: package, option, field = %q, %q, %q; want handlers, %q, %q", err, ce.Package, ce.Option, ce.Field, tt.option, tt.field)
			}
		})
	}
	if _, err := handlers.Guard[msg](nil); !errors.Is(err, sluice.ErrConfig) {
		t.Errorf("nil sink: err = %v; want a config error", err)
	}
}

// TestHooksRejectsAValueImplementingNoHook: the error names the option, the
// value's type and the interfaces it could implement.
func TestHooksRejectsAValueImplementingNoHook(t *testing.T) {
	_, err := handlers.Guard(func(context.Context, msg) error { return nil }, handlers.Hooks(&recorder{}, 42))
	want := "handlers: Hooks = int: hook 1 implements none of HookAttempt, HookRetry, HookBreakerState, HookRateWait, HookOutcome"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v; want %s", err, want)
	}
}

// A panic becomes a failure carrying its stack, logged once by the pipeline
// when it dead-letters the record, not here as well.
func TestRecoverCarriesStackAndLogsNothing(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	h := mustGuard(t, func(context.Context, msg) error { panic("kaboom") }, handlers.Logger(logger), handlers.Name("orders-db"))
	err := h(context.Background(), msg{})
	var fe *pipeline.FailureError
	var pe *pipeline.PanicError
	if !errors.As(err, &fe) || fe.Class != pipeline.ClassPanic || !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Fatalf("err = %v; want a panic failure carrying the value", err)
	}
	if !errors.Is(err, pipeline.ErrPanic) {
		t.Error("errors.Is(err, ErrPanic) = false")
	}
	if strings.Contains(err.Error(), "goroutine") {
		t.Errorf("the stack leaked into the error message: %q", err.Error())
	}
	if !strings.Contains(string(pe.Stack), "guard_test.go") {
		t.Errorf("the error's stack does not show where the panic was: %s", pe.Stack)
	}
	if log := buf.String(); log != "" {
		t.Errorf("the guard logged the panic; the pipeline does that once, when it dead-letters: %s", log)
	}
}

// TestChaosIsSeededAndCalibrated: the injected rates match the policy and a
// seed repeats a run exactly.
func TestChaosIsSeededAndCalibrated(t *testing.T) {
	p := handlers.ChaosPolicy{LatencyRate: 0.5, Latency: 10 * time.Millisecond, ErrorRate: 0.2, PermanentRate: 0.1}
	run := func(seed uint64) (trace []byte, transient, permanent, delayed int) {
		clk := newFakeClock()
		var calls atomic.Int64
		h := mustGuard(t, scripted(&calls), handlers.Chaos(p), handlers.Clock(clk), handlers.Seed(seed))
		for range 20000 {
			before := clk.NumSleeps()
			err := h(context.Background(), msg{})
			c := byte('.')
			switch {
			case errors.Is(err, pipeline.ErrPermanent):
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

// TestHooksSeeEveryAttempt: the attempt, retry, rate-wait and outcome hooks
// are told about a record that succeeds on its third attempt.
func TestHooksSeeEveryAttempt(t *testing.T) {
	rec := &recorder{}
	var calls atomic.Int64
	h := mustGuard(t, scripted(&calls, errFlaky, errFlaky), handlers.Clock(newFakeClock()), handlers.Hooks(rec),
		handlers.RateLimit(1000, 1), handlers.Retry(handlers.RetryPolicy{}))
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

// TestBudgetCapsTheRecordDeadline: Budget gives the sink at most its
// budget even when the record has more time.
func TestBudgetCapsTheRecordDeadline(t *testing.T) {
	clk := newFakeClock()
	var got time.Duration
	sink := func(ctx context.Context, m msg) error {
		dl, _ := ctx.Deadline()
		got = dl.Sub(clk.Now())
		return nil
	}
	h := mustGuard(t, sink, handlers.Clock(clk), handlers.Budget(time.Second))
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
