package backpressure

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Adaptive is a concurrency limiter that finds the downstream's capacity
// from the latency, throughput and load signals of the calls it admits, and
// follows it. The package doc describes the rules.
type Adaptive struct {
	core
}

// NewAdaptive returns an adaptive limiter, or a *sluice.ConfigError naming
// the first invalid option.
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
	fastFactor = 2.0  // growth in slow start, and after a step that paid in full
	maxCut     = 0.5  // no window cuts the limit by more than half
	evalStep   = 0.2  // concurrency must differ by this fraction to test elasticity
	// kneeMargin: a knee estimate within 20% of a window's concurrency
	// means that window queued. 10% passed the simulator but misjudged
	// real-time windows whose latency straddled a capacity drop: the
	// limiter adopted queueing latency as its no-load latency and held the
	// limit at 4x the capacity (bench/limitersim's end-to-end test).
	kneeMargin = 0.2
	// paid: a step up in concurrency paid if throughput rose at least half
	// as fast as concurrency; paidInFull, at least 0.8 as fast.
	paid       = 0.5
	paidInFull = 0.8
	zStep      = 2.5 // see resolvable
	baseMult   = 4   // windows that set the baseline (start, probe) take this many times the samples
	probeDepth = 4   // at most this many halvings in one probe
	// survivorBias is how far Little's-law mean latency must exceed the
	// window quantile before the quantile is taken to be biased.
	survivorBias = 2.0
	// noisePrior is the relative throughput noise between windows assumed
	// until windows at one limit were compared; noiseWeight is the weight
	// of each new comparison in the running estimate.
	noisePrior  = 0.05
	noiseWeight = 0.2
	// exploreFirst and exploreMax bound how many windows the limit is held
	// at saturation before a step up tests whether more concurrency pays;
	// the gap doubles after every step that did not.
	rebaseProbe     = 0.125                 // see rebaseline
	latencyFloor    = 50 * time.Microsecond // see ratio
	windowLatencies = 4                     // see sample
	exploreFirst    = 8
	exploreMax      = 64
)

// point is the summary of one window: mean in-flight, latency quantile,
// throughput (completions per nanosecond), the completions it was measured
// on, the limit in force and whether the window used all of it.
type point struct {
	n, q, x, m float64
	lim        int
	sat        bool
}

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

// gained is the concurrency at which lo's throughput per call would give
// hi's throughput: hi.n if throughput rose in proportion to concurrency,
// lo.n if it did not rise at all. It judges a step up by throughput alone,
// because latency also rises below the knee when the caller's own CPU is
// busy.
func gained(hi, lo point) float64 {
	if lo.x <= 0 {
		return hi.n
	}
	return lo.n * hi.x / lo.x
}

// elasticity is how much of a step up in concurrency from lo to hi showed
// up in throughput: 1 if throughput rose in proportion, 0 if not at all.
func elasticity(hi, lo point) float64 {
	if hi.n <= lo.n {
		return 0
	}
	return (gained(hi, lo) - lo.n) / (hi.n - lo.n)
}

// resolvable reports whether the throughput of windows hi and lo, lo at
// lower concurrency, can tell whether the step from lo to hi paid: the noise
// of their throughput ratio must sit zStep times inside the gap between the
// threshold and either answer (a ratio of 1: no gain; hi.n/lo.n: full
// gain). The noise is the larger of the counting noise, about
// sqrt(1/hi.m + 1/lo.m), and sigma, what consecutive windows at one limit
// were seen to differ by. A 25% step needs about 800 completions a window
// and windows that agree within 4%; a doubling, a few dozen completions and
// 16%. Steps the windows cannot resolve are judged by latency alone.
func resolvable(hi, lo point, sigma float64) bool {
	if hi.m <= 0 || lo.m <= 0 || lo.n <= 0 {
		return false
	}
	gap := math.Min(paid, 1-paid) * (hi.n/lo.n - 1)
	return gap > 0 && zStep*math.Max(sigma, math.Sqrt(1/hi.m+1/lo.m)) <= gap
}

// resolvableStep is the smallest step up, as a factor of at least
// growFactor and at most fastFactor, whose outcome windows with noise sigma
// can resolve.
func resolvableStep(sigma float64) float64 {
	return clamp(1+zStep*sigma/math.Min(paid, 1-paid), growFactor, fastFactor)
}

// queued reports whether window lo, compared with hi, was queueing. Where
// the windows' throughput resolves the step (see resolvable), throughput
// alone decides: under a busy caller the latency quantile of a window swings
// by more than the step, its throughput measured on many completions less.
func queued(hi, lo point, sigma float64) bool {
	k := knee(hi, lo)
	if resolvable(hi, lo, sigma) {
		k = gained(hi, lo)
	}
	return k <= lo.n*(1+kneeMargin)
}

// shard accumulates part of a window's samples. Releases pick a shard at
// random, so they rarely wait for each other; a decision merges them all.
type shard struct {
	mu            sync.Mutex
	start         time.Time // the window's start: older calls are stale
	regime        int64     // the window's limit: in-flight above it is a drain
	samples, over int
	done          int   // Success and Overload releases, stale ones too
	sumIn, nIn    int64 // in-flight at releases, within the regime
	maxIn         int64
	sumAll, nAll  int64 // in-flight at every release (Little's law)
	h             hist
	_             [64]byte
}

// state is what the controller's next window is for. Each state has one
// handler, which judges the closed window, moves the limit and picks the
// next state:
//
//	state      handler      the window                  next state
//	---------  -----------  --------------------------  ------------------------------------------
//	start      onStart      no no-load latency yet:     resume (slowStart at first)
//	                        take a provisional one
//	slowStart  onSteady     growing by fastFactor       slowStart (grow, hold),
//	                        while steps pay             steady (knee), cutting (cut)
//	steady     onSteady     at the learned limit        steady (grow, hold, explore, knee),
//	                                                    cutting (cut)
//	cutting    onCutting    a run of cuts under test    cutting (cut, confirm),
//	                                                    verifying (rebaseline), else as steady
//	verifying  onVerifying  a rebaseline under test     cutting (refuted: cut, confirm),
//	                                                    else as steady
//	probing    onProbe      at reduced concurrency,     probing (halve again), resume (probed)
//	                        measuring no-load latency
//
// Three rules apply across states. An overload window (the Overload share
// above the threshold) cuts in any state and goes to steady: it ends slow
// start, a probe and any test under way (onOverload). Outside start and
// probing, a whole window well below the no-load latency lowers it and
// ends a test under way, cutting or verifying, to steady (onFaster). And
// after a stable decision (start, hold, grow, faster) in slowStart or
// steady, a probe that is due starts: probing, which resumes the state it
// interrupted.
//
// Start is entered again, to resume the state it interrupts, only if a
// window leaves no baseline at all (see onWindow).
//
// Slow start ends at the first knee, cut or overload; if no probe has
// finished by then, the first probe is due at once, because the start
// window's baseline was measured at whatever concurrency the limiter
// started with.
//
// Two memories are not states, because they outlive the states they were
// set in: suspect (the last window the steady rules judged was above
// tolerance, not far enough to act on one window; it waits across a probe
// or a faster window for the next window those rules judge) and probed (a
// probe has finished, so the baseline is no longer provisional).
type state uint8

const (
	stateStart state = iota
	stateSlowStart
	stateSteady
	stateCutting
	stateVerifying
	stateProbing
)

// controller holds the adaptive rules. Samples go to shards; the decision
// state is guarded by mu, which a release takes (with TryLock) only when the
// window is due.
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
	decided       []HookDecision

	shards []shard
	opened atomic.Bool  // the first sample opened the first window
	count  atomic.Int64 // fresh samples in the current window
	start  atomic.Int64 // the current window's start, Unix ns
	need   atomic.Int64 // samples that close the current window
	// long is the shortest duration of the current window, ns: the
	// minimum, or windowLatencies times the last window's latency if that
	// is longer, so that the calls a window cannot count (started too late
	// to finish inside it) are a small part of it.
	long atomic.Int64

	mu       sync.Mutex
	merged   hist
	lim      float64 // learned limit
	eff      int     // limit in force (probe limit while probing)
	baseline float64 // no-load latency quantile, ns; 0 until the first window

	// state is what the next window is for; resume is the state that
	// start and probing return to when they end.
	state, resume state
	// suspect and probed: see state.
	suspect, probed bool

	// The previous window, for judging a step up in concurrency.
	last   point
	lastOK bool
	// held counts saturated windows held since the last step up; at
	// explore, a step up tests whether more concurrency pays.
	held, explore int
	// noise is a running estimate of the standard deviation of the log
	// ratio of the throughputs of consecutive windows at one limit.
	noise float64

	// cutting: the run's windows (stale ones dropped), the concurrency
	// it started from, and the floor that unconfirmed cuts respect (half
	// the start).
	run      []point
	runStart float64
	runFloor float64

	// verifying: the window the rebaseline was decided on and the
	// baseline it replaced; the next window, at higher concurrency, tests
	// it.
	verify    point
	verifyOld float64

	// probing: the learned limit to restore, the window before the
	// current probe window and the halvings so far.
	saved     float64
	prev      point
	depth     int
	nextProbe time.Time
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
		shards: make([]shard, 8),
		state:  stateStart, resume: stateSlowStart,
		explore: exploreFirst, noise: noisePrior,
	}
	for i := range c.shards {
		c.shards[i].regime = int64(cf.initial)
	}
	c.need.Store(int64(c.winSamples))
	c.long.Store(int64(c.winMin))
	c.decided = cf.hk.decisions
	return c
}

// unsettled reports whether a decision is under test: a run of cuts or a
// rebaseline. Its windows need twice the samples, and no probe starts.
func (c *controller) unsettled() bool {
	return c.state == stateCutting || c.state == stateVerifying
}

// slowStart reports whether the limiter is in slow start, or in a start or
// probe window that resumes it.
func (c *controller) slowStart() bool {
	s := c.state
	if s == stateStart || s == stateProbing {
		s = c.resume
	}
	return s == stateSlowStart
}

// sample takes one released call: in is the number of slots held when it
// was released (itself included).
func (c *controller) sample(l *core, now time.Time, latency time.Duration, o Signal, in int64) {
	if o == Ignore {
		return
	}
	if !c.opened.Load() {
		// The first sample opens the first window.
		c.mu.Lock()
		if !c.opened.Load() {
			for i := range c.shards {
				s := &c.shards[i]
				s.mu.Lock()
				s.start = now
				s.mu.Unlock()
			}
			c.start.Store(now.UnixNano())
			c.opened.Store(true)
		}
		c.mu.Unlock()
	}
	start := c.start.Load()
	s := &c.shards[rand.Uint32()%uint32(len(c.shards))]
	s.mu.Lock()
	s.done++
	s.sumAll += in
	s.nAll++
	if in <= s.regime {
		s.sumIn += in
		s.nIn++
		s.maxIn = max(s.maxIn, in)
	}
	// A call that started before the window ran under the previous
	// window's limit: it says nothing about the current one.
	fresh := !now.Add(-latency).Before(s.start)
	if fresh {
		if o == Overload {
			s.over++
		} else {
			s.samples++
			s.h.add(latency)
		}
	}
	s.mu.Unlock()
	if !fresh {
		return
	}
	if c.count.Add(1) < c.need.Load() || now.UnixNano()-start < c.long.Load() {
		return
	}
	if !c.mu.TryLock() {
		return // someone else is deciding
	}
	if c.start.Load() == start && c.count.Load() >= c.need.Load() {
		c.decide(l, now)
	}
	c.mu.Unlock()
}

// decide closes the window, applies the rules and opens the next window.
// Called with mu held; it holds every shard while it decides.
func (c *controller) decide(l *core, now time.Time) {
	for i := range c.shards {
		c.shards[i].mu.Lock()
	}
	var (
		samples, over, done      int
		sumIn, nIn, sumAll, nAll int64
		maxIn                    int64
	)
	c.merged.reset()
	for i := range c.shards {
		s := &c.shards[i]
		samples += s.samples
		over += s.over
		done += s.done
		sumIn += s.sumIn
		nIn += s.nIn
		sumAll += s.sumAll
		nAll += s.nAll
		maxIn = max(maxIn, s.maxIn)
		c.merged.merge(&s.h)
	}
	start := time.Unix(0, c.start.Load())
	pt := point{n: float64(c.eff), q: c.merged.quantile(c.quantile), lim: c.eff, sat: int(maxIn) >= c.eff}
	if d := now.Sub(start); d > 0 {
		pt.x, pt.m = float64(done)/float64(d), float64(done)
	}
	if nIn > 0 {
		pt.n = float64(sumIn) / float64(nIn)
	}
	if nAll > 0 && pt.x > 0 {
		// Little's law: mean latency = mean in-flight / throughput,
		// whatever the order calls are served in. Far above the sample
		// quantile, it means the window saw only the calls that overtook
		// others (an unfair or LIFO queue downstream): use it instead.
		if little := float64(sumAll) / float64(nAll) / pt.x; little > survivorBias*pt.q {
			pt.q = little
		}
	}
	if c.lastOK && c.last.lim == pt.lim && c.last.sat && pt.sat && c.last.x > 0 && pt.x > 0 && c.state != stateProbing {
		// Two windows at one limit, both using all of it: what their
		// throughputs differ by is noise. sqrt(pi/2) turns a mean absolute
		// deviation into a standard deviation.
		dev := math.Abs(math.Log(pt.x/c.last.x)) * math.Sqrt(math.Pi/2)
		c.noise += noiseWeight * (dev - c.noise)
	}
	d := Decision{At: now, Samples: samples, Overloads: over, Latency: time.Duration(pt.q), InFlight: pt.n, MaxInFlight: int(maxIn), Throughput: pt.x * 1e9}
	frac := float64(over) / float64(samples+over)

	slow := c.slowStart()
	if frac > c.overload {
		d.Reason = c.onOverload(now, pt, frac)
	} else {
		d.Reason = c.onWindow(now, pt)
	}
	if slow && !c.slowStart() && !c.probed {
		c.nextProbe = now
	}
	c.last, c.lastOK = pt, d.Reason != ReasonOverload

	if c.state != stateProbing {
		if maxIn > 0 {
			c.lim = math.Min(c.lim, c.demand*float64(maxIn))
		}
		c.lim = math.Max(c.minL, math.Min(c.maxL, c.lim))
		c.eff = int(c.lim)
		stable := d.Reason == ReasonStart || d.Reason == ReasonHold || d.Reason == ReasonGrow || d.Reason == ReasonFaster
		if stable && !c.unsettled() && !now.Before(c.nextProbe) {
			c.startProbe(pt)
			d.Reason = ReasonProbe
		}
	}

	d.Limit, d.Probing, d.Baseline = c.eff, c.state == stateProbing, time.Duration(c.baseline)
	need := c.winSamples
	switch {
	case c.state == stateProbing:
		need *= baseMult
	case c.unsettled():
		need *= 2
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.start, s.regime = now, int64(c.eff)
		s.samples, s.over, s.done = 0, 0, 0
		s.sumIn, s.nIn, s.maxIn, s.sumAll, s.nAll = 0, 0, 0, 0, 0
		s.h.reset()
	}
	c.count.Store(0)
	c.need.Store(int64(need))
	c.long.Store(int64(max(c.winMin, time.Duration(windowLatencies*pt.q))))
	c.start.Store(now.UnixNano())
	l.setLimit(c.eff)
	for _, h := range c.decided {
		h.OnDecision(d)
	}
	for i := range c.shards {
		c.shards[i].mu.Unlock()
	}
}

// onWindow passes a window without overload to its state's handler.
func (c *controller) onWindow(now time.Time, pt point) Reason {
	if c.baseline == 0 && c.state != stateStart && c.state != stateProbing {
		// No no-load latency: only a window that measured no latency at
		// all (zero length, Window(0, n) on a clock that did not move)
		// leaves none. Take one again, then carry on.
		c.state, c.resume = stateStart, c.state
	}
	switch c.state {
	case stateStart:
		return c.onStart(now, pt)
	case stateProbing:
		return c.onProbe(now, pt)
	}
	if c.ratio(pt.q) < 1/c.tol {
		return c.onFaster(pt)
	}
	switch c.state {
	case stateCutting:
		return c.onCutting(now, pt)
	case stateVerifying:
		return c.onVerifying(now, pt)
	default:
		return c.onSteady(pt)
	}
}

// onOverload cuts the limit by the overload fraction, at most by half, in
// any state: a probe ends (its learned limit restored first), so do slow
// start and any test under way.
func (c *controller) onOverload(now time.Time, pt point, frac float64) Reason {
	if c.state == stateProbing {
		c.lim = c.saved
		c.schedule(now)
	}
	c.lim = math.Min(c.lim, math.Max(pt.n, 1)) * math.Max(maxCut, 1-frac)
	c.settle()
	return ReasonOverload
}

// settle ends slow start or a test under way: the state is steady.
func (c *controller) settle() {
	c.state = stateSteady
	c.run = c.run[:0]
}

// ratio is latency q over the baseline, taken as 1 while they differ by
// less than latencyFloor: a caller's scheduling moves the latency of a call
// by tens of microseconds whatever the downstream does, so the latency of
// a sink that takes microseconds says nothing about its load.
func (c *controller) ratio(q float64) float64 {
	if math.Abs(q-c.baseline) < float64(latencyFloor) {
		return 1
	}
	return q / c.baseline
}

// setBase takes window pt's latency as the no-load latency.
func (c *controller) setBase(pt point) { c.baseline = pt.q }

// onStart takes the window's latency as a provisional baseline: the first
// probe measures it, once slow start has found the demand or the knee (or
// after an eighth of the probe interval, if it has not).
func (c *controller) onStart(now time.Time, pt point) Reason {
	c.setBase(pt)
	c.nextProbe = now.Add(time.Duration(rebaseProbe * float64(c.probeEvery)))
	c.state = c.resume
	return ReasonStart
}

// onFaster: a whole window well below the no-load latency means the
// downstream got faster. One sample never does this; a window quantile
// may. The window's latency is the new baseline, and a test under way ends.
func (c *controller) onFaster(pt point) Reason {
	c.setBase(pt)
	if c.unsettled() {
		c.settle()
	}
	return ReasonFaster
}

// rebaseline adopts pt's latency as the no-load latency, on trial: the next
// window, at the higher limit set here, tests it (verifying).
//
// A rebaseline decided during a passing disturbance (a stall, a burst of
// load on the caller's CPU) would keep its inflated latency as the no-load
// latency until the next probe, so the next probe comes sooner: after
// rebaseProbe of the probe interval.
func (c *controller) rebaseline(now time.Time, pt point, limit float64) Reason {
	c.verify, c.verifyOld = pt, c.baseline
	c.state, c.run = stateVerifying, c.run[:0]
	c.setBase(pt)
	c.lim = limit
	if soon := now.Add(time.Duration(rebaseProbe * float64(c.probeEvery))); soon.Before(c.nextProbe) {
		c.nextProbe = soon
	}
	return ReasonRebaseline
}

// cut lowers the limit on the latency of window pt, never by more than half
// and never below floor. Cuts happen in runs; see startRun.
func (c *controller) cut(pt point, r, floor float64) {
	c.lim = math.Max(floor, pt.n*math.Max(maxCut, c.mid/r))
}

// grow raises the limit by factor, at least by one.
func (c *controller) grow(factor float64) {
	c.lim = math.Max(c.lim+1, c.lim*factor)
	c.held = 0
}

// onVerifying tests a rebaseline with the window after it. Unless the
// window refutes it, the steady rules judge the window.
func (c *controller) onVerifying(now time.Time, pt point) Reason {
	c.state = stateSteady
	if pt.n >= c.verify.n*(1+evalStep) && queued(pt, c.verify, c.noise) {
		// Latency rose in proportion to concurrency: the window the
		// rebaseline was decided on was queueing after all (or the
		// downstream changed in between). Restore the old baseline and
		// cut. If that window was itself more than twice the tolerance
		// above the old baseline, two windows confirm a large loss of
		// capacity and the full gradient applies, as after a confirmed
		// cut; otherwise the cut is at most by half and starts a run the
		// next window tests.
		c.baseline = c.verifyOld
		if r := c.ratio(pt.q); r > c.tol {
			c.startRun(pt)
			if c.ratio(c.verify.q) > 2*c.tol {
				c.lim = pt.n * c.mid / r
				return ReasonConfirm
			}
			c.cut(pt, r, 0)
			return ReasonCut
		}
	}
	return c.onSteady(pt)
}

// onSteady applies the rules at the learned limit: the handler of
// slowStart and steady, and of the windows that end a test.
func (c *controller) onSteady(pt point) Reason {
	sat, slow := pt.sat, c.state == stateSlowStart
	r := c.ratio(pt.q)
	if c.lastOK && pt.n >= c.last.n*(1+evalStep) && resolvable(pt, c.last, c.noise) {
		// A step up in concurrency is judged by the throughput it bought,
		// whatever latency did: below the knee, latency may rise because
		// the caller's own CPU is busier, while throughput still rises in
		// proportion.
		k, e := gained(pt, c.last), elasticity(pt, c.last)
		switch {
		case e >= paidInFull:
			// Paid in full: below the knee, and the latency this
			// concurrency costs is not queueing.
			if r > c.low {
				c.setBase(pt)
			}
			c.explore = exploreFirst
			if !sat {
				return ReasonHold
			}
			f := growFactor
			if slow || r <= c.low {
				f = fastFactor
			}
			c.grow(f)
			return ReasonGrow
		case e >= paid && r <= c.tol:
			// Paid, if not in full, and latency is within tolerance: slow
			// start goes on (a step past the knee shows as the next step's
			// knee).
			c.explore = exploreFirst
			if !sat {
				return ReasonHold
			}
			f := growFactor
			if slow {
				f = fastFactor
			}
			c.grow(f)
			return ReasonGrow
		}
		// It did not pay, or only in part while latency rose beyond
		// tolerance: the knee is about k. Back to it, with the
		// tolerance's headroom, but not below the limit that bound the
		// lower window (its mean in flight is below its limit when
		// arrivals are bursty, and cutting to it throttled a sink of
		// microseconds to one call at a time); slow start is over.
		//
		// Only a step the limit made says where the knee is: if the lower
		// window did not use all of its limit, the step came from the
		// caller's demand, and throughput that did not follow it says the
		// caller (its CPU, say) set the pace, not the downstream. The
		// latency rules below judge that window.
		if c.last.sat {
			c.lim = math.Min(c.lim, math.Max(math.Max(c.last.n, float64(c.last.lim)), k*c.mid))
			c.state = stateSteady
			c.held = 0
			c.explore = min(2*c.explore, exploreMax)
			return ReasonKnee
		}
	}
	suspect := c.suspect
	c.suspect = false
	switch {
	case r > c.tol && !suspect && r <= 2*c.tol:
		// Above tolerance, but not so far that one window is enough: a
		// caller's windows have hiccups (a collection, a stalled fetch).
		// The next window decides.
		c.suspect = true
		return ReasonHold
	case r > c.tol:
		c.startRun(pt)
		c.cut(pt, r, 0)
		return ReasonCut
	case sat && (r <= c.low || slow):
		f := growFactor
		if slow {
			f = fastFactor
		}
		c.grow(f)
		return ReasonGrow
	case sat && c.held >= c.explore:
		// A step large enough for the windows' throughput to tell whether
		// it paid.
		f := resolvableStep(c.noise)
		if !resolvable(point{n: pt.n * f, m: pt.m}, pt, c.noise) {
			break
		}
		c.grow(f)
		return ReasonExplore
	}
	if sat {
		c.held++
	}
	return ReasonHold
}

// startRun starts a run of cuts at window pt (cutting); slow start is over.
func (c *controller) startRun(pt point) {
	c.state = stateCutting
	c.run = append(c.run[:0], pt)
	c.runStart, c.runFloor = pt.n, pt.n*maxCut
}

// onCutting continues a run of cuts with window pt, or ends it and lets
// the steady rules judge the window.
func (c *controller) onCutting(now time.Time, pt point) Reason {
	r := c.ratio(pt.q)
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
		if queued(*ref, pt, c.noise) {
			if r > c.tol {
				// Latency fell in proportion to concurrency: both windows
				// queued, so this one still does and the full gradient
				// applies, below the run's floor.
				c.lim = pt.n * c.mid / r
				c.startRun(pt)
				return ReasonConfirm
			}
			c.settle()
			return c.onSteady(pt)
		}
		// Latency fell less than concurrency did: this window is below
		// the knee, so its latency is the no-load latency (the rise was
		// not, or not only, queueing). Go back up to the knee, which also
		// tests the new baseline.
		k := knee(*ref, pt)
		return c.rebaseline(now, pt, clamp(k*c.mid, pt.n*(1+1.5*evalStep), ref.n))
	}
	if r <= c.tol {
		c.settle()
		return c.onSteady(pt)
	}
	if c.lim > c.minL && (pt.n*math.Max(maxCut, c.mid/r) >= c.runFloor || c.runFloor <= pt.n*(1-evalStep)) {
		c.cut(pt, r, c.runFloor)
		c.run = append(c.run, pt)
		return ReasonCut
	}
	// At the floor with latency still high and nothing to compare with:
	// test the other hypothesis, upwards. Take this latency as the no-load
	// latency and go back to where the run started; if latency then rises
	// with concurrency, the verification restores the old baseline.
	return c.rebaseline(now, pt, math.Max(c.runStart, pt.n*(1+2*evalStep)))
}

// startProbe halves the limit in force to measure the no-load latency;
// the state it interrupts resumes when the probe ends.
func (c *controller) startProbe(pt point) {
	c.state, c.resume = stateProbing, c.state
	c.saved, c.prev, c.depth = c.lim, pt, 0
	c.eff = int(math.Max(c.minL, math.Floor(c.lim*0.5)))
}

// onProbe ends a probe window: if latency fell in proportion to the
// concurrency, the probe window still queued and the probe halves again;
// otherwise its latency is the no-load latency and the learned limit is
// restored.
func (c *controller) onProbe(now time.Time, pt point) Reason {
	if pt.n <= c.prev.n*(1-evalStep) && queued(c.prev, pt, c.noise) && float64(c.eff) > c.minL && c.depth < probeDepth {
		c.prev = pt
		c.depth++
		c.eff = int(math.Max(c.minL, float64(c.eff/2)))
		return ReasonProbe
	}
	c.setBase(pt)
	c.state, c.probed = c.resume, true
	c.lim = c.saved
	c.schedule(now)
	return ReasonProbed
}

func (c *controller) schedule(now time.Time) {
	jitter := time.Duration(c.rng.Float64() * c.probeJitter * float64(c.probeEvery))
	c.nextProbe = now.Add(c.probeEvery + jitter)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
