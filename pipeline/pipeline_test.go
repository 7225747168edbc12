package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	tp0     = pipeline.TopicPartition{Topic: "orders", Partition: 0}
	quiet   = slog.New(slog.NewTextHandler(io.Discard, nil))
	timeout = 10 * time.Second
)

type order struct {
	ID  int `json:"id"`
	Qty int `json:"qty"`
}

func ok[T any](context.Context, pipeline.Message[T]) error { return nil }

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		give  func(p *pipeline.Pipeline)
		wants []string
	}{
		{
			name:  "no source",
			give:  func(p *pipeline.Pipeline) {},
			wants: []string{"pipeline: Source: the pipeline has no source"},
		},
		{
			name: "stream consumed twice",
			give: func(p *pipeline.Pipeline) {
				s := pipeline.Source(p, "orders", pipeline.Bytes())
				pipeline.Sink(s, "a", ok[[]byte])
				pipeline.Sink(s, "b", ok[[]byte])
			},
			wants: []string{`pipeline: b: stream "orders" is already consumed by "a"; use stages.Duplicate`},
		},
		{
			name: "duplicate names",
			give: func(p *pipeline.Pipeline) {
				pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "orders", ok[[]byte])
			},
			wants: []string{"pipeline: orders: name already used"},
		},
		{
			name: "nil sink",
			give: func(p *pipeline.Pipeline) {
				pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "save", nil)
			},
			wants: []string{"pipeline: save: nil sink function"},
		},
		{
			name: "nil codec",
			give: func(p *pipeline.Pipeline) {
				pipeline.Sink(pipeline.Source[int](p, "orders", nil), "save", ok[int])
			},
			wants: []string{`pipeline: source "orders": nil codec`},
		},
		{
			name: "two sources for a topic",
			give: func(p *pipeline.Pipeline) {
				pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "a", ok[[]byte])
				pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "b", ok[string])
			},
			wants: []string{`pipeline: source "orders": topic already has a source`},
		},
		{
			name: "stream never consumed",
			give: func(p *pipeline.Pipeline) {
				pipeline.Source(p, "orders", pipeline.Bytes())
			},
			wants: []string{`pipeline: orders: output "orders" is never consumed`},
		},
		{
			name: "empty name",
			give: func(p *pipeline.Pipeline) {
				pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "", ok[[]byte])
			},
			wants: []string{`pipeline: stage after "orders": empty name`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline.New()
			tt.give(p)
			err := p.Err()
			if !errors.Is(err, pipeline.ErrBuild) {
				t.Fatalf("Err() = %v, want ErrBuild", err)
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Err() = %q\nwant it to contain %q", err, want)
				}
			}
			var be *pipeline.BuildError
			if !errors.As(err, &be) {
				t.Errorf("Err() = %v, want a *BuildError", err)
			}
			if _, err := p.OpenPartition(context.Background(), tp0); !errors.Is(err, pipeline.ErrBuild) {
				t.Errorf("OpenPartition: %v, want ErrBuild", err)
			}
		})
	}
}

// TestOptionErrors: a bad option is a *sluice.ConfigError naming it, reported
// by Err (with any build errors) and refused by OpenPartition.
func TestOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		give pipeline.Opt
		want sluice.ConfigError
	}{
		{"input buffer", pipeline.InputBuffer(0), sluice.ConfigError{Option: "InputBuffer", Value: 0}},
		{"dead-letter backoff max", pipeline.DeadLetterBackoff(time.Second, time.Millisecond), sluice.ConfigError{Option: "DeadLetterBackoff", Field: "max", Value: time.Millisecond}},
		{"sink backoff min", pipeline.SinkBackoff(0, time.Second), sluice.ConfigError{Option: "SinkBackoff", Field: "min", Value: time.Duration(0)}},
		{"sink attempts", pipeline.SinkAttempts(-1), sluice.ConfigError{Option: "SinkAttempts", Value: -1}},
		{"hook implementing nothing", pipeline.Hooks(42), sluice.ConfigError{Option: "Hooks", Value: "int"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline.New(tt.give)
			pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "a", ok[[]byte])
			err := p.Err()
			var ce *sluice.ConfigError
			if !errors.Is(err, sluice.ErrConfig) || !errors.As(err, &ce) {
				t.Fatalf("Err() = %v, want a *sluice.ConfigError", err)
			}
			if ce.Package != "pipeline" || ce.Option != tt.want.Option || ce.Field != tt.want.Field || ce.Value != tt.want.Value || ce.Reason == "" {
				t.Errorf("Err() = %#v, want package pipeline, option %q, field %q, value %v and a reason", ce, tt.want.Option, tt.want.Field, tt.want.Value)
			}
			if errors.Is(err, pipeline.ErrBuild) {
				t.Errorf("Err() = %v matches ErrBuild: the graph is well wired", err)
			}
			if _, err := p.OpenPartition(context.Background(), tp0); !errors.Is(err, sluice.ErrConfig) {
				t.Errorf("OpenPartition: %v, want ErrConfig", err)
			}
		})
	}
}

func TestBuildAfterOpenIsAnError(t *testing.T) {
	p := pipeline.New()
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "a", ok[[]byte])
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	part.Close()
	pipeline.Sink(pipeline.Source(p, "payments", pipeline.Bytes()), "b", ok[[]byte])
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "after the pipeline started running") {
		t.Fatalf("Err() = %v", err)
	}
}

func TestOpenPartitionWithoutSource(t *testing.T) {
	p := pipeline.New()
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "a", ok[[]byte])
	_, err := p.OpenPartition(context.Background(), pipeline.TopicPartition{Topic: "payments", Partition: 3})
	if !errors.Is(err, pipeline.ErrNoSource) || !strings.Contains(err.Error(), `payments/3`) {
		t.Fatalf("OpenPartition: %v, want ErrNoSource naming payments/3", err)
	}
}

// Handler is the shape of a guarded handler from package handlers: a named
// generic func type. Sink must accept it without conversion.
type Handler[M any] func(context.Context, M) error

func TestSinkAcceptsNamedHandlerType(t *testing.T) {
	p := pipeline.New()
	var h Handler[pipeline.Message[string]] = func(context.Context, pipeline.Message[string]) error { return nil }
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "a", h)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
}

// failure is a classified error, as package handlers makes them.
type failure struct {
	class    string
	attempts int
	at       time.Time
}

func (f failure) Error() string                         { return "gave up: " + f.class }
func (f failure) FailureClass() string                  { return f.class }
func (f failure) FailureAttempts() int                  { return f.attempts }
func (f failure) FailureTimes() (first, last time.Time) { return f.at, f.at.Add(time.Second) }

// recorder is a hook that counts.
type recorder struct {
	mu      sync.Mutex
	handled map[string]int // "stage/outcome" -> records
	dead    map[string]int // "stage/class" -> records
	dlErrs  int
	retries int
}

func newRecorder() *recorder { return &recorder{handled: map[string]int{}, dead: map[string]int{}} }

func (r *recorder) OnHandled(stage string, o pipeline.Outcome, n int, _ time.Duration) {
	r.mu.Lock()
	r.handled[stage+"/"+o.String()] += n
	r.mu.Unlock()
}

func (r *recorder) OnDeadLetter(stage, class string, n int) {
	r.mu.Lock()
	r.dead[stage+"/"+class] += n
	r.mu.Unlock()
}

func (r *recorder) OnSinkRetry(string, int, error) {
	r.mu.Lock()
	r.retries++
	r.mu.Unlock()
}

// failTimes returns a sink that fails n times with err, then succeeds.
func failTimes(n int, err error) func(context.Context, pipeline.Message[string]) error {
	var calls atomic.Int32
	return func(context.Context, pipeline.Message[string]) error {
		if int(calls.Add(1)) <= n {
			return err
		}
		return nil
	}
}

// countIs reports whether got is want, or more than one for want -1.
func countIs(got, want int) bool {
	if want == -1 {
		return got > 1
	}
	return got == want
}

func (r *recorder) OnDeadLetterError(string, error) {
	r.mu.Lock()
	r.dlErrs++
	r.mu.Unlock()
}

var (
	_ pipeline.HookHandled         = (*recorder)(nil)
	_ pipeline.HookDeadLetter      = (*recorder)(nil)
	_ pipeline.HookDeadLetterError = (*recorder)(nil)
	_ pipeline.HookSinkRetry       = (*recorder)(nil)
)

func TestSinkOutcomes(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name         string
		give         func(ctx context.Context, m pipeline.Message[string]) error
		deadline     time.Duration // record deadline from now; 0 for none
		wantSettled  bool
		wantClass    string // dead letter class; "" for no dead letter
		wantAttempts int    // -1: more than one
		wantOutcome  string
		opts         []pipeline.Opt
		wantRetries  int // -1: more than one
	}{
		{
			name:        "nil settles",
			give:        func(context.Context, pipeline.Message[string]) error { return nil },
			wantSettled: true, wantOutcome: "ok",
		},
		{
			name: "permanent error dead-letters at once",
			give: func(context.Context, pipeline.Message[string]) error {
				return pipeline.Permanent(errors.New("bad order"))
			},
			wantSettled: true, wantClass: pipeline.ClassPermanent, wantAttempts: 1, wantOutcome: "dead_lettered",
		},
		{
			name:        "transient error is retried until the sink recovers",
			give:        failTimes(3, errors.New("connection refused")),
			opts:        []pipeline.Opt{pipeline.SinkBackoff(time.Millisecond, 2*time.Millisecond)},
			wantSettled: true, wantOutcome: "ok", wantRetries: 3,
		},
		{
			name:        "a guard's error of class error is retried too",
			give:        failTimes(2, failure{pipeline.ClassError, 1, at}),
			opts:        []pipeline.Opt{pipeline.SinkBackoff(time.Millisecond, 2*time.Millisecond)},
			wantSettled: true, wantOutcome: "ok", wantRetries: 2,
		},
		{
			name:        "transient errors up to the deadline dead-letter as deadline",
			give:        func(context.Context, pipeline.Message[string]) error { return errors.New("connection refused") },
			opts:        []pipeline.Opt{pipeline.SinkBackoff(time.Millisecond, 2*time.Millisecond)},
			deadline:    100 * time.Millisecond,
			wantSettled: true, wantClass: pipeline.ClassDeadline, wantAttempts: -1, wantOutcome: "dead_lettered", wantRetries: -1,
		},
		{
			name:        "SinkAttempts dead-letters as exhausted",
			give:        func(context.Context, pipeline.Message[string]) error { return errors.New("connection refused") },
			opts:        []pipeline.Opt{pipeline.SinkBackoff(time.Millisecond, 2*time.Millisecond), pipeline.SinkAttempts(3)},
			wantSettled: true, wantClass: pipeline.ClassExhausted, wantAttempts: 3, wantOutcome: "dead_lettered", wantRetries: 2,
		},
		{
			name: "failure error carries its class and attempts",
			give: func(context.Context, pipeline.Message[string]) error {
				return fmt.Errorf("ship: %w", failure{pipeline.ClassExhausted, 5, at})
			},
			wantSettled: true, wantClass: pipeline.ClassExhausted, wantAttempts: 5, wantOutcome: "dead_lettered",
		},
		{
			name:        "panic dead-letters as panic",
			give:        func(context.Context, pipeline.Message[string]) error { panic("kaboom") },
			wantSettled: true, wantClass: pipeline.ClassPanic, wantAttempts: 1, wantOutcome: "dead_lettered",
		},
		{
			name: "deadline passed dead-letters as deadline",
			give: func(ctx context.Context, _ pipeline.Message[string]) error {
				<-ctx.Done()
				return ctx.Err()
			},
			deadline:    time.Millisecond,
			wantSettled: true, wantClass: pipeline.ClassDeadline, wantAttempts: 1, wantOutcome: "dead_lettered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := &pipelinetest.DeadLetters{}
			rec := newRecorder()
			p := pipeline.New(append([]pipeline.Opt{pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.Hooks(rec)}, tt.opts...)...)
			pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", tt.give)
			s := pipelinetest.NewSettler()
			recs := s.Records(tp0, 0, 1, func(_ int, r *pipeline.Record) {
				r.Value = []byte("hello")
				if tt.deadline > 0 {
					r.Deadline = time.Now().Add(tt.deadline)
				}
			})
			if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
				t.Fatal(err)
			}
			if got := s.IsSettled(recs[0]); got != tt.wantSettled {
				t.Errorf("settled = %v, want %v", got, tt.wantSettled)
			}
			letters := dl.Letters()
			if tt.wantClass == "" {
				if len(letters) != 0 {
					t.Errorf("dead letters = %v, want none", letters)
				}
			} else {
				if len(letters) != 1 {
					t.Fatalf("dead letters = %v, want 1", letters)
				}
				got := letters[0]
				if got.Class != tt.wantClass || !countIs(got.Attempts, tt.wantAttempts) || got.Stage != "save" || got.Record != recs[0] || got.Err == nil {
					t.Errorf("dead letter = %+v, want class %s, %d attempts, stage save", got, tt.wantClass, tt.wantAttempts)
				}
				if rec.dead["save/"+tt.wantClass] != 1 {
					t.Errorf("dead-letter hook = %v", rec.dead)
				}
			}
			if rec.handled["save/"+tt.wantOutcome] != 1 {
				t.Errorf("handled hook = %v, want save/%s", rec.handled, tt.wantOutcome)
			}
			if !countIs(rec.retries, tt.wantRetries) {
				t.Errorf("retry hook told %d times, want %d (-1: more than one)", rec.retries, tt.wantRetries)
			}
		})
	}
}

func TestFailureTimesReachDeadLetter(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
		return failure{pipeline.ClassPermanent, 2, at}
	})
	s := pipelinetest.NewSettler()
	if err := pipelinetest.Feed(context.Background(), p, tp0, s.Records(tp0, 0, 1, nil), 0); err != nil {
		t.Fatal(err)
	}
	got := dl.Letters()[0]
	if !got.FirstFailure.Equal(at) || !got.LastFailure.Equal(at.Add(time.Second)) {
		t.Errorf("failure times = %v, %v", got.FirstFailure, got.LastFailure)
	}
}

func TestWithoutDeadLettererFailedRecordIsHeld(t *testing.T) {
	rec := newRecorder()
	p := pipeline.New(pipeline.Logger(quiet), pipeline.Hooks(rec))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(_ context.Context, m pipeline.Message[string]) error {
		if m.Offset() == 1 {
			return pipeline.Permanent(errors.New("boom"))
		}
		return nil
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 4, nil)
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.Watermark(tp0); got != 1 {
		t.Errorf("watermark = %d, want 1 (stopped at the held record)", got)
	}
	if s.Count() != 3 || s.IsSettled(recs[1]) {
		t.Errorf("settled %d records, record 1 settled = %v; want 3 and false", s.Count(), s.IsSettled(recs[1]))
	}
	if rec.handled["save/held"] != 1 || rec.handled["save/ok"] != 3 {
		t.Errorf("handled hook = %v", rec.handled)
	}
}

func TestDecodeErrorIsDeadLetteredAndPartitionGoesOn(t *testing.T) {
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	var mu sync.Mutex
	var got []int
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.JSON[order]()), "save", func(_ context.Context, m pipeline.Message[order]) error {
		mu.Lock()
		got = append(got, m.Value().ID)
		mu.Unlock()
		return nil
	})
	s := pipelinetest.NewSettler()
	values := []string{`{"id":1}`, `{"id":`, ``, `{"id":4}`}
	recs := s.Records(tp0, 0, len(values), func(i int, r *pipeline.Record) { r.Value = []byte(values[i]) })
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 4]" {
		t.Errorf("sink got %v, want [1 4]", got)
	}
	letters := dl.Letters()
	if len(letters) != 2 || letters[0].Record != recs[1] || letters[1].Record != recs[2] {
		t.Fatalf("dead letters = %v, want records 1 and 2", letters)
	}
	for _, l := range letters {
		var de *pipeline.DecodeError
		if l.Class != pipeline.ClassDecode || l.Stage != "orders" || !errors.As(l.Err, &de) {
			t.Errorf("dead letter = %+v, want class decode from stage orders", l)
		}
	}
	if s.Watermark(tp0) != 4 {
		t.Errorf("watermark = %d, want 4", s.Watermark(tp0))
	}
}

func TestCodecPanicIsDeadLettered(t *testing.T) {
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	codec := pipeline.DecodeFunc[int](func([]byte) (int, error) { panic("bad codec") })
	pipeline.Sink(pipeline.Source(p, "orders", codec), "save", ok[int])
	s := pipelinetest.NewSettler()
	if err := pipelinetest.Feed(context.Background(), p, tp0, s.Records(tp0, 0, 2, nil), 0); err != nil {
		t.Fatal(err)
	}
	letters := dl.Letters()
	if len(letters) != 2 || letters[0].Class != pipeline.ClassPanic {
		t.Fatalf("dead letters = %+v, want 2 of class panic", letters)
	}
	var pe *pipeline.PanicError
	if !errors.As(letters[0].Err, &pe) || pe.Value != "bad codec" || len(pe.Stack) == 0 {
		t.Errorf("err = %v, want a PanicError with a stack", letters[0].Err)
	}
}

func TestDeadLetterRetriedUntilAcknowledged(t *testing.T) {
	clock := pipelinetest.NewClock(time.Unix(0, 0))
	failures := 3
	var mu sync.Mutex
	dl := &pipelinetest.DeadLetters{Fail: func(context.Context, pipeline.DeadLetter) error {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return errors.New("dlq down")
		}
		return nil
	}}
	rec := newRecorder()
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.Clock(clock),
		pipeline.DeadLetterBackoff(time.Second, 2*time.Second), pipeline.Hooks(rec))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
		return pipeline.Permanent(errors.New("boom"))
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 1, nil)
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Handle(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if !clock.WaitTimers(1, timeout) {
			t.Fatal("no backoff timer")
		}
		if s.IsSettled(recs[0]) {
			t.Fatal("settled before the dead letter was acknowledged")
		}
		clock.Advance(2 * time.Second)
	}
	part.Close()
	if !s.IsSettled(recs[0]) || len(dl.Letters()) != 1 || dl.Tries() != 4 || rec.dlErrs != 3 {
		t.Errorf("settled %v, letters %d, tries %d, hook errors %d; want true, 1, 4, 3",
			s.IsSettled(recs[0]), len(dl.Letters()), dl.Tries(), rec.dlErrs)
	}
}

func TestCancelDuringDeadLetterLeavesRecordUnsettled(t *testing.T) {
	dl := &pipelinetest.DeadLetters{Fail: func(ctx context.Context, _ pipeline.DeadLetter) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(context.Context, pipeline.Message[string]) error {
		return pipeline.Permanent(errors.New("boom"))
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	part, err := p.OpenPartition(ctx, tp0)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Handle(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cancel()
	part.Close()
	if s.Count() != 0 {
		t.Errorf("%d records settled after cancel, want 0", s.Count())
	}
	goleak.VerifyNone(t)
}

func TestSinkContextCarriesDeadline(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	var mu sync.Mutex
	got := map[int64]string{}
	p := pipeline.New()
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "save", func(ctx context.Context, m pipeline.Message[[]byte]) error {
		d, has := ctx.Deadline()
		mu.Lock()
		got[m.Offset()] = fmt.Sprint(has, d.Equal(m.Deadline()))
		mu.Unlock()
		return nil
	})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 2, func(i int, r *pipeline.Record) {
		if i == 1 {
			r.Deadline = deadline
		}
	})
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
		t.Fatal(err)
	}
	if got[0] != "false true" || got[1] != "true true" {
		t.Errorf("deadlines seen = %v", got)
	}
}

func TestCancelStopsBlockedSinkAndLeavesRecordsUnsettled(t *testing.T) {
	started := make(chan struct{}, 1)
	p := pipeline.New(pipeline.Logger(quiet))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "save", func(ctx context.Context, _ pipeline.Message[[]byte]) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	})
	s := pipelinetest.NewSettler()
	ctx, cancel := context.WithCancel(context.Background())
	part, err := p.OpenPartition(ctx, tp0)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Handle(ctx, s.Records(tp0, 0, 100, nil)); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	part.Close()
	if err := part.Handle(context.Background(), s.Records(tp0, 100, 1, nil)); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Handle after Close = %v, want ErrClosed", err)
	}
	if s.Count() != 0 {
		t.Errorf("%d settled, want 0", s.Count())
	}
	goleak.VerifyNone(t)
}

func TestHandleBlocksWhenInputIsFullAndHonoursItsContext(t *testing.T) {
	release := make(chan struct{})
	p := pipeline.New(pipeline.InputBuffer(4))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.Bytes()), "save", func(context.Context, pipeline.Message[[]byte]) error {
		<-release
		return nil
	})
	s := pipelinetest.NewSettler()
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = part.Handle(ctx, s.Records(tp0, 0, 100, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Handle = %v, want it to block until its context ends", err)
	}
	close(release)
	part.Close()
}

func TestGroupSettlesMembersOnceAndYieldsTheirRecords(t *testing.T) {
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 3, func(i int, r *pipeline.Record) {
		r.Deadline = time.Unix(int64(100-i), 0)
		r.Timestamp = time.Unix(int64(i), 0)
	})
	var ms []pipeline.Message[int]
	for i, r := range recs {
		ms = append(ms, pipeline.NewMessage(i, r))
	}
	g := pipeline.Group("sum", ms)
	if g.Offset() != 2 || !g.Deadline().Equal(time.Unix(98, 0)) || !g.Timestamp().Equal(time.Unix(2, 0)) || g.Key() != nil {
		t.Errorf("group metadata: offset %d deadline %v timestamp %v", g.Offset(), g.Deadline(), g.Timestamp())
	}
	var got []int64
	for r := range pipeline.Records(g.Token()) {
		got = append(got, r.Offset)
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("Records = %v", got)
	}
	g.Hold(1)
	g.Settle()
	if s.Count() != 0 {
		t.Fatal("settled while a holder remains")
	}
	g.Settle()
	if s.Count() != 3 || len(s.Twice()) != 0 {
		t.Errorf("settled %d (twice: %v), want 3", s.Count(), s.Twice())
	}
}
