package backpressure

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkFixedUncontended is one goroutine acquiring and releasing a
// slot of a limit that never binds: the fast path.
func BenchmarkFixedUncontended(b *testing.B) {
	l, _ := NewFixed(256)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		l.ReleaseAt(time.Time{}, time.Millisecond, Success)
	}
}

// benchBinding runs 768 goroutines sharing 256 slots, as the consumer's
// FanOut(64) x 12 partitions does behind NewFixed(256), each calling hold
// while it holds a slot. An op is one acquire and release.
func benchBinding(b *testing.B, ctx context.Context, hold func()) {
	l, _ := NewFixed(256)
	b.ReportAllocs()
	b.SetParallelism(768 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Acquire(ctx); err != nil {
				b.Error(err)
				return
			}
			hold()
			l.ReleaseAt(time.Time{}, time.Millisecond, Success)
		}
	})
}

// BenchmarkFixedBinding: each holder yields the processor while it holds
// its slot, so that the others run into the limit and queue (about 512
// wait at any time), and every release hands its slot to a waiter: the
// slow path. The holders do no work: ns/op is the limiter's cost of one
// queued acquire and release plus two goroutine switches.
func BenchmarkFixedBinding(b *testing.B) {
	benchBinding(b, context.Background(), runtime.Gosched)
}

// BenchmarkFixedBindingCancellable is BenchmarkFixedBinding with one
// context that can be cancelled (and never is) shared by every caller, as
// the pipeline's workers share theirs: a waiter must also watch it.
func BenchmarkFixedBindingCancellable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchBinding(b, ctx, runtime.Gosched)
}

// BenchmarkFixedBindingSleep holds each slot for a 100µs sleep, the shape
// of the live 2 ms benchmark shortened; compare with BenchmarkUnlimitedSleep
// (timers make both noisy).
func BenchmarkFixedBindingSleep(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchBinding(b, ctx, func() { time.Sleep(100 * time.Microsecond) })
}

// BenchmarkUnlimitedSleep is BenchmarkFixedBindingSleep's ideal: 256
// goroutines calling the 100µs sleep with no limiter.
func BenchmarkUnlimitedSleep(b *testing.B) {
	b.ReportAllocs()
	b.SetParallelism(256 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			time.Sleep(100 * time.Microsecond)
		}
	})
}
