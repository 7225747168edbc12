package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// servers is a real-time downstream: at most cap calls are served at once,
// each for service; the others queue. Its capacity can change.
type servers struct {
	mu      sync.Mutex
	cond    *sync.Cond
	cap     int
	busy    int
	service time.Duration

	done []time.Time // completion times
}

func newServers(c int, service time.Duration) *servers {
	s := &servers{cap: c, service: service}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *servers) setCap(c int) {
	s.mu.Lock()
	s.cap = c
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *servers) call(ctx context.Context) {
	s.mu.Lock()
	for s.busy >= s.cap {
		s.cond.Wait()
	}
	s.busy++
	s.mu.Unlock()
	// The service itself: simulated work, not synchronisation.
	t := time.NewTimer(s.service)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	s.mu.Lock()
	s.busy--
	s.done = append(s.done, time.Now())
	s.mu.Unlock()
	s.cond.Signal()
}

// rate is the completions per second in [from, to).
func (s *servers) rate(from, to time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.done {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// limitTrace samples a limiter's limit through its observer.
type limitTrace struct {
	mu  sync.Mutex
	pts []struct {
		at    time.Time
		limit int
	}
	decisions []backpressure.Decision
}

// Decided keeps the limiter's decisions for the failure report.
func (l *limitTrace) Decided(d backpressure.Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decisions = append(l.decisions, d)
}

// report logs the decisions, relative to t0, when the test failed.
func (l *limitTrace) report(t *testing.T, t0 time.Time) {
	if !t.Failed() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.decisions {
		t.Logf("%6.2fs %-10s limit %3d in-flight %5.1f max %3d latency %v baseline %v",
			d.At.Sub(t0).Seconds(), d.Reason, d.Limit, d.InFlight, d.MaxInFlight, d.Latency.Round(100*time.Microsecond), d.Baseline.Round(100*time.Microsecond))
	}
}

func (l *limitTrace) LimitChanged(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pts = append(l.pts, struct {
		at    time.Time
		limit int
	}{time.Now(), n})
}
func (l *limitTrace) InFlightChanged(int) {}

// mean is the time-weighted mean limit in [from, to).
func (l *limitTrace) mean(from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	sum, cur := 0.0, 0
	at := from
	for _, p := range l.pts {
		if p.at.After(to) {
			break
		}
		if p.at.After(at) {
			sum += float64(cur) * p.at.Sub(at).Seconds()
			at = p.at
		}
		cur = p.limit
	}
	sum += float64(cur) * to.Sub(at).Seconds()
	return sum / to.Sub(from).Seconds()
}

// TestConsumerThroughputFollowsSinkCapacity runs a real consumer on kfake
// whose sink calls a downstream of 16 servers (10ms each) through an
// adaptive limiter; the downstream drops to 4 servers and recovers. The
// throughput and the limit must follow, every record must be handled, and
// the committed offsets must reach the end. Real time on a shared machine:
// the checks are ratios with wide margins.
func TestConsumerThroughputFollowsSinkCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time end-to-end test")
	}
	const (
		topic   = "load"
		records = 9000
		high    = 16
		low     = 4
		service = 10 * time.Millisecond
		phase   = 3 * time.Second
	)
	kc := kafkatest.New(t, kafkatest.Topic(topic, 4))
	kc.ProduceN(t, topic, records, kafkatest.KeyedValue(2000))

	ds := newServers(high, service)
	trace := &limitTrace{}
	lim, err := backpressure.NewAdaptive(backpressure.WithObserver(trace), backpressure.InitialLimit(8))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		handled = map[[2]int64]bool{}
	)
	p := pipeline.New(pipeline.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	src := pipeline.Source(p, topic, pipeline.Bytes())
	pipeline.Sink(stages.FanOut(src, "workers", 64), "downstream", func(ctx context.Context, m pipeline.Message[[]byte]) error {
		// The concurrency guard, as handlers.Limit does it: the latency is
		// the downstream call's alone.
		if err := lim.Acquire(ctx); err != nil {
			return err
		}
		start := time.Now()
		ds.call(ctx)
		lim.Release(time.Since(start), backpressure.Success)
		mu.Lock()
		handled[[2]int64{int64(m.Partition()), m.Offset()}] = true
		mu.Unlock()
		return nil
	})
	c, err := consumer.New(
		consumer.Brokers(kc.Addrs...),
		consumer.Group("e2e"),
		consumer.Topics(topic),
		consumer.Handle(p),
		consumer.CommitInterval(100*time.Millisecond),
		consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()

	// Phases by wall time; each is judged on its second half, after the
	// limiter had time to converge.
	kafkatest.Eventually(t, 30*time.Second, func() bool { return ds.rate(time.Time{}, time.Now().Add(time.Hour)) > 0 }, "no call reached the downstream")
	t0 := time.Now()
	defer trace.report(t, t0)
	waitUntil := func(at time.Time) {
		timer := time.NewTimer(time.Until(at))
		defer timer.Stop()
		select {
		case <-timer.C:
		case err := <-errc:
			t.Fatalf("consumer stopped: %v", err)
		}
	}
	waitUntil(t0.Add(phase))
	ds.setCap(low)
	waitUntil(t0.Add(2 * phase))
	ds.setCap(high)
	waitUntil(t0.Add(3 * phase))

	half := func(i int) (time.Time, time.Time) {
		return t0.Add(time.Duration(i)*phase + phase/2), t0.Add(time.Duration(i+1) * phase)
	}
	r1, r2, r3 := ds.rate(half(0)), ds.rate(half(1)), ds.rate(half(2))
	l1, l2, l3 := trace.mean(half(0)), trace.mean(half(1)), trace.mean(half(2))
	t.Logf("throughput %.0f / %.0f / %.0f per s (capacity %.0f / %.0f / %.0f); mean limit %.1f / %.1f / %.1f",
		r1, r2, r3, high/service.Seconds(), low/service.Seconds(), high/service.Seconds(), l1, l2, l3)

	if ratio := r2 / r1; ratio < 0.15 || ratio > 0.4 {
		t.Errorf("throughput after the drop is %.2f of before, want about %.2f", ratio, float64(low)/high)
	}
	if ratio := r3 / r1; ratio < 0.7 {
		t.Errorf("throughput after recovery is %.2f of before, want about 1", ratio)
	}
	if l2 > 3*low {
		t.Errorf("mean limit %.1f with %d servers, want at most %d", l2, low, 3*low)
	}
	if l1 < 0.75*high || l3 < 0.75*high {
		t.Errorf("mean limit %.1f and %.1f with %d servers, want at least %.0f", l1, l3, high, 0.75*high)
	}

	// Everything gets handled, and committed, without errors.
	kafkatest.Eventually(t, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == records
	}, "handled %v of %d records", kafkatest.Lazy(func() any { mu.Lock(); defer mu.Unlock(); return len(handled) }), records)
	kc.WaitCommittedEnd(t, "e2e", topic, 30*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
}
