package main

import (
	"fmt"
	"math"
	"time"
)

// refWindow is the decision window used to count the reaction of limiters
// that have no windows of their own (fixed and the per-sample reference
// limiters): 100ms, the adaptive limiter's minimum window and Envoy's
// update interval.
const refWindow = 100 * time.Millisecond

// settle band around the ideal limit: at most 20% below, at most 50% above
// (the adaptive limiter's tolerance band, 1.1x-1.2x, plus one growth step).
const (
	settleLow  = 0.8
	settleHigh = 1.5
	settleRun  = 10 // windows in a row inside the band
)

type window struct {
	t       time.Duration // after the change
	limit   int
	probing bool
}

// metrics are the figures of one run.
type metrics struct {
	name           string
	goodput        float64
	p50, p99, e2e  float64
	timeouts, shed int
	windows        []window
	meanWindow     time.Duration // mean window length after the change
	minLimit       int           // lowest limit after the change (10ms trace)
	maxAfter       int           // highest limit after first reaching the settle band
	settleK        int           // first window of settleRun in the band; 0: never
	demandRatio    float64
	trace          []tracePoint
}

func measure(sc *scenario, r *result) metrics {
	m := metrics{
		name:     r.limiter,
		goodput:  float64(r.ok) / (sc.duration - sc.measureFrom()).Seconds(),
		p50:      percentile(r.lat, 0.5),
		p99:      percentile(r.lat, 0.99),
		e2e:      percentile(r.e2e, 0.99),
		timeouts: r.timeouts, shed: r.shed,
		demandRatio: r.demandRatio,
		trace:       r.trace,
		minLimit:    math.MaxInt,
	}
	from := sc.measureFrom()
	if r.decisions != nil {
		t0 := r.t0()
		for _, d := range r.decisions {
			if t := d.At.Sub(t0); t > from {
				m.windows = append(m.windows, window{t: t - from, limit: d.Limit, probing: d.Probing})
			}
		}
	} else {
		for _, p := range r.trace {
			if p.t > from && (p.t-from)%refWindow == 0 {
				m.windows = append(m.windows, window{t: p.t - from, limit: p.limit})
			}
		}
	}
	if n := len(m.windows); n > 0 {
		m.meanWindow = m.windows[n-1].t / time.Duration(n)
	}
	ideal := sc.idealAfter
	inBand := func(l int) bool { return float64(l) >= settleLow*ideal && float64(l) <= settleHigh*ideal }
	for k := range m.windows {
		run, ok := 0, true
		for j := k; j < len(m.windows) && run < settleRun; j++ {
			if m.windows[j].probing {
				continue
			}
			if !inBand(m.windows[j].limit) {
				ok = false
				break
			}
			run++
		}
		if ok && run == settleRun {
			m.settleK = k + 1
			break
		}
	}
	reached := time.Duration(-1)
	for _, p := range r.trace {
		if p.t <= from {
			continue
		}
		m.minLimit = min(m.minLimit, p.limit)
		if reached < 0 && inBand(p.limit) {
			reached = p.t
		}
		if reached >= 0 {
			m.maxAfter = max(m.maxAfter, p.limit)
		}
	}
	return m
}

// reach returns the first window (1-based) whose limit satisfies ok, or 0.
func (m metrics) reach(ok func(int) bool) (int, window) {
	for i, w := range m.windows {
		if ok(w.limit) {
			return i + 1, w
		}
	}
	return 0, window{}
}

// overshoot is how far the limit went above the ideal after reaching the
// settle band, as a fraction.
func (m metrics) overshoot(ideal float64) float64 {
	if m.maxAfter == 0 {
		return math.NaN()
	}
	return float64(m.maxAfter)/ideal - 1
}

// target is one pass/fail line.
type target struct {
	name   string
	pass   bool
	figure string
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// targets evaluates the targets that apply to scenario sc for one
// limiter's metrics. best is the best fixed limiter's goodput in sc.
func targets(sc *scenario, m metrics, best float64) []target {
	var ts []target
	ideal := sc.idealAfter
	switch sc.name {
	case "steady":
		ratio := m.goodput / best
		ts = append(ts, target{"steady: goodput >= 0.95 x best fixed", ratio >= 0.95, fmt.Sprintf("%.3f x (%.0f/s vs %.0f/s)", ratio, m.goodput, best)})
		lr := m.p99 / unloadedP99
		ts = append(ts, target{"steady: p99 <= 1.5 x unloaded p99", lr <= 1.5, fmt.Sprintf("%.2f x (%.1f ms vs %.1f ms)", lr, m.p99, unloadedP99)})
	case "capacity-drop":
		k, w := m.reach(func(l int) bool { return float64(l) <= 1.2*ideal })
		fig := "never"
		if k > 0 {
			fig = fmt.Sprintf("window %d (%d ms): limit %d <= %.1f", k, w.t.Milliseconds(), w.limit, 1.2*ideal)
		}
		ts = append(ts, target{"drop 32->8: limit <= 1.2 x ideal within 3 windows", k > 0 && k <= 3, fig})
	case "latency-x3":
		ts = append(ts, target{"latency x3: limit never < 0.5 x ideal", float64(m.minLimit) >= 0.5*ideal, fmt.Sprintf("min %d vs %.0f", m.minLimit, 0.5*ideal)})
		fig := "never"
		if m.settleK > 0 {
			fig = fmt.Sprintf("window %d (%d ms)", m.settleK, m.windows[m.settleK-1].t.Milliseconds())
		}
		ts = append(ts, target{"latency x3: settles within 10 windows", m.settleK > 0 && m.settleK <= 10, fig})
	case "unlimited", "cpu-bound":
		ratio := m.goodput / best
		ts = append(ts, target{sc.name + ": goodput >= 0.9 x best fixed", ratio >= 0.9, fmt.Sprintf("%.3f x (%.0f/s vs %.0f/s)", ratio, m.goodput, best)})
		if sc.coldStart {
			at := time.Duration(-1)
			for _, p := range m.trace {
				if float64(p.limit) >= 0.9*ideal {
					at = p.t
					break
				}
			}
			fig := "never"
			if at >= 0 {
				fig = fmt.Sprintf("%d ms", at.Milliseconds())
			}
			ts = append(ts, target{sc.name + ": limit reaches 0.9 x demand within 2 s", at >= 0 && at <= 2*time.Second, fig})
		}
	case "recovery":
		k, w := m.reach(func(l int) bool { return math.Abs(float64(l)-ideal) <= 0.2*ideal })
		fig := "never"
		if k > 0 {
			fig = fmt.Sprintf("window %d (%d ms): limit %d", k, w.t.Milliseconds(), w.limit)
		}
		ts = append(ts, target{"recovery 8->32: within 20% of ideal within 10 windows", k > 0 && k <= 10, fig})
	}
	return ts
}
