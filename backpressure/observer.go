package backpressure

import "time"

// Observer is told about changes of a limiter's limit and in-flight count,
// for gauges such as sluice_concurrency_limit and
// sluice_concurrency_in_flight. Calls are never concurrent. LimitChanged is
// called in the order the changes happen. InFlightChanged is not called on
// every change: admitting and releasing take no lock, so a caller that finds
// another one reporting leaves the report to it, and that one reports again
// if the count moved meanwhile; under contention intermediate counts are
// skipped, but the last report is always the current count. Methods must be
// fast, must not block and must not call back into the limiter. An observer
// costs a little on every Acquire and Release; the default, none, nothing.
type Observer interface {
	// LimitChanged reports the new limit.
	LimitChanged(limit int)
	// InFlightChanged reports the new number of held slots (all flows).
	InFlightChanged(inFlight int)
}

// DecisionObserver is an optional extension of Observer: an Adaptive limiter
// whose observer implements it reports every closed window and what it
// decided. Same calling rules as Observer.
type DecisionObserver interface {
	Decided(Decision)
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
	ReasonOverload   Reason = "overload"   // Overload outcomes above the threshold
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
	// outcomes of calls started inside the window.
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

type nopObserver struct{}

func (nopObserver) LimitChanged(int)    {}
func (nopObserver) InFlightChanged(int) {}
