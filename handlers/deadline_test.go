package handlers_test

import (
	"context"
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

func TestGRPCTimeout(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{-time.Second, "0n"},
		{0, "0n"},
		{1, "1n"},
		{99_999_999, "99999999n"},
		{100_000_000, "100000u"},
		{100_000_001, "100001u"},
		{time.Second, "1000000u"},
		{100 * time.Second, "100000m"},
		{100*time.Second + 1, "100001m"},
		{99_999_999 * time.Millisecond, "99999999m"},
		{99_999_999*time.Millisecond + 1, "100000S"},
		{27*time.Hour + 46*time.Minute + 40*time.Second, "100000S"},
		{99_999_999 * time.Second, "99999999S"},
		{99_999_999*time.Second + 1, "1666667M"},
		{math.MaxInt64, "2562048H"},
	}
	for _, tt := range tests {
		if got := handlers.GRPCTimeout(tt.give); got != tt.want {
			t.Errorf("GRPCTimeout(%v) = %q; want %q", tt.give, got, tt.want)
		}
	}
}

var grpcTimeoutRE = regexp.MustCompile(`^([0-9]{1,8})([HMSmun])$`)

var grpcUnit = map[string]time.Duration{
	"H": time.Hour, "M": time.Minute, "S": time.Second,
	"m": time.Millisecond, "u": time.Microsecond, "n": time.Nanosecond,
}

// TestGRPCTimeoutProperty: for random durations over the whole range, the
// value is valid, never less than the duration, less than one unit more,
// and in the finest unit that fits in 8 digits.
func TestGRPCTimeoutProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	finer := map[string]time.Duration{"u": time.Nanosecond, "m": time.Microsecond, "S": time.Millisecond, "M": time.Second, "H": time.Minute}
	for range 100000 {
		// Log-uniform over [1ns, MaxInt64].
		d := time.Duration(math.Min(math.Exp(rng.Float64()*math.Log(math.MaxInt64)), math.MaxInt64))
		d = max(d, 1)
		s := handlers.GRPCTimeout(d)
		m := grpcTimeoutRE.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("GRPCTimeout(%d) = %q: not 1-8 digits and a unit", d, s)
		}
		v, _ := strconv.ParseUint(m[1], 10, 64)
		unit := uint64(grpcUnit[m[2]])
		// v*unit >= d > (v-1)*unit, in 128 bits: v*unit may pass MaxInt64.
		if hi, lo := bits.Mul64(v, unit); hi == 0 && lo < uint64(d) {
			t.Fatalf("GRPCTimeout(%d) = %q: rounded down", d, s)
		}
		if hi, lo := bits.Mul64(v-1, unit); hi > 0 || lo >= uint64(d) {
			t.Fatalf("GRPCTimeout(%d) = %q: more than one unit above the duration", d, s)
		}
		if f, ok := finer[m[2]]; ok {
			if need := (int64(d) + int64(f) - 1) / int64(f); need <= 99_999_999 {
				t.Fatalf("GRPCTimeout(%d) = %q: fits in %d%s", d, s, need, unitName(f))
			}
		}
	}
}

func unitName(d time.Duration) string {
	for k, v := range grpcUnit {
		if v == d {
			return k
		}
	}
	return "?"
}

func TestGRPCTimeoutMetadata(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if _, ok := handlers.GRPCTimeoutMetadata(context.Background()); ok {
			t.Error("a context without deadline gave a grpc-timeout")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond+1)
		defer cancel()
		if got, ok := handlers.GRPCTimeoutMetadata(ctx); !ok || got != "1500001u" {
			t.Errorf("GRPCTimeoutMetadata = %q, %v; want 1500001u, true", got, ok)
		}
		time.Sleep(2 * time.Second)
		if got, ok := handlers.GRPCTimeoutMetadata(ctx); ok {
			t.Errorf("an expired context gave %q", got)
		}
	})
}

func TestSetBudgetHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			give   time.Duration // 0: no deadline
			want   string
			wantOK bool
		}{
			{0, "", false},
			{250 * time.Millisecond, "250", true},
			{250*time.Millisecond + 1, "251", true},
			{1, "1", true},
		}
		for _, tt := range tests {
			ctx := context.Background()
			cancel := context.CancelFunc(func() {})
			if tt.give > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.give)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://downstream.invalid/", nil)
			ok := handlers.SetBudgetHeader(req, "X-Request-Timeout-Ms")
			if got := req.Header.Get("X-Request-Timeout-Ms"); ok != tt.wantOK || got != tt.want {
				t.Errorf("budget %v: header %q, %v; want %q, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
			cancel()
		}
	})
}

func TestCheckHTTP(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		want       handlers.Verdict
		wantNil    bool
	}{
		{status: 200, wantNil: true},
		{status: 304, wantNil: true},
		{status: 400, want: handlers.Verdict{Permanent: true}},
		{status: 404, want: handlers.Verdict{Permanent: true}},
		{status: 408, want: handlers.Verdict{}},
		{status: 429, retryAfter: "7", want: handlers.Verdict{Overload: true, RetryAfter: 7 * time.Second}},
		{status: 429, want: handlers.Verdict{Overload: true}},
		{status: 500, want: handlers.Verdict{}},
		{status: 501, want: handlers.Verdict{Permanent: true}},
		{status: 503, retryAfter: "garbage", want: handlers.Verdict{Overload: true}},
		{status: 503, retryAfter: "-3", want: handlers.Verdict{Overload: true}},
		{status: 503, retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), want: handlers.Verdict{Overload: true, RetryAfter: time.Hour}},
		{status: 504, want: handlers.Verdict{Overload: true}},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.retryAfter != "" {
			resp.Header.Set("Retry-After", tt.retryAfter)
		}
		err := handlers.CheckHTTP(resp)
		if tt.wantNil {
			if err != nil {
				t.Errorf("status %d: err = %v; want nil", tt.status, err)
			}
			continue
		}
		got := handlers.DefaultClassifier(err)
		// An HTTP date has one-second resolution.
		if got.RetryAfter > tt.want.RetryAfter-time.Second && got.RetryAfter <= tt.want.RetryAfter {
			got.RetryAfter = tt.want.RetryAfter
		}
		if got != tt.want {
			t.Errorf("status %d Retry-After %q: verdict %+v; want %+v", tt.status, tt.retryAfter, got, tt.want)
		}
	}
}

// TestChainNeverOverrunsDeadline is a property test of the whole chain with
// real contexts: random deadlines, timeouts, breaker and rate settings, and a
// sink that is slow, flaky and sometimes hints. The chain always returns by
// the record's deadline, never starts an attempt with less than the minimum
// budget left, and only returns nil or a *FailureError.
func TestChainNeverOverrunsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for i := range 200 {
			minBudget := time.Duration(rng.IntN(30)) * time.Millisecond
			budget := time.Duration(1+rng.IntN(3000)) * time.Millisecond
			latency := time.Duration(rng.IntN(300)) * time.Millisecond
			failP, hintP := rng.Float64(), rng.Float64()/2
			// Half the cases give the record no deadline of its own and
			// the sink a Budget: Guard carries that deadline down in
			// the attempt, not in a context, until the timeout layer.
			useBudget := rng.IntN(2) == 0
			var early, unbounded atomic.Int64
			var deadline time.Time
			sink := func(ctx context.Context, m msg) error {
				if time.Until(deadline) < minBudget {
					early.Add(1)
				}
				if dl, ok := ctx.Deadline(); !ok || dl.After(deadline) {
					unbounded.Add(1)
				}
				select {
				case <-time.After(latency):
				case <-ctx.Done():
					return ctx.Err()
				}
				switch r := rng.Float64(); {
				case r < failP*hintP:
					return handlers.RetryAfter(errFlaky, time.Duration(rng.IntN(1000))*time.Millisecond)
				case r < failP:
					return errFlaky
				}
				return nil
			}
			opts := []handlers.Opt{handlers.MinBudget(minBudget), handlers.Seed(uint64(i))}
			if useBudget {
				opts = append(opts, handlers.Budget(budget))
			}
			h := mustGuard(t, sink, append(opts,
				handlers.Retry(handlers.RetryPolicy{MaxAttempts: 1 + rng.IntN(10), BaseDelay: time.Duration(1+rng.IntN(100)) * time.Millisecond}),
				handlers.Breaker(handlers.BreakerPolicy{MinRequests: 3, OpenTimeout: time.Duration(1+rng.IntN(2000)) * time.Millisecond}),
				handlers.RateLimit(rate.Limit(5+500*rng.Float64()), 1+rng.IntN(5)),
				handlers.Limiter(newFixedLimiter(1+rng.IntN(4))),
				handlers.Timeout(time.Duration(1+rng.IntN(400))*time.Millisecond))...)
			for j := range 5 {
				deadline = time.Now().Add(budget)
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				if useBudget {
					ctx, cancel = context.WithCancel(context.Background())
				}
				err := h(ctx, msg{id: j})
				cancel()
				if over := time.Since(deadline); over > 0 {
					t.Fatalf("case %d/%d: returned %v after the deadline", i, j, over)
				}
				var fe *pipeline.FailureError
				if err != nil && !errors.As(err, &fe) {
					t.Fatalf("case %d/%d: err = %v (%T); want nil or *FailureError", i, j, err, err)
				}
			}
			if n := early.Load(); n > 0 {
				t.Fatalf("case %d: %d attempts started with less than %v left", i, n, minBudget)
			}
			if n := unbounded.Load(); n > 0 {
				t.Fatalf("case %d (budget %t): %d attempts got a context without the deadline", i, useBudget, n)
			}
		}
	})
}
