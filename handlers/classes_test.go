package handlers_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

var _ pipeline.Failure = (*handlers.FailureError)(nil)

// TestClassStringsMatchPipeline pins the failure classes to the pipeline's:
// they travel in dead-letter headers, so a drift would mislabel dead letters.
func TestClassStringsMatchPipeline(t *testing.T) {
	tests := []struct {
		give string
		want string
		lit  string
	}{
		{handlers.ClassDecode, pipeline.ClassDecode, "decode"},
		{handlers.ClassPanic, pipeline.ClassPanic, "panic"},
		{handlers.ClassPermanent, pipeline.ClassPermanent, "permanent"},
		{handlers.ClassExhausted, pipeline.ClassExhausted, "exhausted"},
		{handlers.ClassBudget, pipeline.ClassBudget, "budget"},
		{handlers.ClassDeadline, pipeline.ClassDeadline, "deadline"},
		{handlers.ClassError, pipeline.ClassError, "error"},
	}
	for _, tt := range tests {
		if tt.give != tt.want || tt.give != tt.lit {
			t.Errorf("class %q: pipeline has %q, pinned %q", tt.give, tt.want, tt.lit)
		}
	}
}

func TestFailureErrorProtocol(t *testing.T) {
	first, last := epoch, epoch.Add(time.Second)
	cause := errors.New("boom")
	var err error = &handlers.FailureError{Class: handlers.ClassExhausted, Attempts: 3, First: first, Last: last, Err: cause}
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
	if !errors.Is(err, handlers.ErrExhausted) || !errors.Is(err, cause) || errors.Is(err, handlers.ErrDeadline) {
		t.Error("errors.Is does not tie the error to its class sentinel and cause only")
	}
	if got, want := err.Error(), "exhausted after 3 attempts: boom"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}
