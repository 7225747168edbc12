package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime/debug"
	"time"

	dl "github.com/sluice-go/sluice/internal/deadline"
)

// Sink ends a stream: fn is called for each message and its error decides
// the message's fate. nil settles it. If the partition's context is done
// (revoke, loss, shutdown) the message is abandoned, unsettled. Any other
// error dead-letters every record of the message with a class read from the
// error (errors.As Failure; otherwise ClassError after one attempt; a
// context.DeadlineExceeded past the message's deadline is ClassDeadline), and
// settles it once the dead letters are acknowledged; without a DeadLetterer
// the message is held unsettled. A panic in fn is recovered and dead-lettered
// as ClassPanic, with its stack in the log.
//
// fn is called with a context that carries the message's deadline, if it has
// one, and is cancelled when the partition is. Calls are sequential unless the
// stream comes from a fan-out, whose workers call fn concurrently.
//
// fn has an unnamed function type so that a guarded handler from package
// handlers (a named func type of the same shape) is accepted as it is.
func Sink[T any](in *Stream[T], name string, fn func(context.Context, Message[T]) error) {
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
	fn   func(context.Context, Message[T]) error
}

func newSink[T any](env *Env, name string, fn func(context.Context, Message[T]) error) *sink[T] {
	return &sink[T]{env: env, name: name, fn: fn}
}

func (s *sink[T]) Push(m Message[T]) bool {
	env := s.env
	ctx := env.ctx
	n := env.Count(m.tok) // before anything settles it
	if ctx.Err() != nil {
		env.Handled(s.name, OutcomeAbandoned, n, 0)
		return false
	}
	var cancel context.CancelFunc
	deadline := m.meta.Deadline
	if !deadline.IsZero() {
		// A deadline nobody waits on costs no timer (internal/deadline).
		ctx, cancel = dl.With(ctx, deadline)
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
	if cancel != nil {
		cancel()
	}
	var o Outcome
	switch {
	case err == nil:
		m.tok.Settle()
		o = OutcomeOK
	case env.ctx.Err() != nil:
		o = OutcomeAbandoned
	default:
		if !deadline.IsZero() && errors.Is(err, context.DeadlineExceeded) && !env.p.clock.Now().Before(deadline) {
			var f Failure
			if !errors.As(err, &f) {
				err = &DeadlineError{Err: err, Deadline: deadline}
			}
		}
		o = env.Fail(s.name, m.tok, err)
	}
	env.Handled(s.name, o, n, latency)
	return o != OutcomeAbandoned
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
//     Failure; otherwise ClassError, one attempt), and acknowledged; then t
//     was settled once. Failed writes are retried with backoff.
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
	n := 0
	for r := range Records(t) {
		dl := DeadLetter{Record: r, Stage: stage, Err: err, Class: class, Attempts: attempts, FirstFailure: first, LastFailure: last}
		if !e.deadLetter(dl) {
			return OutcomeAbandoned
		}
		n++
	}
	for _, h := range p.hooks.dead {
		h.OnDeadLetter(stage, class, n)
	}
	t.Settle()
	return OutcomeDeadLettered
}

func firstRecord(t Token) string {
	for r := range Records(t) {
		return r.String()
	}
	return ""
}

// deadLetter writes dl until it is acknowledged or the partition's context is
// done, and reports whether it was acknowledged.
func (e *Env) deadLetter(dl DeadLetter) bool {
	p := e.p
	backoff := p.dlMin
	for attempt := 1; ; attempt++ {
		err := e.Catch(func() error { return p.dl.DeadLetter(e.ctx, dl) })
		if err == nil {
			return true
		}
		if e.ctx.Err() != nil {
			return false
		}
		for _, h := range p.hooks.deadErrs {
			h.OnDeadLetterError(dl.Stage, err)
		}
		// Full jitter in [backoff/2, backoff): spread retries of many
		// partitions while never waiting much less than planned.
		wait := backoff/2 + rand.N(backoff/2+1)
		p.log.Warn("pipeline: dead-letter write failed; retrying", "stage", dl.Stage, "record", dl.Record.String(), "attempt", attempt, "retry_in", wait, "err", err)
		t := p.clock.NewTimer(wait)
		select {
		case <-t.C():
		case <-e.ctx.Done():
			t.Stop()
			return false
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
