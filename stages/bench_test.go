package stages_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// Benchmarks push records through one partition of a pipeline, as the
// consumer would (Handle in chunks of 256), to a sink that settles at once.
// One op is one record. Each reports:
//
//	rec/s   records per second through the pipeline
//	x-chan  that rate over the rate of a bare channel hand-off of *Record
//	        from one goroutine to another (measured once per run, in the
//	        same process): how much the pipeline costs over the minimum any
//	        goroutine-to-goroutine design pays
//
// Run: go test -run '^$' -bench . -benchtime 2000000x ./stages/
// (the I/O-bound benchmark sets its own pace; give it -benchtime 3s).

const ringSize = 1 << 15

type countSettler struct{ n atomic.Int64 }

func (s *countSettler) Settled(*pipeline.Record) { s.n.Add(1) }

var (
	baselineOnce sync.Once
	baselineRate float64
)

// chanBaseline is the rate of a bare hand-off of records over a buffered
// channel between two goroutines, the receiver settling each.
func chanBaseline() float64 {
	baselineOnce.Do(func() {
		const n = 4 << 20
		recs := make([]pipeline.Record, 1024)
		st := &countSettler{}
		c := make(chan *pipeline.Record, 256)
		var wg sync.WaitGroup
		wg.Add(1)
		start := time.Now()
		go func() {
			defer wg.Done()
			for r := range c {
				r.Settle()
			}
		}()
		for i := range n {
			r := &recs[i%len(recs)]
			r.Bind(st)
			c <- r
		}
		close(c)
		wg.Wait()
		baselineRate = n / time.Since(start).Seconds()
	})
	return baselineRate
}

func noop[T any](context.Context, pipeline.Message[T]) error { return nil }

// run drives b.N records with keys from a set of keys through p.
func run(b *testing.B, p *pipeline.Pipeline, keys int) float64 {
	b.Helper()
	if err := p.Err(); err != nil {
		b.Fatal(err)
	}
	base := chanBaseline()
	st := &countSettler{}
	ring := make([]*pipeline.Record, ringSize)
	for i := range ring {
		ring[i] = &pipeline.Record{Topic: tp0.Topic, Offset: int64(i), Key: fmt.Appendf(nil, "key-%d", i%keys), Value: []byte("v")}
	}
	ctx := context.Background()
	part, err := p.OpenPartition(ctx, tp0)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*pipeline.Record, 0, 256)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		r := ring[i%ringSize]
		for r.Holders() != 0 { // still in flight from the last lap
			runtime.Gosched()
		}
		r.Bind(st)
		if batch = append(batch, r); len(batch) == cap(batch) {
			if err := part.Handle(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := part.Handle(ctx, batch); err != nil {
		b.Fatal(err)
	}
	part.Close()
	elapsed := time.Since(start)
	b.StopTimer()
	if got := st.n.Load(); got != int64(b.N) {
		b.Fatalf("settled %d of %d", got, b.N)
	}
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "rec/s")
	b.ReportMetric(rate/base, "x-chan")
	return rate
}

func BenchmarkChanHandoff(b *testing.B) {
	b.ReportMetric(chanBaseline(), "rec/s")
	b.ReportMetric(1, "x-chan")
}

func BenchmarkSourceToSink(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "sink", noop[[]byte])
	run(b, p, 1000)
}

func BenchmarkMap(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(stages.Map(pipeline.Source(p, "orders", pipeline.Bytes()), "len", func(v []byte) int { return len(v) }), "sink", noop[int])
	run(b, p, 1000)
}

func BenchmarkFilter(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(stages.Filter(pipeline.Source(p, "orders", pipeline.Bytes()), "keep", func(v []byte) bool { return len(v) > 0 }), "sink", noop[[]byte])
	run(b, p, 1000)
}

func BenchmarkDuplicate2(b *testing.B) {
	p := pipeline.New()
	x, y := stages.Duplicate2(pipeline.Source(p, "orders", pipeline.Bytes()), "dup")
	pipeline.Sink(x, "a", noop[[]byte])
	pipeline.Sink(y, "b", noop[[]byte])
	run(b, p, 1000)
}

func BenchmarkFanOut(b *testing.B) {
	for _, tt := range []struct {
		workers int
		opts    []stages.FanOutOpt
	}{
		{4, nil},
		{64, nil},
		{4, []stages.FanOutOpt{stages.Unordered()}},
	} {
		name := fmt.Sprintf("workers=%d", tt.workers)
		if tt.opts != nil {
			name += ",unordered"
		}
		b.Run(name, func(b *testing.B) {
			p := pipeline.New()
			pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", pipeline.Bytes()), "fan", tt.workers, tt.opts...), "sink", noop[[]byte])
			run(b, p, 1000)
		})
	}
}

func BenchmarkWindowTumblingCount100(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(stages.Window(pipeline.Source(p, "orders", pipeline.Bytes()), "w", stages.TumblingCount(100)), "sink", noop[stages.Pane[[]byte]])
	run(b, p, 1000)
}

func BenchmarkWindowTumblingTime(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(stages.Window(pipeline.Source(p, "orders", pipeline.Bytes()), "w", stages.Tumbling(time.Millisecond)), "sink", noop[stages.Pane[[]byte]])
	run(b, p, 1000)
}

func BenchmarkBatch100(b *testing.B) {
	p := pipeline.New()
	pipeline.Sink(stages.Batches(pipeline.Source(p, "orders", pipeline.Bytes()), "b", 100, time.Millisecond), "sink", noop[stages.Batch[[]byte]])
	run(b, p, 1000)
}

// BenchmarkFanOutIOBound is the I/O-bound target: a sink that takes 5 ms a
// call, one partition, 1,000 keys, a key-ordered FanOut of 64. The ideal is
// 64 calls per 5 ms = 12,800 records/s; x-ideal is the measured fraction of
// it. time.Sleep(5ms) takes longer than 5 ms, more so on a busy machine, so
// the benchmark also reports the sink's measured mean latency (sink-ms), the
// fraction of the ideal computed from it (x-ideal-measured), and the rate
// over that of 64 bare goroutines sleeping 5 ms in a loop (x-sleep).
func BenchmarkFanOutIOBound(b *testing.B) {
	const (
		workers = 64
		latency = 5 * time.Millisecond
	)
	var slept atomic.Int64 // total time the sink took, ns
	p := pipeline.New()
	pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", pipeline.Bytes()), "fan", workers), "slow",
		func(context.Context, pipeline.Message[[]byte]) error {
			start := time.Now()
			time.Sleep(latency) // the workload
			slept.Add(int64(time.Since(start)))
			return nil
		})
	rate := run(b, p, 1000)
	b.ReportMetric(rate/(float64(workers)/latency.Seconds()), "x-ideal")
	mean := time.Duration(slept.Load() / int64(b.N))
	b.ReportMetric(rate/(float64(workers)/mean.Seconds()), "x-ideal-measured")
	b.ReportMetric(float64(mean)/float64(time.Millisecond), "sink-ms")
	b.ReportMetric(rate/sleepers(workers, latency, time.Second), "x-sleep")
}

// sleepers is the rate of workers goroutines that do nothing but sleep for
// latency in a loop, for d: the best any design can do with this sink on
// this machine right now (time.Sleep overshoots, more so on a busy machine).
func sleepers(workers int, latency, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				time.Sleep(latency)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}
