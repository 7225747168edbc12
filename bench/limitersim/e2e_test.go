package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
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

// limitTrace samples a limiter's limit through its hooks, and wakes
// whoever waits for the limit to reach a condition.
type limitTrace struct {
	mu  sync.Mutex
	pts []struct {
		at    time.Time
		limit int
	}
	decisions []backpressure.Decision
	changed   chan struct{} // receives (without blocking) on every change
}

func newLimitTrace() *limitTrace { return &limitTrace{changed: make(chan struct{}, 1)} }

// OnDecision keeps the limiter's decisions for the failure report.
func (l *limitTrace) OnDecision(d backpressure.Decision) {
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

func (l *limitTrace) OnLimit(n int) {
	l.mu.Lock()
	l.pts = append(l.pts, struct {
		at    time.Time
		limit int
	}{time.Now(), n})
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// last is the current limit (0 before the first report).
func (l *limitTrace) last() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pts) == 0 {
		return 0
	}
	return l.pts[len(l.pts)-1].limit
}

// until waits for the limit to satisfy ok, for a limit change at a time.
// It reports false when the timeout expires or stop receives first.
func (l *limitTrace) until(ok func(int) bool, timeout time.Duration, stop <-chan error) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for !ok(l.last()) {
		select {
		case <-l.changed:
		case <-timer.C:
			return false
		case <-stop:
			return false
		}
	}
	return true
}

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
// limit must follow (down to at most 3x the servers after the drop, back to
// at least 3/4 of them after the recovery), the throughput must follow
// (measured after the limit has followed, against the throughput before the
// drop in the same run), every record must be handled, and the committed
// offsets must reach the end.
//
// Real time on a shared machine, where a busy CPU stretches the limiter's
// windows and its latency quantiles: each phase starts on an event (the
// limit has followed, with a generous deadline), not at a wall time, and
// the checks are ratios with wide margins. How fast the limit follows is a
// benchmark (bench/limitersim's targets in virtual time, bench/live's on
// the real thing), not asserted here.
func TestConsumerThroughputFollowsSinkCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time end-to-end test")
	}
	const (
		topic   = "load"
		records = 16000
		high    = 16
		low     = 4
		service = 10 * time.Millisecond
		measure = 1500 * time.Millisecond // each phase's throughput is measured over this
		follow  = 30 * time.Second        // deadline for the limit to follow a change
	)
	kc := kafkatest.New(t, kafkatest.Topic(topic, 4))
	kc.ProduceN(t, topic, records, kafkatest.KeyedValue(2000))

	ds := newServers(high, service)
	trace := newLimitTrace()
	lim, err := backpressure.NewAdaptive(backpressure.Hooks(trace), backpressure.InitialLimit(8))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		handled = map[[2]int64]bool{}
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	p := pipeline.New(pipeline.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	src := pipeline.Source(p, topic, pipeline.Bytes())
	pipeline.Sink(stages.FanOut(src, "workers", 64), "downstream", func(ctx context.Context, m pipeline.Message[[]byte]) error {
		// The concurrency guard, as handlers' Limiter option does it: the latency is
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
		consumer.Connection(sluice.Connection{Brokers: kc.Addrs}),
		consumer.Group("e2e"),
		consumer.Handle(p),
		consumer.CommitInterval(100*time.Millisecond),
		consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runErr error
	done := make(chan error) // closed when Run returns
	go func() {
		runErr = c.Run(ctx)
		close(done)
	}()
	defer func() { cancel(); <-done }()

	kafkatest.Eventually(t, 30*time.Second, func() bool { return ds.rate(time.Time{}, time.Now().Add(time.Hour)) > 0 }, "no call reached the downstream")
	t0 := time.Now()
	defer trace.report(t, t0)
	// wait waits for the limit to satisfy ok, then measures the throughput
	// and the mean limit over the next measure.
	wait := func(phase string, ok func(int) bool) (rate, limit float64) {
		t.Helper()
		if !trace.until(ok, follow, done) {
			select {
			case <-done:
				t.Fatalf("%s: consumer stopped: %v", phase, runErr)
			default:
			}
			t.Fatalf("%s: limit %d after %v", phase, trace.last(), follow)
		}
		from := time.Now()
		timer := time.NewTimer(measure)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-done:
			t.Fatalf("%s: consumer stopped: %v", phase, runErr)
		}
		to := time.Now()
		if n := count(); n >= records {
			t.Fatalf("%s: all %d records were handled before the phase was measured; produce more", phase, n)
		}
		t.Logf("%s: limit followed at %.2fs, measured until %.2fs", phase, from.Sub(t0).Seconds(), to.Sub(t0).Seconds())
		return ds.rate(from, to), trace.mean(from, to)
	}
	r1, l1 := wait("start", func(n int) bool { return n >= 3*high/4 })
	ds.setCap(low)
	r2, l2 := wait("drop", func(n int) bool { return n > 0 && n <= 3*low })
	ds.setCap(high)
	r3, l3 := wait("recovery", func(n int) bool { return n >= 3*high/4 })
	t.Logf("throughput %.0f / %.0f / %.0f per s (capacity %.0f / %.0f / %.0f); mean limit %.1f / %.1f / %.1f",
		r1, r2, r3, high/service.Seconds(), low/service.Seconds(), high/service.Seconds(), l1, l2, l3)

	// The downstream bounds the throughput after the drop to a quarter of
	// its capacity; the limiter must neither starve it (well under a
	// quarter of what it did before) nor, after the recovery, keep the
	// throughput far below what it was before the drop.
	if ratio := r2 / r1; ratio < 0.12 || ratio > 0.6 {
		t.Errorf("throughput after the drop is %.2f of before, want about %.2f", ratio, float64(low)/high)
	}
	if ratio := r3 / r1; ratio < 0.7 {
		t.Errorf("throughput after recovery is %.2f of before, want about 1", ratio)
	}
	if l2 > 3*low {
		t.Errorf("mean limit %.1f with %d servers, once it followed the drop; want at most %d", l2, low, 3*low)
	}
	if l1 < high/2 || l3 < high/2 {
		t.Errorf("mean limit %.1f and %.1f with %d servers, once it reached %d; want at least %d", l1, l3, high, 3*high/4, high/2)
	}

	// Everything gets handled, and committed, without errors.
	kafkatest.Eventually(t, 60*time.Second, func() bool { return count() == records },
		"handled %v of %d records", kafkatest.Lazy(func() any { return count() }), records)
	kc.WaitCommittedEnd(t, "e2e", topic, 30*time.Second)
	cancel()
	<-done
	if runErr != nil {
		t.Fatalf("consumer: %v", runErr)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
}
