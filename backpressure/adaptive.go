package backpressure

import (
	"math"
	"math/rand/v2"
	"time"
)

// Adaptive is a concurrency limiter that finds the downstream's capacity
// from the latency and outcomes of the calls it admits, and follows it. The
// package doc describes the rules.
type Adaptive struct {
	core
}

// NewAdaptive returns an adaptive limiter, or an *OptionError naming the
// first invalid option.
func NewAdaptive(opts ...AdaptiveOpt) (*Adaptive, error) {
	cf := defaultCfg()
	for _, o := range opts {
		o.apply(&cf)
	}
	if err := cf.validateAdaptive(); err != nil {
		return nil, err
	}
	l := &Adaptive{}
	l.ctl = newController(&cf)
	l.init(&cf, cf.initial)
	return l, nil
}

// Tuning constants of the rules (see the package doc); not options, because
// the targets were measured with them.
const (
	growFactor = 1.25 // multiplicative growth per window, at least +1
	maxCut     = 0.5  // no window cuts the limit by more than half
	evalStep   = 0.2  // concurrency must differ by this fraction to test elasticity
	// kneeMargin: a knee estimate within 20% of a window's concurrency
	// means that window queued. 10% passed the simulator but misjudged
	// real-time windows whose latency straddled a capacity drop: the
	// limiter adopted queueing latency as its no-load latency and held the
	// limit at 4x the capacity (bench/limitersim's end-to-end test).
	kneeMargin = 0.2
	baseMult   = 4 // windows that set the baseline (start, probe) take this many times the samples
	probeDepth = 4 // at most this many halvings in one probe
	// survivorBias is how far Little's-law mean latency must exceed the
	// window quantile before the quantile is taken to be biased.
	survivorBias = 2.0
)

// point is the summary of one window: mean in-flight, latency quantile and
// throughput (completions per nanosecond).
type point struct{ n, q, x float64 }

// knee estimates, from a window hi and a window lo at lower concurrency,
// the concurrency at which queueing starts, assuming hi queued: in a
// downstream of c servers latency is flat up to c and proportional to
// concurrency above, so hi.q/hi.n = lo.q/knee. If lo queued too the estimate
// is about lo.n; if it is well above lo.n, lo did not queue and its latency
// is the no-load latency.
//
// By Little's law q = n/x, so the estimate is also lo.n*hi.x/lo.x: did the
// throughput rise with the concurrency? The lower of the two estimates is
// taken: a latency quantile is biased by a window that ramps up from a lower
// limit, straddles a capacity drop, or sees an unfair queue downstream,
// while the throughput of a saturated downstream is not; either one saying
// "queued" is enough to keep cutting rather than adopt queueing latency as
// the no-load latency.
func knee(hi, lo point) float64 {
	k := hi.n * lo.q / hi.q
	if hi.x > 0 && lo.x > 0 {
		k = math.Min(k, lo.n*hi.x/lo.x)
	}
	return k
}

// queued reports whether window lo, compared with hi, was queueing.
func queued(hi, lo point) bool { return knee(hi, lo) <= lo.n*(1+kneeMargin) }

// controller holds the adaptive rules. All methods are called with the
// core's lock held.
type controller struct {
	minL, maxL    float64
	tol, low, mid float64
	quantile      float64
	winMin        time.Duration
	winSamples    int
	probeEvery    time.Duration
	probeJitter   float64
	demand        float64
	overload      float64
	rng           *rand.Rand
	dobs          DecisionObserver // nil unless the observer implements it

	lim      float64 // learned limit
	eff      int     // limit in force (probe limit while probing)
	baseline float64 // no-load latency quantile, ns; 0 until the first window

	// A run of consecutive cuts: its windows (stale ones dropped), the
	// concurrency it started from, and the floor that unconfirmed cuts
	// respect (half the start).
	run      []point
	runStart float64
	runFloor float64

	// After a rebaseline, the window it was decided on and the baseline it
	// replaced: the next window, at higher concurrency, tests it.
	verify    point
	verifyOld float64
	verifying bool

	probing   bool
	saved     float64 // learned limit to restore after the probe
	prev      point   // window before the current probe window
	depth     int
	nextProbe time.Time // zero: probe after the first window

	w window
}

// window accumulates the samples of the current decision window.
type window struct {
	started       bool
	start         time.Time
	h             hist
	samples, over int
	last          time.Time
	lastIn        int
	area, span    float64 // integral of in-flight over time, and the time, while in-flight <= limit
	areaAll       float64 // integral of all in-flight over the window
	done          int     // Success and Overload releases in the window, stale ones too
	maxIn         int
	regime        int // the limit in force: in-flight above it is a drain of the previous window
}

func newController(cf *cfg) *controller {
	seed := cf.seed
	if !cf.seeded {
		seed = rand.Uint64()
	}
	low := 1 + (cf.tolerance-1)/2
	c := &controller{
		minL: float64(cf.minLimit), maxL: float64(cf.maxLimit),
		tol: cf.tolerance, low: low, mid: (low + cf.tolerance) / 2,
		quantile: cf.quantile, winMin: cf.windowMin, winSamples: cf.windowSamples,
		probeEvery: cf.probeInterval, probeJitter: cf.probeJitter,
		demand: cf.demandFactor, overload: cf.overloadThreshold,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		lim: float64(cf.initial), eff: cf.initial,
	}
	if d, ok := cf.obs.(DecisionObserver); ok {
		c.dobs = d
	}
	return c
}

// track accounts for the in-flight count changing to inFlight at now.
func (c *controller) track(now time.Time, inFlight int) {
	w := &c.w
	if !w.started {
		w.started, w.start, w.last, w.regime = true, now, now, c.eff
	}
	dt := float64(now.Sub(w.last))
	w.areaAll += float64(w.lastIn) * dt
	if w.lastIn <= w.regime {
		w.area += float64(w.lastIn) * dt
		w.span += dt
	}
	w.last, w.lastIn = now, inFlight
	if inFlight <= w.regime && inFlight > w.maxIn {
		w.maxIn = inFlight
	}
}

// unsettled reports whether a decision is under test: a run of cuts or a
// rebaseline. Its windows need twice the samples, and no probe starts.
func (c *controller) unsettled() bool { return len(c.run) > 0 || c.verifying }

// sample takes one outcome and returns the limit in force afterwards.
func (c *controller) sample(now time.Time, latency time.Duration, o Outcome, inFlight int) int {
	if o == Ignore {
		return c.eff
	}
	w := &c.w
	w.done++
	if now.Add(-latency).Before(w.start) {
		// Started under the previous window's limit: says nothing about
		// the current one.
		return c.eff
	}
	if o == Overload {
		w.over++
	} else {
		w.samples++
		w.h.add(latency)
	}
	need := c.winSamples
	switch {
	case c.probing || c.baseline == 0:
		need *= baseMult
	case c.unsettled():
		need *= 2
	}
	if w.samples+w.over < need || now.Sub(w.start) < c.winMin {
		return c.eff
	}
	c.decide(now, inFlight)
	return c.eff
}

// decide closes the window, applies the rules and opens the next window.
func (c *controller) decide(now time.Time, inFlight int) {
	w := &c.w
	pt := point{n: float64(c.eff), q: w.h.quantile(c.quantile)}
	if d := now.Sub(w.start); d > 0 {
		pt.x = float64(w.done) / float64(d)
	}
	if w.span > 0 {
		pt.n = w.area / w.span
	}
	if little := w.areaAll / float64(w.done); little > survivorBias*pt.q {
		// Little's law: mean latency = mean in-flight / throughput,
		// whatever the order calls are served in. Far above the sample
		// quantile, it means the window saw only the calls that overtook
		// others (an unfair or LIFO queue downstream): use it instead.
		pt.q = little
	}
	d := Decision{At: now, Samples: w.samples, Overloads: w.over, Latency: time.Duration(pt.q), InFlight: pt.n, MaxInFlight: w.maxIn}
	frac := float64(w.over) / float64(w.samples+w.over)

	switch {
	case frac > c.overload:
		d.Reason = c.onOverload(now, pt, frac)
	case c.probing:
		d.Reason = c.onProbe(now, pt)
	case c.baseline == 0:
		c.baseline = pt.q
		d.Reason = ReasonStart
	default:
		d.Reason = c.onWindow(pt, w.maxIn)
	}

	if !c.probing {
		if w.maxIn > 0 {
			c.lim = math.Min(c.lim, c.demand*float64(w.maxIn))
		}
		c.lim = math.Max(c.minL, math.Min(c.maxL, c.lim))
		c.eff = int(c.lim)
		stable := d.Reason == ReasonStart || d.Reason == ReasonHold || d.Reason == ReasonGrow || d.Reason == ReasonFaster
		if stable && !c.unsettled() && !now.Before(c.nextProbe) {
			c.startProbe(pt)
			d.Reason = ReasonProbe
		}
	}

	d.Limit, d.Probing, d.Baseline = c.eff, c.probing, time.Duration(c.baseline)
	if c.dobs != nil {
		c.dobs.Decided(d)
	}

	w.h.reset()
	*w = window{started: true, start: now, last: now, lastIn: inFlight, regime: c.eff, h: w.h}
	if inFlight <= c.eff {
		w.maxIn = inFlight
	}
}

// onOverload cuts the limit by the overload fraction, at most by half.
func (c *controller) onOverload(now time.Time, pt point, frac float64) Reason {
	if c.probing {
		c.probing = false
		c.lim = c.saved
		c.schedule(now)
	}
	c.lim = math.Min(c.lim, math.Max(pt.n, 1)) * math.Max(maxCut, 1-frac)
	c.endRun()
	c.verifying = false
	return ReasonOverload
}

func (c *controller) endRun() { c.run = c.run[:0] }

// rebaseline adopts pt's latency as the no-load latency, on trial: the next
// window, at the higher limit set here, tests it.
func (c *controller) rebaseline(pt point, limit float64) Reason {
	c.verify, c.verifyOld, c.verifying = pt, c.baseline, true
	c.baseline = pt.q
	c.lim = limit
	c.endRun()
	return ReasonRebaseline
}

// cut lowers the limit on the latency of window pt, never by more than half
// and never below floor.
func (c *controller) cut(pt point, r, floor float64) {
	c.lim = math.Max(floor, pt.n*math.Max(maxCut, c.mid/r))
}

// onWindow applies the latency rules to a window at the learned limit.
func (c *controller) onWindow(pt point, maxIn int) Reason {
	if pt.q < c.baseline/c.tol {
		// A whole window well below the no-load latency: the downstream got
		// faster. One sample never does this; a window quantile may.
		c.baseline = pt.q
		c.endRun()
		c.verifying = false
		return ReasonFaster
	}
	if c.verifying {
		c.verifying = false
		if pt.n >= c.verify.n*(1+evalStep) && queued(pt, c.verify) {
			// Latency rose in proportion to concurrency: the window the
			// rebaseline was decided on was queueing after all (or the
			// downstream changed in between). Restore the old baseline and
			// cut, at most by half, starting a run the next window tests.
			c.baseline = c.verifyOld
			if r := pt.q / c.baseline; r > c.tol {
				c.startRun(pt)
				c.cut(pt, r, 0)
				return ReasonCut
			}
		}
	}
	r := pt.q / c.baseline
	if len(c.run) > 0 {
		if reason, ok := c.onRun(pt, r); ok {
			return reason
		}
	}
	switch {
	case r > c.tol:
		c.startRun(pt)
		c.cut(pt, r, 0)
		return ReasonCut
	case r <= c.low && maxIn >= c.eff:
		c.lim = math.Max(c.lim+1, c.lim*growFactor)
		return ReasonGrow
	default:
		return ReasonHold
	}
}

func (c *controller) startRun(pt point) {
	c.run = append(c.run[:0], pt)
	c.runStart, c.runFloor = pt.n, pt.n*maxCut
}

// onRun continues a run of cuts with window pt. It reports false when the
// run ended and the ordinary rules apply.
func (c *controller) onRun(pt point, r float64) (Reason, bool) {
	// Drop windows of another regime: higher concurrency yet lower latency
	// than now means the downstream changed since.
	keep := c.run[:0]
	for _, p := range c.run {
		if !(p.n > pt.n && pt.q > p.q*c.tol) {
			keep = append(keep, p)
		}
	}
	c.run = keep
	var ref *point
	for i := len(c.run) - 1; i >= 0; i-- {
		if pt.n <= c.run[i].n*(1-evalStep) {
			ref = &c.run[i]
			break
		}
	}
	if ref != nil {
		if queued(*ref, pt) {
			if r > c.tol {
				// Latency fell in proportion to concurrency: both windows
				// queued, so this one still does and the full gradient
				// applies, below the run's floor.
				c.lim = pt.n * c.mid / r
				c.startRun(pt)
				return ReasonConfirm, true
			}
			c.endRun()
			return "", false
		}
		// Latency fell less than concurrency did: this window is below
		// the knee, so its latency is the no-load latency (the rise was
		// not, or not only, queueing). Go back up to the knee, which also
		// tests the new baseline.
		k := knee(*ref, pt)
		return c.rebaseline(pt, clamp(k*c.mid, pt.n*(1+1.5*evalStep), ref.n)), true
	}
	if r <= c.tol {
		c.endRun()
		return "", false
	}
	if pt.n*math.Max(maxCut, c.mid/r) >= c.runFloor || c.runFloor <= pt.n*(1-evalStep) {
		c.cut(pt, r, c.runFloor)
		c.run = append(c.run, pt)
		return ReasonCut, true
	}
	// At the floor with latency still high and nothing to compare with:
	// test the other hypothesis, upwards. Take this latency as the no-load
	// latency and go back to where the run started; if latency then rises
	// with concurrency, the verification restores the old baseline.
	return c.rebaseline(pt, math.Max(c.runStart, pt.n*(1+2*evalStep))), true
}

func (c *controller) startProbe(pt point) {
	c.probing, c.saved, c.prev, c.depth = true, c.lim, pt, 0
	c.eff = int(math.Max(c.minL, math.Floor(c.lim*0.5)))
}

// onProbe ends a probe window: if latency fell in proportion to the
// concurrency, the probe window still queued and the probe halves again;
// otherwise its latency is the no-load latency and the learned limit is
// restored.
func (c *controller) onProbe(now time.Time, pt point) Reason {
	if pt.n <= c.prev.n*(1-evalStep) && queued(c.prev, pt) && float64(c.eff) > c.minL && c.depth < probeDepth {
		c.prev = pt
		c.depth++
		c.eff = int(math.Max(c.minL, float64(c.eff/2)))
		return ReasonProbe
	}
	c.baseline = pt.q
	c.probing = false
	c.lim = c.saved
	c.schedule(now)
	return ReasonProbed
}

func (c *controller) schedule(now time.Time) {
	jitter := time.Duration(c.rng.Float64() * c.probeJitter * float64(c.probeEvery))
	c.nextProbe = now.Add(c.probeEvery + jitter)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
