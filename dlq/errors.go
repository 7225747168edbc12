package dlq

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrNoProvenance: a record has no provenance headers (no HeaderTopic),
	// so it did not come from a Publisher, or they were stripped.
	ErrNoProvenance = errors.New("no provenance headers")
	// ErrBadHeader: a provenance header is present but malformed.
	ErrBadHeader = errors.New("malformed provenance header")
	// ErrUnknownTopic: a topic does not exist on the cluster.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrUnreachable: no broker answered.
	ErrUnreachable = errors.New("brokers unreachable")
	// ErrBadFilter: a filter could not be parsed or is contradictory.
	ErrBadFilter = errors.New("bad filter")
	// ErrNoTarget: replay found a record without HeaderTopic and was not
	// given a target topic.
	ErrNoTarget = errors.New("no replay target")
	// ErrStalled: the brokers stopped answering (or acknowledging) in time.
	ErrStalled = errors.New("brokers stalled")
)

// StallError says what did not happen within After.
type StallError struct {
	What  string
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s (waited %v; is the broker up?)", e.What, e.After)
}

// Is ties StallError to ErrStalled.
func (e *StallError) Is(target error) bool { return target == ErrStalled }

// BadHeaderError says which provenance header is malformed.
type BadHeaderError struct {
	Key   string
	Value string
	Err   error
}

func (e *BadHeaderError) Error() string {
	return fmt.Sprintf("header %s=%q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns the parse error.
func (e *BadHeaderError) Unwrap() error { return e.Err }

// Is ties BadHeaderError to ErrBadHeader.
func (e *BadHeaderError) Is(target error) bool { return target == ErrBadHeader }

// TopicError names a topic that does not exist.
type TopicError struct {
	Topic string
}

func (e *TopicError) Error() string {
	return fmt.Sprintf("topic %q does not exist", e.Topic)
}

// Is ties TopicError to ErrUnknownTopic.
func (e *TopicError) Is(target error) bool { return target == ErrUnknownTopic }

// UnreachableError names the brokers that could not be reached.
type UnreachableError struct {
	Brokers []string
	Err     error
	// Connected lists the brokers a TCP connection was made to, which then
	// did not answer within Timeout.
	Connected []string
	Timeout   time.Duration
}

func (e *UnreachableError) Error() string {
	if len(e.Connected) > 0 {
		return fmt.Sprintf("cannot reach brokers %s: connected to %s, but no answer within %v (is it a Kafka listener? does it expect TLS or SASL?)",
			strings.Join(e.Brokers, ","), strings.Join(e.Connected, ","), e.Timeout)
	}
	return fmt.Sprintf("cannot reach brokers %s: %v", strings.Join(e.Brokers, ","), e.Err)
}

// Unwrap returns the dial or request error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is ties UnreachableError to ErrUnreachable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// FilterError names the filter that could not be parsed.
type FilterError struct {
	// Filter names the filter, as the CLI flag ("error", "offset-range").
	Filter string
	Value  string
	Err    error
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("bad --%s filter %q: %v", e.Filter, e.Value, e.Err)
}

// Unwrap returns the parse error.
func (e *FilterError) Unwrap() error { return e.Err }

// Is ties FilterError to ErrBadFilter.
func (e *FilterError) Is(target error) bool { return target == ErrBadFilter }
