package handlers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/handlers"
)

// BenchmarkGuardOverhead measures the chain's cost per call on a no-op sink,
// against calling the sink directly in the same run. See docs/BENCHMARKS.md.
func BenchmarkGuardOverhead(b *testing.B) {
	noop := func(context.Context, msg) error { return nil }
	fixed, err := backpressure.NewFixed(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	adaptive, err := backpressure.NewAdaptive()
	if err != nil {
		b.Fatal(err)
	}
	all := []handlers.Opt{
		handlers.Logger(quiet),
		handlers.Retry(handlers.RetryPolicy{}),
		handlers.Breaker(handlers.BreakerPolicy{}),
		handlers.RateLimit(rate.Limit(1e12), 1<<30),
		handlers.Limiter(fixed),
		handlers.Timeout(time.Minute),
	}
	guard := func(opts ...handlers.Opt) func(context.Context, msg) error {
		h, err := handlers.Guard(noop, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	cases := []struct {
		name     string
		h        func(context.Context, msg) error
		deadline bool
	}{
		{"direct", noop, false},
		{"minimal", guard(handlers.Logger(quiet)), false},
		{"retry", guard(all[0], all[1]), false},
		{"breaker", guard(all[0], all[2]), false},
		{"ratelimit", guard(all[0], all[3]), false},
		{"limiter", guard(all[0], all[4]), false},
		{"timeout", guard(all[0], all[5]), false},
		{"all", guard(all...), false},
		// With a record deadline nearer than the per-attempt timeout, the
		// timeout guard needs no context of its own.
		{"all+deadline", guard(all...), true},
		{"all-but-timeout", guard(all[:len(all)-1]...), true},
		{"all-adaptive+deadline", guard(append(slices.Clone(all[:4]), handlers.Limiter(adaptive), all[5])...), true},
	}
	// bench/consume's guarded sink: every guard, an adaptive limiter, an
	// infinite rate limit, a Budget and a per-attempt timeout shorter than
	// the record's deadline, so that the timeout guard needs a context of
	// its own.
	adaptive2, err := backpressure.NewAdaptive()
	if err != nil {
		b.Fatal(err)
	}
	consume := guard(handlers.Logger(quiet), handlers.Budget(30*time.Second), all[1], all[2],
		handlers.RateLimit(rate.Inf, 1), handlers.Limiter(adaptive2), handlers.Timeout(10*time.Second))
	// One clock read, for scale: the guards read the clock up to seven
	// times per call, and on a virtual machine a read is not cheap.
	b.Run("time.Now", func(b *testing.B) {
		var t time.Time
		for b.Loop() {
			t = time.Now()
		}
		_ = t
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := benchContext(b, c.deadline)
			for b.Loop() {
				if err := c.h(ctx, msg{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			ctx := benchContext(b, c.deadline)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.h(ctx, msg{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	// The consume case, serially, from both cores, and from 12 goroutines
	// on them as bench/consume's 12 partitions call it.
	// Its records' deadline is a minute away (RecordBudget), as in
	// bench/consume.
	consumeContext := func(b *testing.B) context.Context {
		b.ReportAllocs()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		b.Cleanup(cancel)
		return ctx
	}
	b.Run("consume", func(b *testing.B) {
		ctx := consumeContext(b)
		for b.Loop() {
			if err := consume(ctx, msg{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, p := range []int{1, 6} {
		b.Run(fmt.Sprintf("consume/parallel-%d", p), func(b *testing.B) {
			ctx := consumeContext(b)
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := consume(ctx, msg{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchContext reports allocations and returns the record context: with a
// deadline 30s away, or none.
func benchContext(b *testing.B, deadline bool) context.Context {
	b.ReportAllocs()
	if !deadline {
		return context.Background()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	b.Cleanup(cancel)
	return ctx
}
