package pipeline

import "time"

// Outcome is how a stage or sink finished with a message, as HookHandled and
// the metric label outcome report it. It is per stage: a record that two
// branches reach has an outcome at each. What the source is told about the
// record as a whole (a share group's acknowledgement) is its Fate.
type Outcome uint8

const (
	// OutcomeOK: the sink returned nil; the message settled.
	OutcomeOK Outcome = iota
	// OutcomeDeadLettered: the sink or stage failed and every record of the
	// message was dead-lettered and acknowledged; the message settled.
	OutcomeDeadLettered
	// OutcomeFiltered: a stage dropped the message on purpose (a filter, a
	// window dropping a late record); it settled.
	OutcomeFiltered
	// OutcomeHeld: the sink or stage failed and no DeadLetterer is
	// configured; the message is kept unsettled, so the partition's commits
	// stop before it.
	OutcomeHeld
	// OutcomeAbandoned: the partition was cancelled (revoked, lost, shut
	// down) before the message finished; it stays unsettled.
	OutcomeAbandoned
	// OutcomeReleased: the sink or stage failed and the DeadLetterer handed
	// every record of the message back to its source for another delivery
	// (ErrReleased: a share group's transient failure before the record's
	// last delivery); nothing was dead-lettered, and the message settled.
	OutcomeReleased
)

var outcomeNames = [...]string{"ok", "dead_lettered", "filtered", "held", "abandoned", "released"}

// String is the outcome's metric label: ok, dead_lettered, filtered, held,
// abandoned or released.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Hook is any of the Hook* interfaces below; a value may implement several.
// Hooks are called synchronously from the pipeline's goroutines, often
// concurrently: they must be safe for concurrent use and fast (count, do not
// block).
type Hook any

// HookHandled is told when a sink or stage finished with a message.
type HookHandled interface {
	// OnHandled reports that stage (a sink, a filter, a window) finished
	// with a message standing for records records. latency is how long the
	// user's sink function ran (zero for stages).
	OnHandled(stage string, outcome Outcome, records int, latency time.Duration)
}

// HookDeadLetter is told when records were dead-lettered and acknowledged.
type HookDeadLetter interface {
	// OnDeadLetter reports that records records given up on by stage, for a
	// failure of class class (one of the Class constants), were parked.
	OnDeadLetter(stage, class string, records int)
}

// HookDeadLetterError is told when a dead-letter write failed and will be
// retried.
type HookDeadLetterError interface {
	OnDeadLetterError(stage string, err error)
}

// HookSinkRetry is told when a sink failed transiently and will be called
// again for the same message after a backoff (see Sink).
type HookSinkRetry interface {
	// OnSinkRetry reports that stage's attempt number attempt failed with
	// err and the message will be tried again.
	OnSinkRetry(stage string, attempt int, err error)
}

type hooks struct {
	handled  []HookHandled
	dead     []HookDeadLetter
	deadErrs []HookDeadLetterError
	retries  []HookSinkRetry
}

func (h *hooks) add(x Hook) bool {
	ok := false
	if v, is := x.(HookHandled); is {
		h.handled, ok = append(h.handled, v), true
	}
	if v, is := x.(HookDeadLetter); is {
		h.dead, ok = append(h.dead, v), true
	}
	if v, is := x.(HookDeadLetterError); is {
		h.deadErrs, ok = append(h.deadErrs, v), true
	}
	if v, is := x.(HookSinkRetry); is {
		h.retries, ok = append(h.retries, v), true
	}
	return ok
}
