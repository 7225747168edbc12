package pipeline_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

// releaser is a DeadLetterer that hands every record back (ErrReleased), as
// consumer.ShareDeadLetters does before a share record's last delivery.
type releaser struct{ calls int }

func (r *releaser) DeadLetter(context.Context, pipeline.DeadLetter) error {
	r.calls++
	return pipeline.ErrReleased
}

// TestRecordSinkAttempts: a record's SinkAttempts caps a plain sink's
// attempts below the pipeline's SinkAttempts (none here, or 10), and the
// lower of the two wins; the record is then given up as exhausted.
func TestRecordSinkAttempts(t *testing.T) {
	tests := []struct {
		name         string
		give         int32 // the record's SinkAttempts
		pipeline     int   // the pipeline's SinkAttempts
		wantAttempts int
	}{
		{"record's cap without a pipeline limit", 3, 0, 3},
		{"record's cap below the pipeline's", 2, 10, 2},
		{"pipeline's limit below the record's", 5, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := &pipelinetest.DeadLetters{}
			p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.SinkBackoff(time.Millisecond, 2*time.Millisecond), pipeline.SinkAttempts(tt.pipeline))
			calls := 0
			pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
				calls++
				return errors.New("connection refused")
			})
			s := pipelinetest.NewSettler()
			recs := s.Records(tp0, 0, 1, func(_ int, r *pipeline.Record) { r.SinkAttempts = tt.give })
			if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
				t.Fatal(err)
			}
			letters := dl.Letters()
			if calls != tt.wantAttempts || len(letters) != 1 || letters[0].Class != pipeline.ClassExhausted || letters[0].Attempts != tt.wantAttempts {
				t.Fatalf("%d calls, dead letters %+v; want %d calls and one exhausted letter", calls, letters, tt.wantAttempts)
			}
		})
	}
}

// TestReleasedIsNotDeadLettered: a record the DeadLetterer releases
// (ErrReleased) settles with fate FateReleased and outcome released; it is
// not counted as a dead letter, and the release is not retried as a failed
// write.
func TestReleasedIsNotDeadLettered(t *testing.T) {
	dl := &releaser{}
	rec := newRecorder()
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.Hooks(rec))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
		return pipeline.Permanent(errors.New("not now"))
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 1, func(_ int, r *pipeline.Record) { r.Deliveries = 1 })
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
		t.Fatal(err)
	}
	if !s.IsSettled(recs[0]) || recs[0].Fate() != pipeline.FateReleased {
		t.Fatalf("settled %v, fate %d; want settled, released", s.IsSettled(recs[0]), recs[0].Fate())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if dl.calls != 1 || rec.dlErrs != 0 || len(rec.dead) != 0 || rec.handled["save/released"] != 1 || rec.handled["save/dead_lettered"] != 0 {
		t.Fatalf("%d dead-letter calls, %d write errors, dead letters %v, outcomes %v; want 1 call, released once, nothing dead-lettered",
			dl.calls, rec.dlErrs, rec.dead, rec.handled)
	}
}

// TestReleasedOnlyIfRedeliverable: a DeadLetterer that answers ErrReleased
// for a record its source cannot deliver again (a consumer group's,
// Deliveries 0) has failed the write: the record is not settled (its
// offset not committed past) and the write is retried until the partition
// is cancelled.
func TestReleasedOnlyIfRedeliverable(t *testing.T) {
	rec := newRecorder()
	thrice := make(chan struct{})
	var tries atomic.Int32
	dl := &pipelinetest.DeadLetters{Fail: func(context.Context, pipeline.DeadLetter) error {
		if tries.Add(1) == 3 {
			close(thrice)
		}
		return pipeline.ErrReleased
	}}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.Hooks(rec), pipeline.DeadLetterBackoff(time.Millisecond, 2*time.Millisecond))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
		return pipeline.Permanent(errors.New("not now"))
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pipelinetest.Feed(ctx, p, tp0, recs, 0) }()
	select {
	case <-thrice:
	case <-time.After(10 * time.Second):
	}
	cancel()
	<-done
	if dl.Tries() < 3 || s.IsSettled(recs[0]) || recs[0].Fate() == pipeline.FateReleased {
		t.Fatalf("%d tries, settled %v, fate %d; want the write retried and the record neither settled nor released", dl.Tries(), s.IsSettled(recs[0]), recs[0].Fate())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.dlErrs < 2 || rec.handled["save/released"] != 0 {
		t.Fatalf("%d write errors, outcomes %v; want failed writes and no release", rec.dlErrs, rec.handled)
	}
}

// TestDeliveryLimitClass: a transient failure of a record on its last
// delivery (Deliveries == DeliveryLimit) is dead-lettered, and counted, as
// delivery-limit; a permanent one keeps its class.
func TestDeliveryLimitClass(t *testing.T) {
	for _, tt := range []struct {
		name string
		give error
		want string
	}{
		{"transient on the last delivery", &pipeline.FailureError{Class: pipeline.ClassExhausted, Attempts: 3, Err: errors.New("busy")}, pipeline.ClassDeliveryLimit},
		{"permanent on the last delivery", pipeline.Permanent(errors.New("bad")), pipeline.ClassPermanent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dl := &pipelinetest.DeadLetters{}
			rec := newRecorder()
			p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.Hooks(rec))
			pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error { return tt.give })
			s := pipelinetest.NewSettler()
			recs := s.Records(tp0, 0, 1, func(_ int, r *pipeline.Record) { r.Deliveries, r.DeliveryLimit = 3, 3 })
			if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
				t.Fatal(err)
			}
			letters := dl.Letters()
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(letters) != 1 || letters[0].Class != tt.want || rec.dead["save/"+tt.want] != 1 || len(rec.dead) != 1 {
				t.Fatalf("dead letters %+v, hook %v; want one of class %s, counted so", letters, rec.dead, tt.want)
			}
		})
	}
}
