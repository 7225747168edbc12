package backpressure

import (
	"fmt"
	"time"
)

// Hook is any of HookLimit, HookInFlight and HookDecision; a value may
// implement several. The Hooks option takes them. Calls of one limiter's
// hooks are never concurrent; methods must be fast, must not block and must
// not call back into the limiter.
type Hook any

// HookLimit is told every change of a limiter's limit, in the order the
// changes happen, and the initial limit when the limiter is made: the gauge
// sluice_concurrency_limit is built on it.
type HookLimit interface {
	OnLimit(limit int)
}

// HookInFlight is told the number of held slots (all flows) when it
// changes: the gauge sluice_concurrency_in_flight is built on it. It is not
// told every change: admitting and releasing take no lock, so a caller that
// finds another one reporting leaves the report to it, and that one reports
// again if the count moved meanwhile; under contention intermediate counts
// are skipped, but the last report is always the current count. It costs a
// little on every Acquire and Release; a limiter without one, nothing.
type HookInFlight interface {
	OnInFlight(inFlight int)
}

// HookDecision is told every closed window of an Adaptive limiter and what
// it decided (a Fixed limiter decides nothing and never calls it).
type HookDecision interface {
	OnDecision(Decision)
}

// hooks holds the configured hooks split by interface.
type hooks struct {
	limit     []HookLimit
	inFlight  []HookInFlight
	decisions []HookDecision
}

func newHooks(hs []Hook) (hooks, error) {
	var h hooks
	for i, x := range hs {
		n := 0
		if v, ok := x.(HookLimit); ok {
			h.limit = append(h.limit, v)
			n++
		}
		if v, ok := x.(HookInFlight); ok {
			h.inFlight = append(h.inFlight, v)
			n++
		}
		if v, ok := x.(HookDecision); ok {
			h.decisions = append(h.decisions, v)
			n++
		}
		if n == 0 {
			return hooks{}, configErr("Hooks", "", fmt.Sprintf("%T", x), fmt.Sprintf("hook %d implements none of HookLimit, HookInFlight, HookDecision", i))
		}
	}
	return h, nil
}

func (h *hooks) onLimit(l int) {
	for _, x := range h.limit {
		x.OnLimit(l)
	}
}

// Reason names the rule behind a Decision.
type Reason string

// The rules of the adaptive limiter; the package doc explains each.
const (
	ReasonGrow       Reason = "grow"       // demand at the limit, and latency near no-load or the last step up paid
	ReasonExplore    Reason = "explore"    // held at the limit for a while: a step up tests whether more concurrency pays
	ReasonKnee       Reason = "knee"       // a step up did not raise throughput in proportion: back to the knee
	ReasonHold       Reason = "hold"       // latency within tolerance, or demand below the limit
	ReasonCut        Reason = "cut"        // latency above tolerance: cut, at most by half
	ReasonConfirm    Reason = "confirm"    // latency fell with concurrency: queueing confirmed, full cut
	ReasonRebaseline Reason = "rebaseline" // latency did not fall with concurrency: new no-load latency
	ReasonFaster     Reason = "faster"     // a whole window well under the no-load latency: lower it
	ReasonOverload   Reason = "overload"   // Overload signals above the threshold
	ReasonProbe      Reason = "probe"      // a probe window at reduced concurrency started or continues
	ReasonProbed     Reason = "probed"     // probe finished: no-load latency re-measured, limit restored
	ReasonStart      Reason = "start"      // first window: provisional no-load latency
)

// Decision describes one closed decision window of an Adaptive limiter.
type Decision struct {
	// At is when the window closed.
	At time.Time
	// Reason is the rule that decided.
	Reason Reason
	// Limit is the limit in force after the decision (during a probe, the
	// reduced probe limit).
	Limit int
	// Probing is set while the limit is a probe limit.
	Probing bool
	// Samples and Overloads count the window's Success and Overload
	// signals of calls started inside the window.
	Samples, Overloads int
	// Latency is the window's latency quantile; Baseline the no-load latency
	// estimate after the decision.
	Latency, Baseline time.Duration
	// InFlight is the mean in-flight count while the window's limit was in
	// force; MaxInFlight the highest.
	InFlight    float64
	MaxInFlight int
	// Throughput is the window's Success and Overload releases per second,
	// those of calls started before the window included.
	Throughput float64
}
