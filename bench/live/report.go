package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluice-go/sluice/bench/internal/proc"
)

const bucket = 100 * time.Millisecond

// metrics are the figures of one run.
type metrics struct {
	rate      float64       // successful calls a second, first call to end
	goodput   float64       // successful calls a second after the warm-up
	p50, p99  float64       // call latency after the warm-up, ms
	meanLat   float64       // ms
	meanIn    float64       // mean in-flight (sampled every 10ms) after the warm-up; NaN without a limiter
	failed    int           // failed calls after the warm-up
	meanLimit float64       // time-weighted, after the warm-up; NaN without a limiter
	cold      time.Duration // first call until goodput reached 0.9 of the steady goodput; -1 never
	noise     float64       // after the warm-up, the median relative change of goodput between consecutive 100ms buckets
	series    []float64     // successful calls a second per bucket, from the first call
}

func (r *runResult) metrics() metrics {
	m := metrics{meanLimit: math.NaN(), meanIn: math.NaN(), cold: -1}
	from := r.first + r.sc.warm
	var lat []float64
	ok := 0
	n := int((r.end-r.first)/bucket) + 1
	m.series = make([]float64, n)
	for _, c := range r.calls {
		at := time.Duration(c.end)
		if at > r.end {
			continue // the drain after the run
		}
		if c.ok {
			ok++
			if i := int((at - r.first) / bucket); i >= 0 && i < n {
				m.series[i] += float64(time.Second / bucket)
			}
		}
		if at < from || at > r.end {
			continue
		}
		if c.ok {
			lat = append(lat, float64(c.lat)/1000)
		} else {
			m.failed++
		}
	}
	m.rate = float64(ok) / (r.end - r.first).Seconds()
	m.goodput = float64(len(lat)) / (r.end - from).Seconds()
	m.p50, m.p99 = percentile(lat, 0.5), percentile(lat, 0.99)
	if len(lat) > 0 {
		sum := 0.0
		for _, l := range lat {
			sum += l
		}
		m.meanLat = sum / float64(len(lat))
	}
	if len(r.trace) > 0 {
		sum, in, k := 0.0, 0.0, 0
		for _, p := range r.trace {
			if p.at >= from {
				sum += float64(p.limit)
				in += float64(p.inFlight)
				k++
			}
		}
		if k > 0 {
			m.meanLimit, m.meanIn = sum/float64(k), in/float64(k)
		}
	}
	var steps []float64
	for i := int(r.sc.warm/bucket) + 1; i < len(m.series)-1; i++ {
		if m.series[i-1] > 0 {
			steps = append(steps, math.Abs(m.series[i]/m.series[i-1]-1))
		}
	}
	m.noise = median(steps)
	// Cold start: the first 300ms whose goodput is 0.9 of the steady one.
	for i := 0; i+3 <= len(m.series); i++ {
		if (m.series[i]+m.series[i+1]+m.series[i+2])/3 >= 0.9*m.goodput {
			m.cold = time.Duration(i+3) * bucket
			break
		}
	}
	return m
}

// mean is the mean of a series between two times since the first call.
func mean(series []float64, from, to time.Duration) float64 {
	i, j := int(from/bucket), int(to/bucket)
	i, j = max(i, 0), min(j, len(series))
	if j <= i {
		return math.NaN()
	}
	sum := 0.0
	for _, v := range series[i:j] {
		sum += v
	}
	return sum / float64(j-i)
}

func (r *runResult) line() string {
	m := r.metrics()
	lim := "-"
	if !math.IsNaN(m.meanLimit) {
		lim = fmt.Sprintf("%.0f", m.meanLimit)
	}
	if !math.IsNaN(m.meanIn) {
		lim += fmt.Sprintf(" (in-flight %.0f)", m.meanIn)
	}
	return fmt.Sprintf("round %d %-14s %-10s rate %8.0f/s goodput %8.0f/s p50 %6.2fms mean %6.2fms p99 %7.2fms failed %5d mean limit %5s cold %5v noise %4.1f%% cpu %5.2f cores  load %s",
		r.round+1, r.sc.name, r.mode, m.rate, m.goodput, m.p50, m.meanLat, m.p99, m.failed, lim, durOrNever(m.cold), 100*m.noise,
		r.cpu.Seconds()/(r.end-r.first).Seconds(), r.load)
}

func durOrNever(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(10 * time.Millisecond).String()
}

// printSeries prints the run's goodput a second, in 500ms buckets.
func printSeries(r *runResult) {
	m := r.metrics()
	var b strings.Builder
	for t := time.Duration(0); t < r.end-r.first; t += 500 * time.Millisecond {
		fmt.Fprintf(&b, " %.0f", mean(m.series, t, t+500*time.Millisecond))
	}
	fmt.Printf("  goodput/s every 500ms:%s\n", b.String())
}

func printDecisions(r *runResult) {
	for _, d := range r.decisions {
		fmt.Printf("  %7.3fs %-10s limit %4d probe %-5v n %6.1f max %4d q %7.2fms base %7.2fms x %7.0f/s samples %5d overloads %d\n",
			d.At.Sub(r.ref.Add(r.first)).Seconds(), d.Reason, d.Limit, d.Probing, d.InFlight, d.MaxInFlight,
			float64(d.Latency)/1e6, float64(d.Baseline)/1e6, d.Throughput, d.Samples, d.Overloads)
	}
}

// summary is the scenario's markdown table: medians over the rounds, and
// each mode's ratio to the baseline of the same round.
func summary(sc *scenario, results []*runResult) string {
	byMode := map[string][]metrics{}
	byRound := map[int]map[string]metrics{}
	runs := map[string][]*runResult{}
	for _, r := range results {
		if r.sc != sc {
			continue
		}
		m := r.metrics()
		byMode[r.mode] = append(byMode[r.mode], m)
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]metrics{}
		}
		byRound[r.round][r.mode] = m
		runs[r.mode] = append(runs[r.mode], r)
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("**%s**: %s. %d rounds.", sc.name, sc.title, len(byRound))
	if sc.idealNote != "" {
		w(" The %s.", sc.idealNote)
	}
	w("\n\n")
	base := func(ms map[string]metrics) float64 {
		if sc.baseline != "best-fixed" {
			return ms[sc.baseline].goodput
		}
		best := 0.0
		for name, m := range ms {
			if strings.HasPrefix(name, "fixed-") {
				best = math.Max(best, m.goodput)
			}
		}
		return best
	}
	baseName := sc.baseline
	if baseName == "best-fixed" {
		baseName = "the best fixed limit"
	}
	w("| mode | goodput /s | vs %s (same round) | rate from the first call /s | p50 ms | p99 ms | failed | mean limit | cold start |\n", baseName)
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range sc.modes {
		ms := byMode[name]
		if len(ms) == 0 {
			continue
		}
		var ratios []float64
		for _, rm := range byRound {
			if m, ok := rm[name]; ok {
				if b := base(rm); b > 0 {
					ratios = append(ratios, m.goodput/b)
				}
			}
		}
		get := func(f func(metrics) float64) []float64 {
			var xs []float64
			for _, m := range ms {
				xs = append(xs, f(m))
			}
			return xs
		}
		colds := get(func(m metrics) float64 { return float64(m.cold) })
		cold := "never"
		if c := median(colds); c >= 0 {
			cold = time.Duration(c).Round(10 * time.Millisecond).String()
		}
		lim := "-"
		if l := median(get(func(m metrics) float64 { return m.meanLimit })); !math.IsNaN(l) {
			lim = fmt.Sprintf("%.0f", l)
		}
		w("| %s | %.0f | %s | %.0f | %.2f | %.2f | %.0f | %s | %s |\n", name,
			median(get(func(m metrics) float64 { return m.goodput })), medRange(ratios),
			median(get(func(m metrics) float64 { return m.rate })),
			median(get(func(m metrics) float64 { return m.p50 })), median(get(func(m metrics) float64 { return m.p99 })),
			median(get(func(m metrics) float64 { return float64(m.failed) })), lim, cold)
	}
	w("\n")
	if sc.name == "capacity" {
		var rs []float64
		for _, rm := range byRound {
			if a, ok := rm["adaptive"]; ok {
				if u, ok := rm["fixed-8"]; ok {
					rs = append(rs, a.p99/u.p99)
				}
			}
		}
		if len(rs) > 0 {
			w("Adaptive call p99 over the unloaded p99 (fixed-8's, same round): %s.\n\n", medRange(rs))
		}
	}
	for _, r := range runs["adaptive"] {
		b.WriteString(r.phases())
	}
	return b.String()
}

// phases reports, for a run with a schedule, how the adaptive limiter
// followed each change: decision windows until the limit was within 20% of
// the new ideal, and goodput before and after.
func (r *runResult) phases() string {
	if len(r.sc.events) == 0 || len(r.decisions) == 0 {
		return ""
	}
	m := r.metrics()
	var b strings.Builder
	fmt.Fprintf(&b, "round %d:", r.round+1)
	t0 := r.ref.Add(r.first)
	for _, ev := range r.sc.events {
		ideal := r.sc.ideal(ev.at)
		k, at := 0, time.Duration(-1)
		for i, d := range r.decisions {
			t := d.At.Sub(t0)
			if t <= ev.at {
				continue
			}
			k++
			if math.Abs(float64(d.Limit)-ideal) <= 0.2*ideal && at < 0 {
				at = t - ev.at
				break
			}
			_ = i
		}
		fig := "never"
		if at >= 0 {
			fig = fmt.Sprintf("window %d (%v)", k, at.Round(time.Millisecond))
		}
		before := mean(m.series, ev.at-2*time.Second, ev.at)
		after := mean(m.series, ev.at+time.Second, ev.at+3*time.Second)
		fmt.Fprintf(&b, " %s: within 20%% of %.0f at %s, goodput %.0f -> %.0f/s;", ev.label, ideal, fig, before, after)
		if ev.burn > 0 {
			end := ev.at + ev.burn
			rec := time.Duration(-1)
			for t := end; t+500*time.Millisecond <= r.end-r.first; t += bucket {
				if mean(m.series, t, t+500*time.Millisecond) >= 0.9*before {
					rec = t + 500*time.Millisecond - end
					break
				}
			}
			fmt.Fprintf(&b, " during %.0f/s; back to 0.9 of before %s after it ended;", mean(m.series, ev.at+500*time.Millisecond, end), durOrNever(rec))
		}
	}
	b.WriteString("\n")
	return b.String()
}

func medRange(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f (%.2f - %.2f)", median(xs), slices.Min(xs), slices.Max(xs))
}

func median(xs []float64) float64 { return proc.Median(xs) }

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
