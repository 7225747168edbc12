package pipeline

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

var (
	// ErrBuild is matched (errors.Is) by every BuildError: the pipeline's
	// graph was wired wrongly. A bad option is a *sluice.ConfigError
	// instead (errors.Is sluice.ErrConfig).
	ErrBuild = errors.New("invalid pipeline")
	// ErrNoSource is returned by OpenPartition for a topic that has no Source.
	ErrNoSource = errors.New("no source for topic")
)

// BuildError is a mistake in how a pipeline's graph was wired, found while it
// was built: a stream consumed twice or never, an empty or duplicate name, a
// stage given a nil function or a bad size, a topic with two sources. Stage
// names the stage, sink or source at fault. Options are not wiring: a bad
// option is a *sluice.ConfigError, like every constructor's in Sluice.
type BuildError struct {
	Stage string
	Err   error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("pipeline: %s: %v", e.Stage, e.Err)
}

// Unwrap returns the underlying reason.
func (e *BuildError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBuild.
func (e *BuildError) Is(target error) bool { return target == ErrBuild }

// PanicError is a panic recovered from user code (a stage func, a sink, a
// codec, a guarded sink of package handlers). It is a Failure of class
// ClassPanic and matches ErrPanic; the stack is logged when the record is
// dead-lettered.
type PanicError struct {
	// Value is what the code panicked with.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
	// At is when the panic was recovered.
	At time.Time
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// FailureClass is ClassPanic.
func (e *PanicError) FailureClass() string { return ClassPanic }

// FailureAttempts is 1.
func (e *PanicError) FailureAttempts() int { return 1 }

// FailureTimes are both when the panic was recovered.
func (e *PanicError) FailureTimes() (first, last time.Time) { return e.At, e.At }

// Is reports whether target is ErrPanic.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// DecodeError is a record whose value a codec could not decode. It is a
// Failure of class ClassDecode.
type DecodeError struct {
	Err error
	At  time.Time
}

func (e *DecodeError) Error() string { return "decode: " + e.Err.Error() }

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// FailureClass is ClassDecode.
func (e *DecodeError) FailureClass() string { return ClassDecode }

// FailureAttempts is 1.
func (e *DecodeError) FailureAttempts() int { return 1 }

// FailureTimes are both when decoding failed.
func (e *DecodeError) FailureTimes() (first, last time.Time) { return e.At, e.At }

var (
	_ Failure = (*PanicError)(nil)
	_ Failure = (*DecodeError)(nil)
)

// Catch calls f and turns a panic in it into a *PanicError stamped with the
// pipeline's clock. Stages call user functions through it.
func (e *Env) Catch(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack(), At: e.p.clock.Now()}
		}
	}()
	return f()
}

// ErrPermanent is matched (errors.Is) by errors marked with Permanent.
var ErrPermanent = errors.New("pipeline: permanent error")

// Permanent marks err as permanent: retrying cannot help (bad input, a
// record its destination refuses). It is a Failure of class
// ClassPermanent, so guards do not retry it and the pipeline dead-letters
// the record with that class. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// FailureClass is ClassPermanent.
func (e *permanentError) FailureClass() string { return ClassPermanent }

// FailureAttempts is 1.
func (e *permanentError) FailureAttempts() int { return 1 }

// FailureTimes are unknown: the pipeline uses the time it gave up.
func (e *permanentError) FailureTimes() (first, last time.Time) { return time.Time{}, time.Time{} }
