package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/sluice-go/sluice"
)

func makers(sc *scenario) []maker {
	var ms []maker
	for _, n := range sc.fixedLimits() {
		ms = append(ms, fixed(n))
	}
	return append(ms,
		adaptive(),
		maker{"gradient2", func(sluice.Clock, uint64) limiter { return newGradient2() }},
		maker{"vegas", func(_ sluice.Clock, seed uint64) limiter { return newVegas(seed) }},
		maker{"envoy", func(clk sluice.Clock, seed uint64) limiter { return newEnvoy(clk, seed) }},
	)
}

var adaptiveNames = []string{"adaptive", "gradient2", "vegas", "envoy"}

type scenarioResult struct {
	sc   *scenario
	runs []metrics
	best float64 // best fixed goodput
}

func (s scenarioResult) get(name string) metrics {
	for _, m := range s.runs {
		if m.name == name {
			return m
		}
	}
	return metrics{}
}

type robust struct {
	name   string
	passes int
	worst  string
}

type reportData struct {
	seed, seeds int
	scale       float64
	results     []scenarioResult
	panels      []panel
	demand      map[string]float64 // worst limit/demand ratio over all scenarios
	robust      []robust
}

func report(seed uint64, seeds int, scale float64, debug string) *reportData {
	rep := &reportData{seed: int(seed), seeds: seeds, scale: scale, demand: map[string]float64{}}
	for _, sc := range scenarios(scale) {
		sr := scenarioResult{sc: sc}
		p := panel{sc: sc, runs: map[string]metrics{}}
		for _, mk := range makers(sc) {
			r := run(sc, mk.name, mk.mk, seed)
			if debug == sc.name && mk.name == "adaptive" {
				printDecisions(r)
			}
			m := measure(sc, r)
			sr.runs = append(sr.runs, m)
			if strings.HasPrefix(mk.name, "fixed") {
				sr.best = math.Max(sr.best, m.goodput)
			} else {
				p.runs[mk.name] = m
			}
			rep.demand[mk.name] = math.Max(rep.demand[mk.name], m.demandRatio)
		}
		rep.results = append(rep.results, sr)
		rep.panels = append(rep.panels, p)
	}
	rep.robustness(seeds, scale)
	return rep
}

func printDecisions(r *result) {
	for _, d := range r.decisions {
		fmt.Printf("%8.3fs %-10s limit %4d probe %-5v n %6.1f max %4d q %6.2fms base %6.2fms samples %d overloads %d\n",
			ms(d.At.Sub(r.t0()))/1000, d.Reason, d.Limit, d.Probing, d.InFlight, d.MaxInFlight, ms(d.Latency), ms(d.Baseline), d.Samples, d.Overloads)
	}
}

// robustness runs the adaptive limiter's targets with seeds 1..n.
func (rep *reportData) robustness(n int, scale float64) {
	if n <= 0 {
		return
	}
	byName := map[string]*robust{}
	var order []string
	note := func(name string, pass bool, fig string) {
		r, ok := byName[name]
		if !ok {
			r = &robust{name: name}
			byName[name] = r
			order = append(order, name)
		}
		if pass {
			r.passes++
		} else if r.worst == "" {
			r.worst = fig
		}
	}
	for s := 1; s <= n; s++ {
		worstDemand := 0.0
		for _, sc := range scenarios(scale) {
			if sc.name == "latency-x3-wide" {
				continue
			}
			best := 0.0
			for _, k := range sc.bestFixed() {
				best = math.Max(best, measure(sc, run(sc, "fixed", fixed(k).mk, uint64(s))).goodput)
			}
			m := measure(sc, run(sc, "adaptive", adaptive().mk, uint64(s)))
			for _, t := range targets(sc, m, best) {
				note(t.name, t.pass, fmt.Sprintf("seed %d: %s", s, t.figure))
			}
			worstDemand = math.Max(worstDemand, m.demandRatio)
		}
		note("all scenarios: limit <= 5 x in-flight demand", worstDemand <= 5, fmt.Sprintf("seed %d: %.2f", s, worstDemand))
	}
	for _, name := range order {
		rep.robust = append(rep.robust, *byName[name])
	}
}

func (rep *reportData) markdown(pngPath, docPath string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n\n", sectionHeading)
	w("`backpressure.Adaptive` against a simulated downstream, next to fixed limits and three reference\n")
	w("algorithms. Produced by (virtual time: the figures depend only on the seed, not on the machine,\n")
	w("which was shared with other builds when this ran):\n\n")
	cmd := "go run ./bench/limitersim"
	if docPath != "" {
		cmd += " -update " + docPath
	}
	if pngPath != "" {
		cmd += " -png " + pngPath
	}
	if rep.scale != 1 {
		cmd += fmt.Sprintf(" -scale %g", rep.scale)
	}
	if rep.seed != 1 {
		cmd += fmt.Sprintf(" -seed %d", rep.seed)
	}
	w("```sh\n%s\n```\n\n", cmd)

	w("### Model and definitions\n\n")
	w("- **Downstream**: c servers in front of one FIFO queue; service time lognormal, mean %.0f ms,\n", serviceMeanMS)
	w("  sigma %.1f (median %.1f ms, p99 %.1f ms). A call waits in the queue, is served, and its latency\n", serviceSigma, math.Exp(serviceMu), unloadedP99)
	w("  (queue + service) is reported to the limiter with `Release`. A call not answered within 100 ms\n")
	w("  is released as `Overload` (the per-attempt timeout); the server still does the work.\n")
	w("- **Load**: closed (256 clients, no think time: the limiter is always the bottleneck) or open\n")
	w("  (Poisson arrivals, a request waiting more than 500 ms for a slot is shed).\n")
	w("- **Ideal limit**: the largest concurrency the downstream serves without queueing, which by\n")
	w("  Little's law is its throughput x its unloaded latency: with c servers, c/mean x mean = **c**.\n")
	w("  Service time x3 on the same servers divides throughput by 3 and multiplies latency by 3:\n")
	w("  the ideal stays c. Caller-bound has ideal 32 but a demand of only 4.\n")
	w("- **Large demand** (unlimited, cpu-bound): 768 clients, as a consumer of FanOut(64) x 12\n")
	w("  partitions has, against a downstream of unlimited capacity: the ideal is the demand, and the\n")
	w("  limit must reach 0.9 of it within 2 s of the start. In cpu-bound the caller has a CPU of its own:\n")
	w("  after the downstream answers, a call needs 50 us of it on one of 2 cores (FIFO), so throughput\n")
	w("  saturates at 40,000 calls/s, reached at 400 in flight, and above that latency rises with\n")
	w("  concurrency while throughput does not.\n")
	w("- **Decision window**: for `Adaptive`, the span between two decisions: it closes at the first\n")
	w("  `Release` at which at least 100 ms have passed and at least 100 Success/Overload outcomes of\n")
	w("  calls *started inside the window* were counted (defaults of `backpressure.Window`). Each\n")
	w("  window ends in exactly one decision (`Decision` hook). For limiters without windows (fixed,\n")
	w("  Gradient2, Vegas per sample) a window is 100 ms (Envoy's update interval). Windows are\n")
	w("  counted from the change; the one in progress at the change counts as window 1.\n")
	w("- **Goodput**: successful calls per second after warm-up (5 s) or after the change.\n")
	w("  Latencies are call latencies (what the limiter sees); e2e p99 adds the wait for a slot.\n")
	w("- **Converge** (settle): first window from which %d consecutive non-probe windows keep the limit\n", settleRun)
	w("  within [%.1f, %.1f] x ideal (the tolerance band 1.1x-1.2x plus one growth step). **Overshoot**: the\n", settleLow, settleHigh)
	w("  highest limit after first entering that band, over the ideal. **Demand ratio**: per 100 ms\n")
	w("  after warm-up, highest limit / highest (in-flight + waiting); the worst bucket is reported.\n")
	w("- Reference limiters (`bench/limitersim/ref.go`), written from the published rules with their\n")
	w("  defaults: Netflix `Gradient2Limit` and `VegasLimit` updated per sample (Gradient2 with\n")
	w("  minLimit 1 instead of 20), Envoy's gradient controller (p50 per 100 ms, minRTT from 50\n")
	w("  samples at concurrency 3 every 60 s + jitter, buffer 25%%). Per-sample updates are how the\n")
	w("  Netflix limits run without a `WindowedLimit`; with lognormal service times they react to\n")
	w("  every slow sample, which is much of why they hold the limit low here. Wrapped in a window\n")
	w("  they would do better; they are here to show the failure modes, not as tuned competitors.\n\n")

	w("### Targets (seed %d)\n\n", rep.seed)
	w("| target | adaptive | gradient2 | vegas | envoy |\n|---|---|---|---|---|\n")
	for _, sr := range rep.results {
		rows := map[string][]string{}
		var names []string
		for _, n := range adaptiveNames {
			for _, t := range targets(sr.sc, sr.get(n), sr.best) {
				if _, ok := rows[t.name]; !ok {
					names = append(names, t.name)
				}
				rows[t.name] = append(rows[t.name], fmt.Sprintf("**%s** %s", passFail(t.pass), t.figure))
			}
		}
		for _, n := range names {
			w("| %s | %s |\n", n, strings.Join(rows[n], " | "))
		}
	}
	var cells []string
	for _, n := range adaptiveNames {
		cells = append(cells, fmt.Sprintf("**%s** worst %.2f", passFail(rep.demand[n] <= 5), rep.demand[n]))
	}
	w("| all scenarios: limit <= 5 x in-flight demand | %s |\n\n", strings.Join(cells, " | "))

	if len(rep.robust) > 0 {
		w("Adaptive limiter, same targets with seeds 1..%d:\n\n", rep.seeds)
		w("| target | passed | first failure |\n|---|---|---|\n")
		for _, r := range rep.robust {
			worst := r.worst
			if worst == "" {
				worst = "-"
			}
			w("| %s | %d/%d | %s |\n", r.name, r.passes, rep.seeds, worst)
		}
		w("\n")
	}

	if pngPath != "" {
		rel := pngPath
		if docPath != "" {
			if r, err := filepath.Rel(filepath.Dir(docPath), pngPath); err == nil {
				rel = r
			}
		}
		w("![limit over time](%s)\n\n", filepath.ToSlash(rel))
		w("Limit over virtual time in each scenario (seed %d); dashed: the ideal limit. Values above a\n", rep.seed)
		w("panel's axis are drawn at its top edge (Envoy in caller-bound climbs to its maximum, 1000).\n\n")
	}

	w("### Scenarios (seed %d)\n\n", rep.seed)
	for _, sr := range rep.results {
		w("**%s**: %s.", sr.sc.name, sr.sc.title)
		if sr.sc.changeAt > 0 {
			w(" Figures after the change (ideal %.0f).", sr.sc.idealAfter)
		}
		w("\n\n")
		w("| limiter | goodput /s | vs best fixed | p50 ms | p99 ms | e2e p99 ms | timeouts | shed | mean limit | converge | overshoot | demand ratio |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, m := range sr.runs {
			conv := "-"
			if m.settleK > 0 {
				conv = fmt.Sprintf("%d w / %d ms", m.settleK, m.windows[m.settleK-1].t.Milliseconds())
			} else if sr.sc.changeAt > 0 || !strings.HasPrefix(m.name, "fixed") {
				conv = "no"
			}
			over := m.overshoot(sr.sc.idealAfter)
			os := "-"
			if !math.IsNaN(over) {
				os = fmt.Sprintf("%+.0f%%", 100*over)
			}
			w("| %s | %.0f | %.3f | %.1f | %.1f | %.1f | %d | %d | %.1f | %s | %s | %.2f |\n",
				m.name, m.goodput, m.goodput/sr.best, m.p50, m.p99, m.e2e, m.timeouts, m.shed, meanLimit(sr.sc, m), conv, os, m.demandRatio)
		}
		w("\n")
	}
	return b.String()
}

func meanLimit(sc *scenario, m metrics) float64 {
	sum, n := 0.0, 0
	for _, p := range m.trace {
		if p.t >= sc.measureFrom() {
			sum += float64(p.limit)
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}
