package pipeline

import (
	"context"
	"errors"
	"time"
)

// Failure classes name why a record was given up on. They appear in dead-letter
// headers and metrics. They are the one list: the guards of package handlers
// give records up with these constants (in a *FailureError), and so do
// stages outside this package.
const (
	// ClassDecode: the record's bytes could not be decoded.
	ClassDecode = "decode"
	// ClassPanic: user code panicked while handling the record.
	ClassPanic = "panic"
	// ClassPermanent: the sink returned an error marked permanent.
	ClassPermanent = "permanent"
	// ClassExhausted: every allowed attempt failed with a transient error.
	ClassExhausted = "exhausted"
	// ClassBudget: the sink's shared retry budget allowed no further retry.
	ClassBudget = "budget"
	// ClassDeadline: the record's deadline left no time for another attempt.
	ClassDeadline = "deadline"
	// ClassError: a transient error that nobody retried: a stage function
	// (not a sink) failed, or a guard without a retry policy gave up after
	// one attempt. A sink that returns it is called again (see Sink).
	ClassError = "error"
	// ClassDeliveryLimit: the record failed transiently (Transient) on its
	// last allowed delivery (Record.DeliveryLimit, a share group's
	// delivery count limit), after earlier deliveries were handed back for
	// redelivery; the error is the last failure's. The pipeline gives a
	// dead letter this class in place of the transient one.
	ClassDeliveryLimit = "delivery-limit"
)

// Transient reports whether class is that of a transient failure
// (ClassExhausted, ClassBudget, ClassDeadline, ClassError), which another
// delivery of the record might not meet, rather than of a failure of the
// record itself (ClassDecode, ClassPanic, ClassPermanent). A transient
// failure of a record on its last delivery (Record.DeliveryLimit) is
// dead-lettered as ClassDeliveryLimit.
func Transient(class string) bool {
	switch class {
	case ClassExhausted, ClassBudget, ClassDeadline, ClassError:
		return true
	}
	return false
}

// Failure is implemented by errors that describe a record given up on. The
// pipeline reads it with errors.As to fill in a DeadLetter. A sink's error
// that does not implement it is transient and retried (see Sink); a stage
// function's is dead-lettered as ClassError after one attempt.
type Failure interface {
	error
	// FailureClass is one of the Class constants.
	FailureClass() string
	// FailureAttempts is how many times the sink was called for the record.
	FailureAttempts() int
	// FailureTimes are the times of the first and the last failed attempt.
	FailureTimes() (first, last time.Time)
}

// DeadLetter is a record that a stage or sink gave up on, with why.
type DeadLetter struct {
	Record *Record
	// Stage is the name of the stage or sink that gave up.
	Stage        string
	Err          error
	Class        string
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
}

// DeadLetterer parks records that cannot be handled. The dlq package's
// Publisher implements it by producing to a dead-letter topic.
type DeadLetterer interface {
	// DeadLetter writes dl and returns nil only once the write is durably
	// acknowledged; only then may the record be settled. It returns an error
	// if the write failed or ctx is done first; the caller keeps the record
	// unsettled and tries again. It may return ErrReleased instead, for a
	// record its source can deliver again (consumer.ShareDeadLetters does).
	DeadLetter(ctx context.Context, dl DeadLetter) error
}

// ErrReleased is what a DeadLetterer returns, having written nothing, to
// hand a record back to its source for another delivery (a share group's
// release) instead of parking it. The pipeline then sets the record's fate
// to FateReleased, settles it, and counts it as OutcomeReleased, not as a
// dead letter (HookDeadLetter is not told). Only a record whose source can
// deliver it again (Record.Deliveries above 0) can be released: for any
// other record (a consumer group's, whose offset the settle would commit)
// ErrReleased is a failed write, retried like any other, so that nothing
// is skipped.
var ErrReleased = errors.New("pipeline: record released to its source for another delivery")
