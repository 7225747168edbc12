package handlers_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// TestFailureErrorProtocol: the final error of a guarded sink is a
// pipeline.Failure and matches the sentinel of its class and its cause.
func TestFailureErrorProtocol(t *testing.T) {
	first, last := epoch, epoch.Add(time.Second)
	cause := errors.New("boom")
	var err error = &pipeline.FailureError{Class: pipeline.ClassExhausted, Attempts: 3, First: first, Last: last, Err: cause}
	var f pipeline.Failure
	if !errors.As(err, &f) {
		t.Fatal("FailureError does not implement pipeline.Failure")
	}
	if f.FailureClass() != "exhausted" || f.FailureAttempts() != 3 {
		t.Errorf("class, attempts = %q, %d; want exhausted, 3", f.FailureClass(), f.FailureAttempts())
	}
	if a, b := f.FailureTimes(); !a.Equal(first) || !b.Equal(last) {
		t.Errorf("times = %v, %v; want %v, %v", a, b, first, last)
	}
	if !errors.Is(err, pipeline.ErrExhausted) || !errors.Is(err, cause) || errors.Is(err, pipeline.ErrDeadline) {
		t.Error("errors.Is does not tie the error to its class sentinel and cause only")
	}
	if got, want := err.Error(), "exhausted after 3 attempts: boom"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}
