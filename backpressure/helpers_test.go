package backpressure

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a virtual clock moved by hand.
type fakeClock struct{ now time.Time }

func newFakeClock() *fakeClock               { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }
func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// NewTimer is never called: the limiters start no timers.
func (c *fakeClock) NewTimer(time.Duration) sluice.Timer { panic("backpressure started a timer") }

// recorder is a HookLimit, HookInFlight and HookDecision that keeps what it
// is told.
type recorder struct {
	limits    []int
	inFlights []int
	decisions []Decision
}

func (r *recorder) OnLimit(l int)         { r.limits = append(r.limits, l) }
func (r *recorder) OnInFlight(n int)      { r.inFlights = append(r.inFlights, n) }
func (r *recorder) OnDecision(d Decision) { r.decisions = append(r.decisions, d) }

var (
	_ HookLimit    = (*recorder)(nil)
	_ HookInFlight = (*recorder)(nil)
	_ HookDecision = (*recorder)(nil)
)

// harness drives an Adaptive limiter with synthetic calls on a fake clock.
type harness struct {
	t   *testing.T
	l   *Adaptive
	clk *fakeClock
	rec *recorder
	// held are the start times of calls in flight, oldest first.
	held []time.Time
}

func newHarness(t *testing.T, opts ...AdaptiveOpt) *harness {
	t.Helper()
	h := &harness{t: t, clk: newFakeClock(), rec: &recorder{}}
	opts = append([]AdaptiveOpt{Clock(h.clk), Hooks(h.rec), Seed(1)}, opts...)
	l, err := NewAdaptive(opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.l = l
	return h
}

// latencyFunc gives a call's latency from the number of calls in flight
// when it completes.
type latencyFunc func(inFlight int) time.Duration

// flat is a latency independent of concurrency.
func flat(d time.Duration) latencyFunc { return func(int) time.Duration { return d } }

// servers models c servers with service time d: latency is d up to c calls
// in flight and grows in proportion above.
func servers(c int, d time.Duration) latencyFunc {
	return func(n int) time.Duration {
		if n <= c {
			return d
		}
		return d * time.Duration(n) / time.Duration(c)
	}
}

// drive runs closed-loop calls, at most conc at once (and at most the
// limit), each reported with outcome o and the latency lat gives, until the
// limiter has taken `windows` more decisions. It returns those decisions.
func (h *harness) drive(conc int, lat latencyFunc, o Signal, windows int) []Decision {
	h.t.Helper()
	start := len(h.rec.decisions)
	for steps := 0; len(h.rec.decisions)-start < windows; steps++ {
		if steps > 1_000_000 {
			h.t.Fatalf("no decision after %d steps", steps)
		}
		for len(h.held) < conc && h.l.TryAcquire() {
			h.held = append(h.held, h.clk.Now())
		}
		d := lat(len(h.held))
		// Completions are spread evenly: one every d/inFlight.
		h.clk.Advance(max(time.Microsecond, d/time.Duration(len(h.held))))
		h.held = h.held[1:]
		h.l.Release(d, o)
	}
	return h.rec.decisions[start:]
}

// settle drives at steady state until a probe has run and no cut is under
// test, so that rule tests start from a known baseline.
func (h *harness) settle(conc int, lat latencyFunc) {
	h.t.Helper()
	ds := h.drive(conc, lat, Success, 40)
	for _, d := range ds {
		if d.Reason == ReasonProbed {
			return
		}
	}
	h.t.Fatalf("no probe finished in 40 windows: %v", reasons(ds))
}

func reasons(ds []Decision) []Reason {
	rs := make([]Reason, len(ds))
	for i, d := range ds {
		rs[i] = d.Reason
	}
	return rs
}

func limits(ds []Decision) []int {
	ls := make([]int, len(ds))
	for i, d := range ds {
		ls[i] = d.Limit
	}
	return ls
}
