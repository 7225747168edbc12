// Package sluice holds the few types that every other package of Sluice
// shares: the configuration error that every constructor returns, the clock
// that tests replace, and the Kafka connection settings that the consumer,
// the dead-letter publisher and the Kafka sink read. It imports nothing of
// Sluice; every package may import it.
//
// The user's API lives in the packages: consumer (the Kafka side), pipeline
// and stages (the graph), handlers (guarded sinks), backpressure
// (concurrency limiters), dlq (dead letters), sinks/kafka (Kafka as a sink),
// metrics, health, tracing and sluicefx (an fx module).
//
// # Conventions
//
// Options are plain nouns named after what they set (consumer.Group,
// handlers.Retry, pipeline.Clock), never With*; every constructor checks
// its options and returns a *ConfigError naming the package, the option and
// the field at fault. Hooks are values that implement one or more small
// Hook* interfaces of a package; an option that takes hooks rejects a value
// implementing none.
package sluice

import (
	"errors"
	"fmt"
	"time"
)

// ErrConfig is matched (errors.Is) by every *ConfigError: a constructor was
// given options it cannot work with. Nothing was started.
var ErrConfig = errors.New("sluice: invalid configuration")

// ConfigError is the one shape of a configuration mistake, in every package.
type ConfigError struct {
	// Package is the package whose constructor refused, such as "consumer".
	Package string
	// Option is the option or constructor argument at fault, as the user
	// wrote it, such as "MaxUnsettled" (for sluicefx, the Config field).
	Option string
	// Field is the part of the option at fault, if it has parts, such as
	// "High.Records"; empty otherwise.
	Field string
	// Value is the refused value, if one is worth showing; nil otherwise.
	Value any
	// Reason says what is wrong, or what a valid value looks like.
	Reason string
	// Err is an underlying error, if any (a pipeline's build errors).
	Err error
}

// Error reads "package: Option.Field = value: reason".
func (e *ConfigError) Error() string {
	name := e.Option
	if e.Field != "" {
		name += "." + e.Field
	}
	s := e.Package + ": " + name
	if e.Value != nil {
		s += fmt.Sprintf(" = %v", e.Value)
	}
	return s + ": " + e.Reason
}

// Is reports whether target is ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

// Unwrap returns the underlying error, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// Clock tells time and makes timers. Windows, linger, backoffs, rate-limit
// waits, deadline budgets and the limiters read it, so that tests can drive
// them without real waits (pipeline/pipelinetest.Clock). The circuit breaker
// is the exception: gobreaker reads the wall clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d
	// has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	// C is the channel on which the time is sent when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }
