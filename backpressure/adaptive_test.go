package backpressure

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

const ms = time.Millisecond

// near reports whether got is within the histogram's 3% resolution of want.
func near(got, want time.Duration) bool {
	return got >= want*97/100 && got <= want*103/100
}

func TestNewAdaptiveRejectsBadOptions(t *testing.T) {
	tests := []struct {
		give  []AdaptiveOpt
		want  string // the option the error names
		field string
	}{
		{give: []AdaptiveOpt{MinLimit(0)}, want: "MinLimit"},
		{give: []AdaptiveOpt{MinLimit(5), MaxLimit(4), InitialLimit(4)}, want: "MaxLimit"},
		{give: []AdaptiveOpt{InitialLimit(2000)}, want: "InitialLimit"},
		{give: []AdaptiveOpt{Tolerance(1)}, want: "Tolerance"},
		{give: []AdaptiveOpt{Quantile(1)}, want: "Quantile"},
		{give: []AdaptiveOpt{Window(-time.Second, 100)}, want: "Window", field: "minDuration"},
		{give: []AdaptiveOpt{Window(time.Second, 3)}, want: "Window", field: "minSamples"},
		{give: []AdaptiveOpt{Probe(0, 0.5)}, want: "Probe", field: "interval"},
		{give: []AdaptiveOpt{Probe(time.Second, 2)}, want: "Probe", field: "jitter"},
		{give: []AdaptiveOpt{DemandFactor(6)}, want: "DemandFactor"},
		{give: []AdaptiveOpt{OverloadThreshold(1)}, want: "OverloadThreshold"},
		{give: []AdaptiveOpt{Partitions(Partition{Name: "a", Share: 0.7}, Partition{Name: "b", Share: 0.7})}, want: "Partitions", field: "Share"},
		{give: []AdaptiveOpt{Partitions(Partition{Name: "a", Share: 0.2}, Partition{Name: "a", Share: 0.2})}, want: "Partitions", field: "Name"},
		{give: []AdaptiveOpt{Partitions(Partition{Share: 0.2})}, want: "Partitions", field: "Name"},
		{give: []AdaptiveOpt{Partitions(Partition{Name: "a"})}, want: "Partitions", field: "Share"},
		{give: []AdaptiveOpt{Hooks(struct{}{})}, want: "Hooks"},
		{give: []AdaptiveOpt{Hooks(nil)}, want: "Hooks"},
	}
	for _, tt := range tests {
		t.Run(tt.want+tt.field, func(t *testing.T) {
			_, err := NewAdaptive(tt.give...)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Package != "backpressure" || ce.Option != tt.want || ce.Field != tt.field || ce.Reason == "" || !errors.Is(err, sluice.ErrConfig) {
				t.Fatalf("got %v, want a *sluice.ConfigError naming %s.%s", err, tt.want, tt.field)
			}
		})
	}
}

func TestAdaptiveStartsSlowThenProbes(t *testing.T) {
	h := newHarness(t, InitialLimit(20))
	ds := h.drive(1000, servers(200, 10*ms), Success, 4)
	// The first window sets a provisional baseline, then slow start
	// doubles the limit while the steps pay in full.
	if got, want := reasons(ds), []Reason{ReasonStart, ReasonGrow, ReasonGrow, ReasonGrow}; !slices.Equal(got, want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
	if got, want := limits(ds), []int{20, 40, 80, 160}; !slices.Equal(got, want) {
		t.Fatalf("limits %v, want %v", got, want)
	}
	if !near(ds[0].Baseline, 10*ms) {
		t.Fatalf("baseline %v, want 10ms", ds[0].Baseline)
	}
	// The first step that does not pay in full ends slow start, and the
	// first probe follows at once; its windows take 4x the samples.
	var probes []Decision
	for range 20 {
		d := h.drive(1000, servers(200, 10*ms), Success, 1)[0]
		if d.Probing || d.Reason == ReasonProbed {
			probes = append(probes, d)
		}
		if d.Reason == ReasonProbed {
			break
		}
	}
	if len(probes) != 2 || probes[1].Samples < 400 || !near(probes[1].Baseline, 10*ms) {
		t.Fatalf("probe windows %+v, want one of >= 400 samples and a 10ms baseline", probes)
	}
}

func TestAdaptiveGrowsWhileLatencyIsFlatAndStopsAtMax(t *testing.T) {
	h := newHarness(t, InitialLimit(10), MaxLimit(40))
	h.settle(64, flat(10*ms))
	ds := h.drive(64, flat(10*ms), Success, 8)
	for i := 1; i < len(ds); i++ {
		if ds[i].Limit < ds[i-1].Limit {
			t.Fatalf("limit fell with flat latency: %v", limits(ds))
		}
	}
	if got := ds[len(ds)-1].Limit; got != 40 {
		t.Fatalf("limit %d, want MaxLimit 40: %v", got, limits(ds))
	}
}

func TestAdaptiveFindsTheKnee(t *testing.T) {
	h := newHarness(t)
	h.settle(1000, servers(32, 10*ms))
	ds := h.drive(1000, servers(32, 10*ms), Success, 30)
	for _, d := range ds[10:] {
		if d.Limit < 32 || d.Limit > 48 {
			t.Fatalf("limit %d outside [32, 48] = [ideal, 1.5 ideal]: %v", d.Limit, limits(ds))
		}
	}
}

func TestAdaptiveFollowsACapacityDropWithinThreeWindows(t *testing.T) {
	h := newHarness(t)
	h.settle(1000, servers(32, 10*ms))
	ds := h.drive(1000, servers(8, 10*ms), Success, 3)
	if got := ds[len(ds)-1].Limit; float64(got) > 1.2*8 {
		t.Fatalf("limit %d after 3 windows, want <= 9.6: %v %v", got, limits(ds), reasons(ds))
	}
	if !slices.Contains(reasons(ds), ReasonConfirm) {
		t.Fatalf("no confirmed cut: %v", reasons(ds))
	}
}

func TestAdaptiveLatencyRiseWithoutCapacityLossCostsAtMostOneHalving(t *testing.T) {
	h := newHarness(t)
	h.settle(1000, servers(32, 10*ms))
	before := h.l.Limit()
	ds := h.drive(1000, servers(32, 30*ms), Success, 10)
	for _, d := range ds {
		if d.Limit < 16 {
			t.Fatalf("limit %d < half the ideal: %v %v", d.Limit, limits(ds), reasons(ds))
		}
	}
	if !slices.Contains(reasons(ds), ReasonRebaseline) {
		t.Fatalf("no rebaseline: %v", reasons(ds))
	}
	last := ds[len(ds)-1]
	if last.Limit < 32 || last.Limit > 48 || !near(last.Baseline, 30*ms) {
		t.Fatalf("after 10 windows limit %d (was %d), baseline %v; want [32, 48] and 30ms: %v", last.Limit, before, last.Baseline, limits(ds))
	}
}

func TestAdaptiveRefutedRebaselineRestoresTheOldBaseline(t *testing.T) {
	tests := []struct {
		name   string
		giveQ  time.Duration // latency of the window the rebaseline was decided on
		want   Reason
		maxLim int
	}{
		// Mildly above the old baseline: cut at most by half.
		{"mild", 14 * ms, ReasonCut, 20},
		// More than twice the tolerance above it: two windows confirm a
		// large capacity loss, and the full gradient applies.
		{"large", 25 * ms, ReasonConfirm, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.settle(1000, servers(32, 10*ms))
			// Drive the controller directly into a rebaseline decided on a
			// window that was really queueing, then show it the truth.
			c := h.l.ctl
			c.rebaseline(h.clk.Now(), point{n: 20, q: float64(tt.giveQ)}, 40)
			h.l.setLimit(40)
			ds := h.drive(1000, servers(8, 10*ms), Success, 1)
			if ds[0].Reason != tt.want || !near(ds[0].Baseline, 10*ms) || ds[0].Limit > tt.maxLim {
				t.Fatalf("got %s to %d with baseline %v, want %s to at most %d on the 10ms baseline",
					ds[0].Reason, ds[0].Limit, ds[0].Baseline, tt.want, tt.maxLim)
			}
		})
	}
}

func TestAdaptiveSingleFastSampleDoesNotMoveTheBaseline(t *testing.T) {
	h := newHarness(t)
	h.settle(64, flat(10*ms))
	// One very fast success (think: a cached answer, or an error wrongly
	// reported as Success) among ordinary ones.
	fast := true
	ds := h.drive(64, func(int) time.Duration {
		if fast {
			fast = false
			return time.Microsecond
		}
		return 10 * ms
	}, Success, 3)
	for _, d := range ds {
		if !near(d.Baseline, 10*ms) || d.Reason == ReasonFaster {
			t.Fatalf("baseline moved by one sample: %v %v", d.Baseline, d.Reason)
		}
	}
}

func TestAdaptiveFasterWindowLowersTheBaseline(t *testing.T) {
	h := newHarness(t)
	h.settle(64, flat(10*ms))
	ds := h.drive(64, flat(5*ms), Success, 2)
	if ds[0].Reason != ReasonFaster && ds[1].Reason != ReasonFaster {
		t.Fatalf("reasons %v, want %s", reasons(ds), ReasonFaster)
	}
	if got := ds[1].Baseline; !near(got, 5*ms) {
		t.Fatalf("baseline %v, want 5ms", got)
	}
}

func TestAdaptiveIgnoresIgnoreSignals(t *testing.T) {
	h := newHarness(t)
	h.settle(64, flat(10*ms))
	before, n := h.l.Limit(), len(h.rec.decisions)
	// Errors that say nothing about load, however slow, never close a
	// window or move the limit.
	for range 5000 {
		if !h.l.TryAcquire() {
			t.Fatal("no slot")
		}
		h.clk.Advance(ms)
		h.l.Release(time.Second, Ignore)
	}
	if len(h.rec.decisions) != n || h.l.Limit() != before {
		t.Fatalf("Ignore outcomes took %d decisions, limit %d -> %d", len(h.rec.decisions)-n, before, h.l.Limit())
	}
}

func TestAdaptiveOverloadCutsByTheOverloadFraction(t *testing.T) {
	tests := []struct {
		name  string
		every int // one Overload in every this many outcomes
		cut   bool
	}{
		{"10% overload cuts", 10, true},
		{"2% overload is under the threshold", 50, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, MaxLimit(1000))
			h.settle(64, flat(10*ms))
			before := h.l.Limit()
			i := 0
			start := len(h.rec.decisions)
			for len(h.rec.decisions) == start {
				for len(h.held) < 64 && h.l.TryAcquire() {
					h.held = append(h.held, h.clk.Now())
				}
				h.clk.Advance(10 * ms / time.Duration(len(h.held)))
				h.held = h.held[1:]
				o := Success
				if i++; i%tt.every == 0 {
					o = Overload
				}
				h.l.Release(10*ms, o)
			}
			d := h.rec.decisions[start]
			if (d.Reason == ReasonOverload) != tt.cut {
				t.Fatalf("reason %s, want an overload cut: %v (%d overloads of %d)", d.Reason, tt.cut, d.Overloads, d.Samples+d.Overloads)
			}
			if tt.cut {
				frac := float64(d.Overloads) / float64(d.Samples+d.Overloads)
				if want := min(float64(before), d.InFlight) * (1 - frac); float64(d.Limit) < want-1 || float64(d.Limit) > want {
					t.Fatalf("limit %d -> %d, want %.1f", before, d.Limit, want)
				}
			}
		})
	}
}

func TestAdaptiveLimitTracksDemandWhenTheCallerIsTheBottleneck(t *testing.T) {
	h := newHarness(t, InitialLimit(100))
	ds := h.drive(4, flat(10*ms), Success, 30)
	for _, d := range ds[1:] {
		if d.MaxInFlight > 0 && d.Limit > 5*d.MaxInFlight {
			t.Fatalf("limit %d > 5x in-flight %d", d.Limit, d.MaxInFlight)
		}
	}
	if got := h.l.Limit(); got > 8 {
		t.Fatalf("limit %d with 4 callers, want <= DemandFactor 2 x 4", got)
	}
}

func TestAdaptiveProbesAgainWithJitter(t *testing.T) {
	var gaps []time.Duration
	for seed := range uint64(5) {
		h := newHarness(t, Seed(seed), Probe(5*time.Second, 0.5))
		h.drive(64, flat(10*ms), Success, 3)
		var probes []time.Time
		for len(probes) < 2 {
			for _, d := range h.drive(64, flat(10*ms), Success, 1) {
				if d.Reason == ReasonProbe {
					probes = append(probes, d.At)
				}
			}
		}
		gap := probes[1].Sub(probes[0])
		if gap < 5*time.Second || gap > 7500*time.Millisecond+time.Second {
			t.Fatalf("seed %d: probes %v apart, want within [5s, 7.5s] plus a window", seed, gap)
		}
		gaps = append(gaps, gap)
	}
	slices.Sort(gaps)
	if gaps[len(gaps)-1]-gaps[0] < 100*ms {
		t.Fatalf("probe gaps %v: no jitter", gaps)
	}
}

func TestAdaptiveProbeHalvesAgainWhileTheProbeStillQueues(t *testing.T) {
	// Started far above the knee: the first probe (after slow start found
	// that doubling did not pay) must keep halving until latency stops
	// falling with concurrency.
	h := newHarness(t, InitialLimit(200))
	ds := h.drive(1000, servers(10, 10*ms), Success, 10)
	var probeLimits []int
	for _, d := range ds {
		if d.Probing {
			probeLimits = append(probeLimits, d.Limit)
		}
		if d.Reason == ReasonProbed {
			if d.Baseline > 11*ms {
				t.Fatalf("baseline %v, want the no-load 10ms", d.Baseline)
			}
			// 14 calls still queue on 10 servers, so it halves once more.
			if !slices.Equal(probeLimits, []int{114, 57, 28, 14, 7}) {
				t.Fatalf("probe limits %v, want 114 57 28 14 7", probeLimits)
			}
			return
		}
	}
	t.Fatalf("probe did not finish: %v %v", reasons(ds), limits(ds))
}

func TestAdaptiveDropsSamplesOfCallsStartedInAnEarlierWindow(t *testing.T) {
	h := newHarness(t)
	h.settle(64, flat(10*ms))
	n := len(h.rec.decisions)
	// Calls that started before the last decision, however many, do not
	// count towards the current window.
	last := h.rec.decisions[n-1].At
	for range 1000 {
		h.l.TryAcquire()
		h.clk.Advance(time.Microsecond)
		h.l.Release(h.clk.Now().Sub(last)+time.Millisecond, Success)
	}
	if len(h.rec.decisions) != n {
		t.Fatalf("stale samples closed a window: %v", reasons(h.rec.decisions[n:]))
	}
}

func TestAdaptiveReportsLimitAndInFlightToHooks(t *testing.T) {
	h := newHarness(t, InitialLimit(7))
	if got := h.rec.limits; !slices.Equal(got, []int{7}) {
		t.Fatalf("limits %v, want [7] at construction", got)
	}
	h.l.TryAcquire()
	h.l.TryAcquire()
	h.l.Release(ms, Success)
	if got := h.rec.inFlights; !slices.Equal(got, []int{1, 2, 1}) {
		t.Fatalf("in-flight %v, want [1 2 1]", got)
	}
	h.drive(100, flat(10*ms), Success, 2)
	if got := h.rec.limits[len(h.rec.limits)-1]; got != h.l.Limit() {
		t.Fatalf("last reported limit %d, limiter says %d", got, h.l.Limit())
	}
}

func TestAdaptiveSeesThroughSurvivorshipBias(t *testing.T) {
	// An unfair downstream serves newcomers first: the samples that
	// complete inside a window all look fast (10ms) while throughput says
	// calls spend 40ms in the system. Little's law must win.
	h := newHarness(t)
	h.settle(64, flat(10*ms))
	before := h.l.Limit()
	start := len(h.rec.decisions)
	for len(h.rec.decisions)-start < 1 {
		for len(h.held) < 64 && h.l.TryAcquire() {
			h.held = append(h.held, h.clk.Now())
		}
		// One completion every 40ms/inFlight: a mean time in system of
		// 40ms, reported as 10ms.
		h.clk.Advance(40 * ms / time.Duration(len(h.held)))
		h.held = h.held[1:]
		h.l.Release(10*ms, Success)
	}
	d := h.rec.decisions[start]
	// A cut, or a knee: settle ended on a probe window, so this window is
	// a step up whose throughput fell.
	if d.Reason != ReasonCut && d.Reason != ReasonKnee || d.Limit >= before || !near(d.Latency, 40*ms) {
		t.Fatalf("got %s to %d (from %d) on latency %v, want a cut on about 40ms", d.Reason, d.Limit, before, d.Latency)
	}
}

// TestAdaptiveMicrosecondSinkIsNotThrottledByScheduling is the regression
// test of a no-op sink behind the guards of a consumer (bench/consume's
// guarded mode): calls of a few microseconds whose latency the caller's
// scheduling moves by several times drove the limit to 1, and every caller
// then queued for it. Latency differences under 50us are not a load signal.
func TestAdaptiveMicrosecondSinkIsNotThrottledByScheduling(t *testing.T) {
	h := newHarness(t, Window(time.Millisecond, 100))
	r := rand.New(rand.NewPCG(1, 2))
	calls := 0
	ds := h.drive(3, func(int) time.Duration {
		// Stretches of calls three times slower than others, as when the
		// caller's goroutines wait for a core.
		calls++
		us := 2 + r.IntN(3)
		if calls/300%2 == 1 {
			us *= 3
		}
		return time.Duration(us) * time.Microsecond
	}, Success, 40)
	for _, d := range ds[2:] {
		if d.Limit < 3 {
			t.Fatalf("limit %d below the demand of 3: %v %v", d.Limit, limits(ds), reasons(ds))
		}
	}
}

// TestAdaptiveAtTheMinimumLimitDoesNotKeepCutting: a run of cuts that
// reached MinLimit with latency still high cannot cut further; it tests the
// other hypothesis (the latency is the new no-load latency) upwards.
func TestAdaptiveAtTheMinimumLimitDoesNotKeepCutting(t *testing.T) {
	h := newHarness(t, InitialLimit(2), MinLimit(2))
	h.settle(2, flat(10*ms))
	ds := h.drive(2, flat(30*ms), Success, 6)
	if !slices.Contains(reasons(ds), ReasonRebaseline) {
		t.Fatalf("no rebaseline at the minimum limit: %v %v", reasons(ds), limits(ds))
	}
}

// TestAdaptiveDemandStepIsNotAKnee: found live in bench/consume's guarded
// mode. A step up in concurrency that came from the caller's demand (the
// window before it did not use its limit), not from the limiter, is no test
// of the downstream: when the caller's own CPU sets the pace, throughput
// does not follow it, and taking that for the knee cut a sink of
// microseconds to a limit of 1 that every lane then queued for.
func TestAdaptiveDemandStepIsNotAKnee(t *testing.T) {
	h := newHarness(t, InitialLimit(6), Window(time.Millisecond, 100))
	// A caller that completes one call every 3us whatever the concurrency:
	// latency is in-flight x 3us, throughput flat.
	cpuBound := func(n int) time.Duration { return time.Duration(n) * 3 * time.Microsecond }
	var ds []Decision
	for range 10 {
		ds = append(ds, h.drive(1, cpuBound, Success, 1)...)
		ds = append(ds, h.drive(3, cpuBound, Success, 1)...)
	}
	for _, d := range ds {
		// The limit follows demand (DemandFactor 2 x the low phase's 1),
		// never the knee rule.
		if d.Reason == ReasonKnee || d.Limit < 2 {
			t.Fatalf("a demand step taken for the knee (%s, limit %d): %v %v", d.Reason, d.Limit, limits(ds), reasons(ds))
		}
	}
}
