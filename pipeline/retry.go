package pipeline

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Sentinels of the failure classes. A *FailureError matches the one of its
// class with errors.Is, so callers can write errors.Is(err, ErrExhausted)
// (ErrPermanent, in errors.go, for class permanent).
var (
	// ErrExhausted matches final errors of class ClassExhausted.
	ErrExhausted = errors.New("pipeline: attempts exhausted")
	// ErrBudget matches final errors of class ClassBudget.
	ErrBudget = errors.New("pipeline: retry budget exhausted")
	// ErrDeadline matches final errors of class ClassDeadline.
	ErrDeadline = errors.New("pipeline: deadline budget exhausted")
	// ErrPanic matches final errors of class ClassPanic and *PanicError.
	ErrPanic = errors.New("pipeline: panic")
)

// FailureError is the final error of a sink that gave up on a message after
// retrying it: the pipeline's own retries (a plain Sink: ClassDeadline when
// the deadline left no time for another attempt, ClassExhausted when
// SinkAttempts were used up), or a guarded sink's from package handlers
// (any class). It is a Failure, so the message is dead-lettered with this
// class and count, and it matches the sentinel of its class (errors.Is:
// ErrPermanent, ErrExhausted, ErrBudget, ErrDeadline, ErrPanic).
type FailureError struct {
	// Class is one of the Class constants.
	Class string
	// Attempts is how many times the sink was called for the message.
	Attempts int
	// First and Last are the times of the first and the last failed
	// attempt (both the time of giving up if no attempt was made).
	First, Last time.Time
	// Err is the last error the sink returned, or the guard's reason if the
	// sink was never called.
	Err error
}

// Error says why the sink gave up and shows the last error.
func (e *FailureError) Error() string {
	s := "s"
	if e.Attempts == 1 {
		s = ""
	}
	return fmt.Sprintf("%s after %d attempt%s: %v", e.Class, e.Attempts, s, e.Err)
}

// Unwrap returns the sink's last error.
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

// FailureClass is e.Class.
func (e *FailureError) FailureClass() string { return e.Class }

// FailureAttempts is e.Attempts.
func (e *FailureError) FailureAttempts() int { return e.Attempts }

// FailureTimes are e.First and e.Last.
func (e *FailureError) FailureTimes() (first, last time.Time) { return e.First, e.Last }

var _ Failure = (*FailureError)(nil)

// retrier paces the attempts of one message at a sink that fails
// transiently.
type retrier struct {
	env      *Env
	stage    string
	deadline time.Time
	limit    int // attempts allowed; 0: no limit

	attempts    int
	first, last time.Time
	backoff     time.Duration
}

// wait records a failed attempt with a transient err and waits before the
// next one. It returns nil to try again, the partition's context error if it
// was cancelled while waiting, or a *FailureError when the message must be
// given up: the deadline would pass before the next attempt, or the attempt
// limit was reached.
func (r *retrier) wait(t Token, err error) error {
	p := r.env.p
	now := p.clock.Now()
	r.attempts++
	if r.attempts == 1 {
		r.first, r.backoff = now, p.retryMin
	} else {
		r.backoff = min(2*r.backoff, p.retryMax)
	}
	r.last = now
	if r.limit > 0 && r.attempts >= r.limit {
		return r.give(ClassExhausted, err)
	}
	wait := jitter(r.backoff)
	if !r.deadline.IsZero() && !now.Add(wait).Before(r.deadline) {
		return r.give(ClassDeadline, err)
	}
	for _, h := range p.hooks.retries {
		h.OnSinkRetry(r.stage, r.attempts, err)
	}
	if r.attempts == 1 || (r.backoff == p.retryMax && r.attempts%8 == 0) {
		p.log.Warn("pipeline: sink failed; retrying", "stage", r.stage, "first_record", firstRecord(t), "attempt", r.attempts, "retry_in", wait, "err", err)
	}
	if !r.env.Sleep(wait) {
		return r.env.ctx.Err()
	}
	return nil
}

// jitter is a wait in [backoff/2, backoff]: partitions failing on one
// downstream do not come back in step, and none waits much less than
// planned.
func jitter(backoff time.Duration) time.Duration {
	return backoff/2 + rand.N(backoff/2+1)
}

func (r *retrier) give(class string, err error) error {
	return &FailureError{Class: class, Attempts: r.attempts, First: r.first, Last: r.last, Err: err}
}
