package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/bench/internal/proc"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// mode is one way of guarding the sink.
type mode struct {
	name    string
	guarded bool // wrapped in handlers.Guard at all
	chain   bool // retry, breaker and per-attempt timeout
	fixed   int  // a fixed limit; 0 none
	adapt   bool // the adaptive limiter
}

// parseMode reads none, chain, fixed-N, adaptive and full (the chain with
// the adaptive limiter).
func parseMode(s string) (mode, error) {
	m := mode{name: s}
	switch {
	case s == "none":
	case s == "chain":
		m.guarded, m.chain = true, true
	case s == "adaptive":
		m.guarded, m.adapt = true, true
	case s == "full":
		m.guarded, m.chain, m.adapt = true, true, true
	case strings.HasPrefix(s, "fixed-"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "fixed-"))
		if err != nil || n < 1 {
			return m, fmt.Errorf("mode %q: want fixed-N with N >= 1", s)
		}
		m.guarded, m.fixed = true, n
	default:
		return m, fmt.Errorf("unknown mode %q (none, chain, fixed-N, adaptive, full)", s)
	}
	return m, nil
}

// call is one completed sink call.
type call struct {
	end int64 // ns since the run's reference time
	lat int32 // us
	ok  bool
}

// calls records the calls of one run; safe for concurrent use, one atomic
// add per call.
type calls struct {
	ref time.Time
	n   atomic.Int64
	buf []call
}

func newCalls(ref time.Time, capacity int) *calls {
	return &calls{ref: ref, buf: make([]call, capacity)}
}

func (c *calls) add(start, end time.Time, ok bool) {
	i := c.n.Add(1) - 1
	if int(i) < len(c.buf) {
		c.buf[i] = call{end: int64(end.Sub(c.ref)), lat: int32(end.Sub(start) / time.Microsecond), ok: ok}
	}
}

func (c *calls) all() []call { return c.buf[:min(int(c.n.Load()), len(c.buf))] }

// limitPoint is the limiter's state at one moment.
type limitPoint struct {
	at              time.Duration // since the run's reference time
	limit, inFlight int
}

// decisions keeps an adaptive limiter's decisions.
type decisions struct {
	mu sync.Mutex
	ds []backpressure.Decision
}

func (d *decisions) OnDecision(x backpressure.Decision) {
	d.mu.Lock()
	d.ds = append(d.ds, x)
	d.mu.Unlock()
}

func (d *decisions) list() []backpressure.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]backpressure.Decision(nil), d.ds...)
}

var _ backpressure.HookDecision = (*decisions)(nil)

// runResult is what one run measured.
type runResult struct {
	sc        *scenario
	mode      string
	round     int
	first     time.Duration // first call's end, since ref
	end       time.Duration // when the run stopped, since ref
	calls     []call
	trace     []limitPoint
	decisions []backpressure.Decision
	ref       time.Time
	cpu       time.Duration // this process, from first to end
	load      string
}

// env is what runs share: the broker and the downstream.
type env struct {
	broker     string
	downstream *proc.Proc // nil for in-process sleep sinks
	control    *http.Client
}

// setDownstream sends a control request.
func (e *env) setDownstream(q string) error {
	if e.downstream == nil {
		return nil
	}
	resp, err := e.control.Post("http://"+e.downstream.Addr+"/control?"+q, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("control %s: %s", q, resp.Status)
	}
	return nil
}

var discard = slog.New(slog.DiscardHandler)

// calibrate is the mean latency of calls to the downstream with no
// queueing: 2,000 calls, 8 at a time, with all its workers.
func calibrate(ctx context.Context, e *env) (time.Duration, error) {
	if err := e.setDownstream("workers=0&scale=1"); err != nil {
		return 0, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		mu    sync.Mutex
		total time.Duration
		n     int
		wg    sync.WaitGroup
		first error
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				start := time.Now()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.downstream.Addr+"/call", nil)
				if err != nil {
					return
				}
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				total += time.Since(start)
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, fmt.Errorf("calibrate: %w", first)
	}
	return total / time.Duration(n), nil
}

// runOnce runs the scenario's pipeline with one mode against a fresh
// consumer group, for the scenario's duration from the first call (or
// until every record was handled).
func runOnce(ctx context.Context, e *env, sc *scenario, m mode, round int) (*runResult, error) {
	ref := time.Now()
	rec := newCalls(ref, int(float64(sc.records)*1.5))
	dec := &decisions{}
	var lim backpressure.Limiter
	switch {
	case m.fixed > 0:
		l, err := backpressure.NewFixed(m.fixed)
		if err != nil {
			return nil, err
		}
		lim = l
	case m.adapt:
		l, err := backpressure.NewAdaptive(backpressure.Hooks(dec))
		if err != nil {
			return nil, err
		}
		lim = l
	}
	if err := e.setDownstream(fmt.Sprintf("workers=%d&scale=1", sc.workers)); err != nil {
		return nil, err
	}

	var sink func(context.Context, pipeline.Message[[]byte]) error
	if sc.http {
		tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		url := "http://" + e.downstream.Addr + "/call"
		sink = func(ctx context.Context, _ pipeline.Message[[]byte]) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				err = handlers.CheckHTTP(resp)
			}
			rec.add(start, time.Now(), err == nil)
			return err
		}
	} else {
		d := sc.service.mean
		sink = func(ctx context.Context, _ pipeline.Message[[]byte]) error {
			start := time.Now()
			time.Sleep(d)
			rec.add(start, time.Now(), true)
			return nil
		}
	}
	if m.guarded {
		opts := []handlers.Opt{handlers.Name("downstream"), handlers.Logger(discard)}
		if m.chain {
			opts = append(opts, handlers.Retry(handlers.RetryPolicy{}), handlers.Breaker(handlers.BreakerPolicy{}),
				handlers.Timeout(time.Second))
		}
		if lim != nil {
			opts = append(opts, handlers.Limiter(lim))
		}
		g, err := handlers.Guard(sink, opts...)
		if err != nil {
			return nil, err
		}
		sink = g
	}

	p := pipeline.New(pipeline.Logger(discard))
	src := pipeline.Source(p, sc.topic(), pipeline.Bytes())
	pipeline.Sink(stages.FanOut(src, "workers", sc.fanout), "downstream", sink)
	if err := p.Err(); err != nil {
		return nil, err
	}
	group := fmt.Sprintf("%s-%s-%d-%d", sc.name, m.name, round, ref.UnixNano())
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: []string{e.broker}}), consumer.Group(group), consumer.Handle(p), consumer.Logger(discard),
		// A total mark far above the per-partition ones, so that it is
		// never reached: at this writing the consumer deadlocks at
		// shutdown when the total mark has paused every partition
		// (release holds pauseMu and partition.finish calls maybeResume,
		// which takes it again).
		consumer.MaxUnsettled(consumer.Water{Records: 5000}, consumer.Water{Records: 10_000_000, Bytes: 8 << 30}))
	if err != nil {
		return nil, err
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(rctx) }()

	res := &runResult{sc: sc, mode: m.name, round: round, ref: ref, load: loadAvg()}
	// Wait for the first call: the schedule and the duration count from
	// there, so that joining the group is not part of the run.
	tick := time.NewTicker(time.Millisecond)
	for rec.n.Load() == 0 {
		select {
		case <-tick.C:
		case err := <-errc:
			tick.Stop()
			return nil, fmt.Errorf("consumer stopped before the first call: %v", err)
		case <-ctx.Done():
			tick.Stop()
			return nil, ctx.Err()
		}
	}
	tick.Stop()
	t0 := time.Now()
	cpu0 := selfCPU()
	res.first = t0.Sub(ref)

	var sched sync.WaitGroup
	schedErr := make(chan error, len(sc.events)+1)
	sctx, stopSched := context.WithCancel(rctx)
	for _, ev := range sc.events {
		sched.Add(1)
		go func() {
			defer sched.Done()
			if err := ev.apply(sctx, e, t0); err != nil && !errors.Is(err, context.Canceled) {
				schedErr <- err
			}
		}()
	}
	// The limiter's state every 10ms.
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		if lim == nil {
			return
		}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			res.trace = append(res.trace, limitPoint{at: time.Since(ref), limit: lim.Limit(), inFlight: lim.InFlight()})
			select {
			case <-t.C:
			case <-sctx.Done():
				return
			}
		}
	}()

	deadline := time.NewTimer(sc.duration)
	poll := time.NewTicker(10 * time.Millisecond)
	var runErr error
wait:
	for {
		select {
		case <-deadline.C:
			break wait
		case <-poll.C:
			if rec.n.Load() >= int64(sc.records) {
				break wait
			}
		case err := <-errc:
			runErr = fmt.Errorf("consumer stopped: %v", err)
			errc <- nil
			break wait
		case err := <-schedErr:
			runErr = err
			break wait
		}
	}
	deadline.Stop()
	poll.Stop()
	res.end = time.Since(ref)
	res.cpu = selfCPU() - cpu0
	stopSched()
	sched.Wait()
	<-sampleDone
	// Whatever the schedule did, the downstream serves again, so that the
	// drain finishes.
	if err := e.setDownstream("workers=0&scale=1&stall=0s"); err != nil && runErr == nil {
		runErr = err
	}
	cancel()
	if err := <-errc; err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = fmt.Errorf("consumer: %w", err)
	}
	res.calls = rec.all()
	res.decisions = dec.list()
	return res, runErr
}
