package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

var (
	// ErrOverload matches errors marked with Overloaded.
	ErrOverload = errors.New("handlers: downstream overloaded")
	// ErrInjected is the error the chaos guard injects by default.
	ErrInjected = errors.New("handlers: chaos: injected failure")
)

// errNoBudget is returned by a guard that did not call the layers inside it
// because the remaining budget was too small. The retry layer turns it into a
// final error of class deadline without counting an attempt.
var errNoBudget = fmt.Errorf("%w: too little time left to start", pipeline.ErrDeadline)

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
	// Permanent: do not retry; give the record up with class permanent
	// (or the class a pipeline.Failure carries).
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
// Whatever it says, errors marked with pipeline.Permanent and errors
// implementing pipeline.Failure (panics, decode errors, nested chains) are
// permanent, and a cancelled record context ends the chain without a
// verdict.
type Classifier func(err error) Verdict

// DefaultClassifier is the classifier used unless Classify replaces it; a
// custom classifier may call it for the cases it does not handle.
//
//   - marked with pipeline.Permanent: permanent;
//   - has a StatusCode() int method (such as *HTTPError): ClassifyHTTPStatus;
//   - has a RetryAfter() time.Duration method with a positive result (such as
//     RetryAfter or *HTTPError): transient, overload, that hint;
//   - marked with Overloaded, context.DeadlineExceeded (an attempt timed
//     out) or a net.Error whose Timeout() is true: transient, overload;
//   - anything else: transient, not an overload signal.
func DefaultClassifier(err error) Verdict {
	var v Verdict
	if errors.Is(err, pipeline.ErrPermanent) {
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
	var f pipeline.Failure
	if errors.Is(err, pipeline.ErrPermanent) || errors.As(err, &f) {
		v := c(err)
		v.Permanent = true
		return v
	}
	return c(err)
}

// finalClass is the class a permanent error is given up with: the class it
// carries if it implements pipeline.Failure, else permanent.
func finalClass(err error) string {
	var f pipeline.Failure
	if errors.As(err, &f) {
		if c := f.FailureClass(); c != "" {
			return c
		}
	}
	return pipeline.ClassPermanent
}
