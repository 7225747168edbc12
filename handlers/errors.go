package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Failure classes name why the chain gave up on a record. They are the same
// strings as the pipeline's Class constants (pipeline/deadletter.go) and end
// up in dead-letter headers and metrics; a test pins them.
const (
	// ClassDecode: the record's bytes could not be decoded. The guards never
	// produce it themselves; a sink error that carries it is kept.
	ClassDecode = "decode"
	// ClassPanic: the sink panicked.
	ClassPanic = "panic"
	// ClassPermanent: the sink returned an error classified as permanent.
	ClassPermanent = "permanent"
	// ClassExhausted: every allowed attempt failed with a transient error.
	ClassExhausted = "exhausted"
	// ClassBudget: the sink's shared retry budget allowed no further retry.
	ClassBudget = "budget"
	// ClassDeadline: the record's deadline left no time for another attempt.
	ClassDeadline = "deadline"
	// ClassError: a transient error from a chain without retries; the sink
	// was tried once.
	ClassError = "error"
)

// Sentinels for the final errors. A *FailureError matches the sentinel of its
// class with errors.Is, so callers can write errors.Is(err, ErrExhausted).
var (
	// ErrPermanent matches errors marked with Permanent and final errors of
	// class permanent.
	ErrPermanent = errors.New("handlers: permanent error")
	// ErrExhausted matches final errors of class exhausted.
	ErrExhausted = errors.New("handlers: attempts exhausted")
	// ErrBudget matches final errors of class budget.
	ErrBudget = errors.New("handlers: retry budget exhausted")
	// ErrDeadline matches final errors of class deadline, and the error a
	// standalone guard returns when waiting would leave less than the
	// minimum budget before the deadline.
	ErrDeadline = errors.New("handlers: deadline budget exhausted")
	// ErrPanic matches final errors of class panic.
	ErrPanic = errors.New("handlers: sink panicked")
	// ErrOverload matches errors marked with Overloaded.
	ErrOverload = errors.New("handlers: downstream overloaded")
	// ErrInjected is the error the chaos guard injects by default.
	ErrInjected = errors.New("handlers: chaos: injected failure")
)

// errNoBudget is returned by a guard that did not call the layers inside it
// because the remaining budget was too small. The retry layer turns it into a
// final error of class deadline without counting an attempt.
var errNoBudget = fmt.Errorf("%w: too little time left to start", ErrDeadline)

// FailureError is the final error of a chain that gave up on a record. It
// implements the pipeline's Failure protocol (FailureClass, FailureAttempts,
// FailureTimes), so the pipeline dead-letters the record with this class.
type FailureError struct {
	// Class is one of the Class constants.
	Class string
	// Attempts is how many times the sink was called for the record.
	Attempts int
	// First and Last are the times of the first and the last failed
	// attempt (both the time of giving up if no attempt was made).
	First, Last time.Time
	// Err is the last error the sink returned, or the guard's reason if the
	// sink was never called.
	Err error
}

// Error says why the chain gave up and shows the last error.
func (e *FailureError) Error() string {
	s := "s"
	if e.Attempts == 1 {
		s = ""
	}
	return fmt.Sprintf("%s after %d attempt%s: %v", e.Class, e.Attempts, s, e.Err)
}

// Unwrap returns the last error.
func (e *FailureError) Unwrap() error { return e.Err }

// Is ties the error to the sentinel of its class.
func (e *FailureError) Is(target error) bool {
	switch e.Class {
	case ClassPermanent:
		return target == ErrPermanent
	case ClassExhausted:
		return target == ErrExhausted
	case ClassBudget:
		return target == ErrBudget
	case ClassDeadline:
		return target == ErrDeadline
	case ClassPanic:
		return target == ErrPanic
	}
	return false
}

// FailureClass returns Class (pipeline.Failure).
func (e *FailureError) FailureClass() string { return e.Class }

// FailureAttempts returns Attempts (pipeline.Failure).
func (e *FailureError) FailureAttempts() int { return e.Attempts }

// FailureTimes returns First and Last (pipeline.Failure).
func (e *FailureError) FailureTimes() (first, last time.Time) { return e.First, e.Last }

// failure is the pipeline's Failure protocol, matched structurally.
type failure interface {
	error
	FailureClass() string
}

// PanicError is what a recovered panic becomes. It is wrapped in a
// *FailureError of class panic; the stack is logged, not put in the message.
type PanicError struct {
	// Value is what the sink panicked with.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

// Error shows the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Is ties the error to ErrPanic.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as permanent: the chain does not retry it and gives the
// record up with class permanent. Permanent(nil) is nil. The mark holds
// whatever classifier is configured.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.d }

// RetryAfter marks err as transient with a hint from the downstream to wait
// d before the next attempt (an HTTP Retry-After, a gRPC pushback). The
// default classifier treats such an error as an overload signal; the retry
// layer waits d instead of its own backoff, unless that would overrun the
// record's deadline, in which case the record is given up with class
// deadline. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: d}
}

type overloadError struct{ err error }

func (e *overloadError) Error() string        { return e.err.Error() }
func (e *overloadError) Unwrap() error        { return e.err }
func (e *overloadError) Is(target error) bool { return target == ErrOverload }

// Overloaded marks err as a transient error that signals load on the
// downstream, so the concurrency limiter counts it as backpressure
// (backpressure.Overload). Overloaded(nil) is nil.
func Overloaded(err error) error {
	if err == nil {
		return nil
	}
	return &overloadError{err: err}
}

// Verdict is what a Classifier says about a failed attempt.
type Verdict struct {
	// Permanent: do not retry; give the record up with class permanent.
	Permanent bool
	// Overload: the error signals load on the downstream (a timeout, HTTP
	// 429 or 503); the limiter sees backpressure.Overload rather than
	// Ignore.
	Overload bool
	// RetryAfter is the downstream's hint for the next attempt; zero means
	// none.
	RetryAfter time.Duration
}

// Classifier tells the chain how to treat an error from the sink. It must be
// safe for concurrent use and fast; it is called once per failed attempt.
// Whatever it says, errors marked with Permanent and errors implementing the
// pipeline's Failure protocol (panics, decode errors, nested chains) are
// permanent, and a cancelled record context ends the chain without a
// verdict.
type Classifier func(err error) Verdict

// DefaultClassifier is the classifier used unless WithClassifier replaces it;
// a custom classifier may call it for the cases it does not handle.
//
//   - marked with Permanent: permanent;
//   - has a StatusCode() int method (such as *HTTPError): ClassifyHTTPStatus;
//   - has a RetryAfter() time.Duration method with a positive result (such as
//     RetryAfter or *HTTPError): transient, overload, that hint;
//   - marked with Overloaded, context.DeadlineExceeded (an attempt timed
//     out) or a net.Error whose Timeout() is true: transient, overload;
//   - anything else: transient, not an overload signal.
func DefaultClassifier(err error) Verdict {
	var v Verdict
	if errors.Is(err, ErrPermanent) {
		v.Permanent = true
	}
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		s := ClassifyHTTPStatus(sc.StatusCode())
		v.Permanent = v.Permanent || s.Permanent
		v.Overload = s.Overload
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			v.RetryAfter = d
			v.Overload = true
		}
	}
	if errors.Is(err, ErrOverload) || errors.Is(err, context.DeadlineExceeded) {
		v.Overload = true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		v.Overload = true
	}
	return v
}

// verdict classifies err with c, applying the rules no classifier can
// override.
func verdict(c Classifier, err error) Verdict {
	var f failure
	if errors.Is(err, ErrPermanent) || errors.As(err, &f) {
		v := c(err)
		v.Permanent = true
		return v
	}
	return c(err)
}

// finalClass is the class a permanent error is given up with: the class it
// carries if it implements the Failure protocol, else permanent.
func finalClass(err error) string {
	var f failure
	if errors.As(err, &f) {
		if c := f.FailureClass(); c != "" {
			return c
		}
	}
	return ClassPermanent
}
