package pipeline

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	dl "github.com/sluice-go/sluice/internal/deadline"
)

// SinkFunc is the function a Sink calls for each message: its error decides
// the message's fate (see Sink). It is an alias of the plain func type, so a
// function literal, a method value and a named func type of the same shape
// (a guarded sink of package handlers) are all SinkFuncs.
type SinkFunc[T any] = func(ctx context.Context, m Message[T]) error

// Sink ends a stream: fn is called for each message and its error decides
// the message's fate.
//
//   - nil settles the message.
//   - If the partition's context is done (revoke, loss, shutdown) the message
//     is abandoned, unsettled: it is redelivered after the next assignment.
//   - A final error is dead-lettered at once, with its class: a Failure (for
//     example the final error of a guarded sink from package handlers, whose
//     policy already retried), an error marked Permanent, a panic in fn
//     (ClassPanic, its stack in the log), or a context.DeadlineExceeded past
//     the message's own deadline (ClassDeadline). The message settles once
//     its dead letters are acknowledged; without a DeadLetterer it is held
//     unsettled.
//   - Any other error is transient: a downstream that is down, slow or
//     refusing must not turn into dead letters. fn is called again after a
//     capped, jittered backoff (SinkBackoff; default 100ms doubling to 30s),
//     for as long as it fails transiently, the partition is not cancelled and
//     the message's deadline allows another attempt; a message whose deadline
//     passes is dead-lettered as ClassDeadline with its attempt count, and a
//     SinkAttempts limit (default none; lower for a record whose source set
//     Record.SinkAttempts, as a share group does) dead-letters it as
//     ClassExhausted.
//     While it waits the sink holds its place: a sequential sink stops its
//     partition, whose commits stop before the message, and the consumer's
//     backpressure pauses fetching; nothing is skipped.
//
// So a poison record that fails with a plain error holds its partition until
// its deadline: mark such errors with Permanent (or classify them with a
// guard) to dead-letter them at once. Retries are counted by HookSinkRetry
// and logged once per message and then each time the backoff reaches its cap.
//
// fn is called with a context that carries the message's deadline, if it has
// one, and is cancelled when the partition is. Calls are sequential unless the
// stream comes from a fan-out, whose workers call fn concurrently. A guarded
// sink of package handlers is accepted as it is (SinkFunc is an alias).
func Sink[T any](in *Stream[T], name string, fn SinkFunc[T]) {
	info := StageInfo{Name: name}
	if fn == nil {
		info.Err = errors.New("nil sink function")
	}
	if in.p.claim(in.base, in.leased, info) {
		in.build = func(env *Env) Inlet[T] { return newSink(env, name, fn) }
	}
}

type sink[T any] struct {
	env  *Env
	name string
	fn   SinkFunc[T]
}

func newSink[T any](env *Env, name string, fn SinkFunc[T]) *sink[T] {
	return &sink[T]{env: env, name: name, fn: fn}
}

func (s *sink[T]) Push(m Message[T]) bool {
	env := s.env
	n := env.Count(m.tok) // before anything settles it
	if env.ctx.Err() != nil {
		env.Handled(s.name, OutcomeAbandoned, n, 0)
		return false
	}
	deadline := m.meta.Deadline
	r := retrier{env: env, stage: s.name, deadline: deadline, limit: env.p.retryAttempts}
	if n := int(m.meta.SinkAttempts); n > 0 && (r.limit == 0 || n < r.limit) {
		r.limit = n
	}
	var latency time.Duration
	var err error
	for {
		latency, err = s.attempt(m, deadline)
		if err == nil || env.ctx.Err() != nil {
			break
		}
		if err = finalize(err, deadline, env.p.clock.Now()); !retryable(err) {
			break
		}
		if err = r.wait(m.tok, err); err == nil {
			continue // waited; try again
		}
		break
	}
	var o Outcome
	switch {
	case err == nil:
		m.tok.Settle()
		o = OutcomeOK
	case env.ctx.Err() != nil:
		o = OutcomeAbandoned
	default:
		o = env.Fail(s.name, m.tok, err)
	}
	env.Handled(s.name, o, n, latency)
	return o != OutcomeAbandoned
}

// attempt calls fn once with the message's deadline on its context and
// reports how long it ran (zero unless sinks are timed).
func (s *sink[T]) attempt(m Message[T], deadline time.Time) (time.Duration, error) {
	env := s.env
	ctx := env.ctx
	var budget *dl.Ctx
	if !deadline.IsZero() {
		// A deadline nobody waits on costs no timer (internal/deadline).
		if budget = dl.New(ctx, deadline); budget != nil {
			ctx = budget
		}
	}
	var start time.Time
	if env.p.timedSinks {
		start = env.p.clock.Now()
	}
	err := s.call(ctx, m)
	var latency time.Duration
	if env.p.timedSinks {
		latency = env.p.clock.Now().Sub(start)
	}
	if budget != nil {
		budget.Cancel()
	}
	return latency, err
}

// finalize turns a context.DeadlineExceeded that came from the message's own
// deadline into a *DeadlineError.
func finalize(err error, deadline, now time.Time) error {
	if !deadline.IsZero() && errors.Is(err, context.DeadlineExceeded) && !now.Before(deadline) {
		var f Failure
		if !errors.As(err, &f) {
			return &DeadlineError{Err: err, Deadline: deadline}
		}
	}
	return err
}

// retryable reports whether a sink error is transient: not a Failure (a
// guard's final error, a panic, a decode or deadline error, an error marked
// Permanent), or a Failure of ClassError, which a guard without a retry
// policy returns for a transient error it tried once.
func retryable(err error) bool {
	var f Failure
	if errors.As(err, &f) {
		return f.FailureClass() == ClassError
	}
	return true
}

// call runs the user's function, turning a panic into a *PanicError.
func (s *sink[T]) call(ctx context.Context, m Message[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack(), At: s.env.p.clock.Now()}
		}
	}()
	return s.fn(ctx, m)
}

func (s *sink[T]) End() {}

// Fail gives up on the records of t, which stage could not handle because of
// err, and reports what became of them:
//
//   - OutcomeDeadLettered: each record was written to the DeadLetterer,
//     with a class, attempt count and failure times read from err (errors.As
//     Failure; otherwise ClassError, one attempt; a transient class becomes
//     ClassDeliveryLimit for a record on its last delivery), and
//     acknowledged; then t was settled once. Failed writes are retried with backoff. Records the
//     DeadLetterer released instead (ErrReleased) are not counted as dead
//     letters.
//   - OutcomeReleased: the DeadLetterer released every record (ErrReleased);
//     t was settled once, each record's fate FateReleased.
//   - OutcomeHeld: no DeadLetterer is configured; t is left unsettled and
//     the failure is logged.
//   - OutcomeAbandoned: the partition's context ended first; t is left
//     unsettled.
//
// A recovered panic is logged with its stack. The caller holds t once and
// hands that hold to Fail.
func (e *Env) Fail(stage string, t Token, err error) Outcome {
	p := e.p
	now := p.clock.Now()
	class, attempts, first, last := ClassError, 1, now, now
	var f Failure
	if errors.As(err, &f) {
		class, attempts = f.FailureClass(), f.FailureAttempts()
		first, last = f.FailureTimes()
		if first.IsZero() {
			first = now
		}
		if last.IsZero() {
			last = now
		}
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		p.log.Error("pipeline: recovered panic", "stage", stage, "partition", e.tp.String(), "first_record", firstRecord(t), "panic", pe.Value, "stack", string(pe.Stack))
	}
	if p.dl == nil {
		p.log.Error("pipeline: record held unsettled: no dead letterer configured", "stage", stage, "first_record", firstRecord(t), "records", countRecords(t), "class", class, "err", err)
		return OutcomeHeld
	}
	dead, atLimit, released := 0, 0, 0
	for r := range Records(t) {
		dl := DeadLetter{Record: r, Stage: stage, Err: err, Class: class, Attempts: attempts, FirstFailure: first, LastFailure: last}
		if r.DeliveryLimit > 0 && r.Deliveries >= r.DeliveryLimit && Transient(class) {
			dl.Class = ClassDeliveryLimit // its source will not deliver it again
		}
		switch e.deadLetter(dl) {
		case dlAbandoned:
			return OutcomeAbandoned
		case dlReleased:
			r.SetFate(FateReleased)
			released++
		default:
			if dl.Class == ClassDeliveryLimit {
				atLimit++
			} else {
				dead++
			}
		}
	}
	for _, h := range p.hooks.dead {
		if dead > 0 {
			h.OnDeadLetter(stage, class, dead)
		}
		if atLimit > 0 {
			h.OnDeadLetter(stage, ClassDeliveryLimit, atLimit)
		}
	}
	dead += atLimit
	t.Settle()
	if dead == 0 && released > 0 {
		return OutcomeReleased
	}
	return OutcomeDeadLettered
}

func firstRecord(t Token) string {
	for r := range Records(t) {
		return r.String()
	}
	return ""
}

// What became of a dead letter.
const (
	dlWritten   = iota // acknowledged
	dlReleased         // handed back to the source (ErrReleased)
	dlAbandoned        // the partition's context ended first
)

// deadLetter writes dl until it is acknowledged, released or the
// partition's context is done, and reports which.
func (e *Env) deadLetter(dl DeadLetter) int {
	p := e.p
	backoff := p.dlMin
	for attempt := 1; ; attempt++ {
		err := e.Catch(func() error { return p.dl.DeadLetter(e.ctx, dl) })
		switch {
		case err == nil:
			return dlWritten
		case errors.Is(err, ErrReleased) && dl.Record.Deliveries > 0:
			return dlReleased
		case e.ctx.Err() != nil:
			return dlAbandoned
		}
		for _, h := range p.hooks.deadErrs {
			h.OnDeadLetterError(dl.Stage, err)
		}
		wait := jitter(backoff)
		p.log.Warn("pipeline: dead-letter write failed; retrying", "stage", dl.Stage, "record", dl.Record.String(), "attempt", attempt, "retry_in", wait, "err", err)
		if !e.Sleep(wait) {
			return dlAbandoned
		}
		backoff = min(2*backoff, p.dlMax)
	}
}

// DeadlineError is a sink error that came from the message's deadline
// passing. It is a Failure of class ClassDeadline.
type DeadlineError struct {
	Err      error
	Deadline time.Time
}

func (e *DeadlineError) Error() string { return "deadline exceeded: " + e.Err.Error() }

// Unwrap returns the sink's error.
func (e *DeadlineError) Unwrap() error { return e.Err }

// FailureClass is ClassDeadline.
func (e *DeadlineError) FailureClass() string { return ClassDeadline }

// FailureAttempts is 1.
func (e *DeadlineError) FailureAttempts() int { return 1 }

// FailureTimes are both the deadline.
func (e *DeadlineError) FailureTimes() (first, last time.Time) { return e.Deadline, e.Deadline }
