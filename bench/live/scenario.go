package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-go/sluice/bench/internal/proc"
)

// scenario is one pipeline against one downstream, run once per mode.
type scenario struct {
	name, title string
	http        bool    // the downstream is the HTTP server process; else the sink sleeps in-process
	service     service // service time (the sleep for in-process sinks)
	workers     int     // HTTP downstream's workers at the start; 0 unlimited
	partitions  int
	fanout      int // FanOut workers per partition
	records     int // produced once; a run stops when all were handled
	duration    time.Duration
	warm        time.Duration // goodput and latency are measured after this
	events      []event
	modes       []string
	baseline    string // ratios are against this mode, or the best fixed-N if "best-fixed"
	ideal       func(at time.Duration) float64
	idealNote   string // how ideal was derived, when it was measured
}

func (sc *scenario) topic() string { return "live-" + sc.name }

// event changes the downstream, or starts a noisy neighbour, at a time
// after the run's first call.
type event struct {
	at      time.Duration
	label   string
	control string        // a downstream control query: workers=N, scale=X, stall=D
	burn    time.Duration // run the noisy neighbour for this long
}

func (ev event) apply(ctx context.Context, e *env, t0 time.Time) error {
	t := time.NewTimer(time.Until(t0.Add(ev.at)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if ev.control != "" {
		if err := e.setDownstream(ev.control); err != nil {
			return fmt.Errorf("%s: %w", ev.label, err)
		}
	}
	if ev.burn > 0 {
		p, err := proc.Start("burner", "")
		if err != nil {
			return fmt.Errorf("%s: %w", ev.label, err)
		}
		defer p.Stop()
		b := time.NewTimer(ev.burn)
		defer b.Stop()
		select {
		case <-b.C:
		case <-ctx.Done():
		}
	}
	return nil
}

func constant(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }

// steps is an ideal limit that changes at the given times.
func steps(first float64, at []time.Duration, vals []float64) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		v := first
		for i, a := range at {
			if t >= a {
				v = vals[i]
			}
		}
		return v
	}
}

func scenarios() []*scenario {
	const parts, fan = 12, 64
	demand := float64(parts * fan)
	unlimited := func(name string, d time.Duration, records int, dur time.Duration) *scenario {
		return &scenario{
			name:    name,
			title:   fmt.Sprintf("sink sleeps %v in-process (unlimited capacity, constant latency), FanOut(%d) x %d partitions", d, fan, parts),
			service: service{mean: d}, partitions: parts, fanout: fan, records: records,
			duration: dur, warm: 2 * time.Second,
			modes:    []string{"none", "chain", "fixed-256", "adaptive", "full"},
			baseline: "none", ideal: constant(demand),
		}
	}
	const svc = 5 * time.Millisecond
	httpSvc := service{mean: svc, sigma: 0.3}
	capacity := &scenario{
		name:  "capacity",
		title: "HTTP downstream in its own process, 64 workers, service lognormal mean 5ms sigma 0.3",
		http:  true, service: httpSvc, workers: 64, partitions: parts, fanout: fan, records: 300_000,
		duration: 10 * time.Second, warm: 3 * time.Second,
		modes:    []string{"none", "fixed-8", "fixed-48", "fixed-64", "fixed-80", "fixed-96", "fixed-128", "adaptive", "full"},
		baseline: "best-fixed", ideal: constant(64),
	}
	at := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	schedule := &scenario{
		name:  "schedule",
		title: "HTTP downstream, 64 workers: 16 workers at 6s, 64 at 12s, service x3 at 18s, x1 at 24s, stalled for 1s at 30s",
		http:  true, service: httpSvc, workers: 64, partitions: parts, fanout: fan, records: 600_000,
		duration: 36 * time.Second, warm: 3 * time.Second,
		events: []event{
			{at: at(6), label: "drop", control: "workers=16"},
			{at: at(12), label: "recovery", control: "workers=64"},
			{at: at(18), label: "latency x3", control: "scale=3"},
			{at: at(24), label: "latency x1", control: "scale=1"},
			{at: at(30), label: "stall", control: "stall=1s"},
		},
		modes:    []string{"none", "fixed-64", "adaptive"},
		baseline: "fixed-64",
		ideal:    steps(64, []time.Duration{at(6), at(12)}, []float64{16, 64}),
	}
	noisy := &scenario{
		name:  "noisy",
		title: "HTTP downstream, 64 workers; another process burns every core from 5s to 8s",
		http:  true, service: httpSvc, workers: 64, partitions: parts, fanout: fan, records: 300_000,
		duration: 14 * time.Second, warm: 2 * time.Second,
		events:   []event{{at: at(5), label: "noisy neighbour", burn: 3 * time.Second}},
		modes:    []string{"none", "fixed-64", "adaptive"},
		baseline: "fixed-64", ideal: constant(64),
	}
	return []*scenario{
		unlimited("unlimited-2ms", 2*time.Millisecond, 2_400_000, 6*time.Second),
		unlimited("unlimited-20ms", 20*time.Millisecond, 400_000, 10*time.Second),
		capacity, schedule, noisy,
	}
}
