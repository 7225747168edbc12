package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
)

// Reference limiters: the published algorithms of Netflix concurrency-limits
// (VegasLimit, Gradient2Limit, updated on every sample as the library does
// without a WindowedLimit) and of Envoy's adaptive-concurrency gradient
// controller, written here from their documented rules with their default
// parameters, so that they run on the same simulated workloads. They are
// baselines for the comparison, not part of Sluice.

type refBase struct {
	inFlight int
	limit    float64
}

func (r *refBase) TryAcquire() bool {
	if r.inFlight < int(r.limit) {
		r.inFlight++
		return true
	}
	return false
}
func (r *refBase) Limit() int { return int(r.limit) }

// done frees a slot and returns the in-flight count the call saw, and
// whether its outcome is a sample.
func (r *refBase) done(o backpressure.Signal) (int, bool) {
	r.inFlight--
	return r.inFlight + 1, o != backpressure.Ignore
}
func (r *refBase) InFlight() int { return r.inFlight }

// vegas follows VegasLimit: no-load RTT is the minimum single sample, reset
// to a single sample every ~30*limit samples; queue = limit*(1-noload/rtt).
type vegas struct {
	refBase
	noload     float64
	probeCount int
	probeAt    float64
	rng        *rand.Rand
}

func newVegas(seed uint64) *vegas {
	v := &vegas{refBase: refBase{limit: 20}, rng: rand.New(rand.NewPCG(seed, 1))}
	v.resetProbe()
	return v
}

func (v *vegas) resetProbe() { v.probeAt = (0.5 + v.rng.Float64()*0.5) * 30 }

func log10Int(l float64) float64 { return math.Max(1, math.Floor(math.Log10(l))) }

func (v *vegas) Release(lat time.Duration, o backpressure.Signal) {
	inflight, ok := v.done(o)
	if !ok {
		return
	}
	rtt := float64(lat)
	v.probeCount++
	if float64(v.probeCount) >= v.probeAt*v.limit {
		v.resetProbe()
		v.probeCount = 0
		v.noload = rtt
		return
	}
	if v.noload == 0 || rtt < v.noload {
		v.noload = rtt
		return
	}
	l := v.limit
	queue := math.Ceil(l * (1 - v.noload/rtt))
	lg := log10Int(l)
	switch {
	case o == backpressure.Overload:
		l -= lg
	case float64(inflight)*2 < l:
		return
	case queue <= lg:
		l += 6 * lg
	case queue < 3*lg:
		l += lg
	case queue > 6*lg:
		l -= lg
	default:
		return
	}
	v.limit = math.Max(1, math.Min(1000, l))
}

// gradient2 follows Gradient2Limit: long RTT is an exponential average of
// 600 samples; gradient = clamp(long/short, 0.5, 1); limit =
// limit*gradient + 4, smoothed by 0.2. minLimit is 1 here (the library's
// default of 20 would hide the capacity-drop result).
type gradient2 struct {
	refBase
	long  float64
	count int
}

func newGradient2() *gradient2 { return &gradient2{refBase: refBase{limit: 20}} }

func (g *gradient2) Release(lat time.Duration, o backpressure.Signal) {
	inflight, ok := g.done(o)
	if !ok {
		return
	}
	short := float64(lat)
	if g.count < 10 {
		g.count++
		g.long = g.long + (short-g.long)/float64(g.count)
	} else {
		f := 2.0 / 601
		g.long = g.long*(1-f) + short*f
	}
	if g.long/short > 2 {
		g.long *= 0.9
	}
	if float64(inflight) < g.limit/2 {
		return
	}
	grad := math.Max(0.5, math.Min(1, g.long/short))
	nl := g.limit*grad + 4
	nl = g.limit*0.8 + nl*0.2
	g.limit = math.Max(1, math.Min(1000, nl))
}

// envoy follows Envoy's gradient controller: every 100ms, gradient =
// clamp((minRTT*1.25)/p50, 0.5, 2), limit = limit*gradient +
// sqrt(limit*gradient); minRTT is the p50 of 50 samples taken at
// concurrency 3, at start and every 60s plus up to 15% jitter, or after 5
// windows at the minimum.
type envoy struct {
	refBase
	clk       sluice.Clock
	rng       *rand.Rand
	minRTT    float64
	measuring bool
	saved     float64
	samples   []float64
	winStart  time.Time
	nextCalc  time.Time
	atMin     int
}

func newEnvoy(clk sluice.Clock, seed uint64) *envoy {
	e := &envoy{refBase: refBase{limit: 3}, clk: clk, rng: rand.New(rand.NewPCG(seed, 2))}
	e.measuring, e.saved, e.winStart = true, 20, clk.Now()
	return e
}

func (e *envoy) Release(lat time.Duration, o backpressure.Signal) {
	if _, ok := e.done(o); !ok {
		return
	}
	now := e.clk.Now()
	e.samples = append(e.samples, float64(lat))
	if e.measuring {
		if len(e.samples) >= 50 {
			e.minRTT = median(e.samples)
			e.samples = e.samples[:0]
			e.measuring = false
			e.limit = e.saved
			e.winStart = now
			e.nextCalc = now.Add(60*time.Second + time.Duration(e.rng.Float64()*0.15*float64(60*time.Second)))
		}
		return
	}
	if now.Sub(e.winStart) < 100*time.Millisecond {
		return
	}
	p50 := median(e.samples)
	e.samples = e.samples[:0]
	e.winStart = now
	g := math.Max(0.5, math.Min(2, e.minRTT*1.25/p50))
	nl := e.limit * g
	nl = math.Ceil(nl + math.Sqrt(nl))
	e.limit = math.Max(3, math.Min(1000, nl))
	if e.limit <= 3 {
		e.atMin++
	} else {
		e.atMin = 0
	}
	if !now.Before(e.nextCalc) || e.atMin >= 5 {
		e.measuring, e.saved, e.limit, e.atMin = true, e.limit, 3, 0
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
