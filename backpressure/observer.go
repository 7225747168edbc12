package backpressure

import "time"

// Observer is told about changes of a limiter's limit and in-flight count,
// for gauges such as sluice_concurrency_limit and
// sluice_concurrency_in_flight. Methods are called with the limiter's lock
// held, in the order the changes happen: they must be fast, must not block
// and must not call back into the limiter.
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
	ReasonGrow       Reason = "grow"       // latency near no-load and demand at the limit
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
}

type nopObserver struct{}

func (nopObserver) LimitChanged(int)    {}
func (nopObserver) InFlightChanged(int) {}
