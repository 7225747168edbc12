package stages_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	tp0     = pipeline.TopicPartition{Topic: "orders", Partition: 0}
	quiet   = slog.New(slog.NewTextHandler(io.Discard, nil))
	timeout = 10 * time.Second
)

// collect is a sink that keeps what it is given.
type collect[T any] struct {
	mu  sync.Mutex
	got []pipeline.Message[T]
}

func (c *collect[T]) sink(_ context.Context, m pipeline.Message[T]) error {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	return nil
}

func (c *collect[T]) values() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	var vs []T
	for _, m := range c.got {
		vs = append(vs, m.Value())
	}
	return vs
}

func (c *collect[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// numbers makes n records whose values are their offsets in decimal.
func numbers(s *pipelinetest.Settler, n int) []*pipeline.Record {
	return s.Records(tp0, 0, n, func(i int, r *pipeline.Record) { r.Value = []byte(strconv.Itoa(i)) })
}

var intCodec = pipeline.DecodeFunc[int](func(b []byte) (int, error) { return strconv.Atoi(string(b)) })

func feed(t *testing.T, p *pipeline.Pipeline, recs []*pipeline.Record) {
	t.Helper()
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 7); err != nil {
		t.Fatal(err)
	}
}

func TestMapFilterDecode(t *testing.T) {
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	raw := pipeline.Source(p, "orders", pipeline.Bytes())
	n := stages.Decode(raw, "decode", intCodec)
	even := stages.Filter(n, "even", func(v int) bool {
		if v == 6 {
			panic("six")
		}
		return v%2 == 0
	})
	sq := stages.Map(even, "square", func(v int) string { return strconv.Itoa(v * v) })
	checked := stages.TryMap(sq, "check", func(s string) (string, error) {
		if s == "16" {
			return "", errors.New("no sixteen")
		}
		return s, nil
	})
	var c collect[string]
	pipeline.Sink(checked, "save", c.sink)
	s := pipelinetest.NewSettler()
	recs := numbers(s, 10)
	recs[3].Value = []byte("three")
	feed(t, p, recs)

	if got := strings.Join(c.values(), " "); got != "0 4 64" {
		t.Errorf("sink got %q, want \"0 4 64\"", got)
	}
	var letters []string
	for _, l := range dl.Letters() {
		letters = append(letters, fmt.Sprintf("%d:%s:%s", l.Record.Offset, l.Stage, l.Class))
	}
	if got := strings.Join(letters, " "); got != "3:decode:decode 4:check:error 6:even:panic" {
		t.Errorf("dead letters = %s", got)
	}
	if s.Watermark(tp0) != 10 || len(s.Twice()) != 0 {
		t.Errorf("watermark %d twice %v, want 10 and none", s.Watermark(tp0), s.Twice())
	}
}

func TestStageBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		give func(src *pipeline.Stream[int])
		want string
	}{
		{"nil map", func(s *pipeline.Stream[int]) { sinkOK(stages.Map[int, int](s, "m", nil)) }, "pipeline: m: nil function"},
		{"nil filter", func(s *pipeline.Stream[int]) { sinkOK(stages.Filter(s, "f", nil)) }, "pipeline: f: nil function"},
		{"one branch", func(s *pipeline.Stream[int]) {
			for _, b := range stages.Duplicate(s, "d", 1) {
				sinkOK(b)
			}
		}, "pipeline: d: needs at least 2 branches, got 1"},
		{"zero buffer", func(s *pipeline.Stream[int]) {
			a, b := stages.Duplicate2(s, "d", stages.Buffer(0))
			sinkOK(a)
			sinkOK(b)
		}, "pipeline: d: Buffer must be at least 1"},
		{"no workers", func(s *pipeline.Stream[int]) { sinkOK(stages.FanOut(s, "f", 0)) }, "pipeline: f: needs at least 1 worker"},
		{"bad window", func(s *pipeline.Stream[int]) {
			sinkOK(stages.Window(s, "w", stages.Sliding(time.Second, 2*time.Second)))
		}, "pipeline: w: time window needs 0 < every <= size"},
		{"zero window", func(s *pipeline.Stream[int]) { sinkOK(stages.Window(s, "w", stages.WindowSpec{})) }, "pipeline: w: zero WindowSpec"},
		{"event-time count window", func(s *pipeline.Stream[int]) {
			sinkOK(stages.Window(s, "w", stages.TumblingCount(3), stages.EventTime(0)))
		}, "pipeline: w: EventTime applies to time windows"},
		{"bad batch", func(s *pipeline.Stream[int]) { sinkOK(stages.Batches(s, "b", 0, 0)) }, "pipeline: b: size must be at least 1"},
		{"window behind key-ordered fan-out", func(s *pipeline.Stream[int]) {
			sinkOK(stages.Window(stages.Map(stages.FanOut(s, "f", 4), "m", func(v int) int { return v }), "w", stages.TumblingCount(3)))
		}, `pipeline: w: holds messages, and sits downstream of key-ordered fan-out "f"`},
		{"batch behind key-ordered fan-out", func(s *pipeline.Stream[int]) {
			a, b := stages.Duplicate2(stages.FanOut(s, "f", 4), "d")
			sinkOK(a)
			sinkOK(stages.Batches(b, "b", 10, time.Second))
		}, `pipeline: b: holds messages, and sits downstream of key-ordered fan-out "f"`},
		{"late output unconsumed", func(s *pipeline.Stream[int]) {
			w, _ := stages.WindowWithLate(s, "w", stages.Tumbling(time.Second), stages.EventTime(0))
			sinkOK(w)
		}, `pipeline: w: output "w" (output 2) is never consumed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline.New()
			tt.give(pipeline.Source(p, "orders", intCodec))
			err := p.Err()
			if !errors.Is(err, pipeline.ErrBuild) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Err() = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

var sinks atomic.Int64

func sinkOK[T any](s *pipeline.Stream[T]) {
	pipeline.Sink(s, fmt.Sprint("sink", sinks.Add(1)), func(context.Context, pipeline.Message[T]) error { return nil })
}

func TestWindowBehindUnorderedFanOutIsAllowed(t *testing.T) {
	p := pipeline.New()
	sinkOK(stages.Window(stages.FanOut(pipeline.Source(p, "orders", intCodec), "f", 4, stages.Unordered()), "w", stages.TumblingCount(3)))
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestDuplicateEveryBranchGetsEveryMessage(t *testing.T) {
	p := pipeline.New()
	branches := stages.Duplicate(pipeline.Source(p, "orders", intCodec), "dup", 3)
	cs := make([]*collect[int], len(branches))
	for i, b := range branches {
		cs[i] = &collect[int]{}
		pipeline.Sink(b, fmt.Sprint("sink", i), cs[i].sink)
	}
	s := pipelinetest.NewSettler()
	var order []int64
	var mu sync.Mutex
	s.OnSettled = func(r *pipeline.Record) {
		mu.Lock()
		order = append(order, r.Offset)
		mu.Unlock()
	}
	feed(t, p, numbers(s, 50))
	for i, c := range cs {
		if got := c.values(); len(got) != 50 || !slices.IsSorted(got) {
			t.Errorf("branch %d got %v", i, got)
		}
	}
	if s.Count() != 50 || len(s.Twice()) != 0 {
		t.Errorf("settled %d (twice %v), want 50", s.Count(), s.Twice())
	}
}

func TestDuplicateSlowBranchBackpressures(t *testing.T) {
	const buf = 4
	release := make(chan struct{})
	p := pipeline.New(pipeline.InputBuffer(1))
	fast, slow := stages.Duplicate2(pipeline.Source(p, "orders", intCodec), "dup", stages.Buffer(buf))
	var c collect[int]
	pipeline.Sink(fast, "fast", c.sink)
	pipeline.Sink(slow, "slow", func(ctx context.Context, _ pipeline.Message[int]) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	s := pipelinetest.NewSettler()
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	recs := numbers(s, 100)
	// The slow branch holds at most buf messages (the one in its sink
	// included), and Push of the next waits for room after the fast branch
	// got it: the fast branch can never be more than buf+1 messages ahead.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := part.Handle(ctx, recs); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle = %v, want it to block", err)
	}
	if got := c.len(); got != buf+1 {
		t.Errorf("fast branch got %d messages while the slow one was stuck, want %d", got, buf+1)
	}
	close(release)
	part.Close()
	if got := s.Watermark(tp0); got < buf+1 {
		t.Errorf("watermark %d", got)
	}
}

func TestFanOutKeyOrderAndParallelism(t *testing.T) {
	const (
		workers = 8
		keys    = 20
		n       = 2000
	)
	p := pipeline.New()
	var (
		mu       sync.Mutex
		last     = map[string]int{}
		inFlight = map[string]bool{}
		bad      []string
		cur, top int
	)
	pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", intCodec), "workers", workers), "save",
		func(_ context.Context, m pipeline.Message[int]) error {
			k := string(m.Key())
			mu.Lock()
			if inFlight[k] {
				bad = append(bad, "two in flight for key "+k)
			}
			if prev, ok := last[k]; ok && prev >= m.Value() {
				bad = append(bad, fmt.Sprintf("key %s: %d after %d", k, m.Value(), prev))
			}
			inFlight[k], last[k] = true, m.Value()
			cur++
			top = max(top, cur)
			mu.Unlock()
			time.Sleep(time.Duration(m.Value()%7) * 20 * time.Microsecond) // the workload
			mu.Lock()
			inFlight[k] = false
			cur--
			mu.Unlock()
			return nil
		})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, n, func(i int, r *pipeline.Record) {
		r.Key = []byte(fmt.Sprint("k", (i*7919)%keys))
		r.Value = []byte(strconv.Itoa(i))
	})
	feed(t, p, recs)
	if len(bad) > 0 {
		t.Errorf("order broken: %v", bad[:min(5, len(bad))])
	}
	if top < 2 || top > workers {
		t.Errorf("at most %d sink calls at once, want 2..%d", top, workers)
	}
	if s.Watermark(tp0) != n || len(s.Twice()) != 0 {
		t.Errorf("watermark %d twice %v", s.Watermark(tp0), s.Twice())
	}
}

func TestFanOutHotKeyDoesNotIdleOtherWorkers(t *testing.T) {
	// Key "hot" has a message in flight that does not finish; every other
	// key must still reach the sink.
	release := make(chan struct{})
	p := pipeline.New()
	var c collect[int]
	pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", intCodec), "workers", 4), "save",
		func(ctx context.Context, m pipeline.Message[int]) error {
			if string(m.Key()) == "hot" {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return c.sink(ctx, m)
		})
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, 200, func(i int, r *pipeline.Record) {
		r.Key = []byte(fmt.Sprint("k", i))
		if i%2 == 0 {
			r.Key = []byte("hot")
		}
		r.Value = []byte(strconv.Itoa(i))
	})
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Handle(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if !s.WaitCount(100, timeout) {
		t.Fatalf("only %d settled while the hot key was stuck, want the 100 others", s.Count())
	}
	if s.Watermark(tp0) != 0 {
		t.Errorf("watermark %d, want 0 (offset 0 is stuck)", s.Watermark(tp0))
	}
	close(release)
	part.Close()
	if s.Watermark(tp0) != 200 {
		t.Errorf("watermark %d, want 200", s.Watermark(tp0))
	}
}

func TestFanOutUnorderedAndNilKeysUseAllWorkers(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []stages.FanOutOpt
		key  []byte
	}{
		{"unordered", []stages.FanOutOpt{stages.Unordered()}, []byte("same")},
		{"nil keys", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const workers = 5
			all := make(chan struct{})
			var arrived atomic.Int32
			p := pipeline.New()
			pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", intCodec), "workers", workers, tt.opts...), "save",
				func(ctx context.Context, m pipeline.Message[int]) error {
					if arrived.Add(1) == workers {
						close(all)
					}
					select { // every worker must be in here at once
					case <-all:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			s := pipelinetest.NewSettler()
			recs := s.Records(tp0, 0, workers, func(i int, r *pipeline.Record) {
				r.Key = tt.key
				r.Value = []byte(strconv.Itoa(i))
			})
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := pipelinetest.Feed(ctx, p, tp0, recs, 0); err != nil {
				t.Fatal(err)
			}
			if s.Count() != workers {
				t.Errorf("settled %d, want %d", s.Count(), workers)
			}
		})
	}
}

func TestFanOutBufferBoundsQueuedMessages(t *testing.T) {
	const buf = 10
	release := make(chan struct{})
	var calls atomic.Int32
	p := pipeline.New(pipeline.InputBuffer(1))
	pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", intCodec), "workers", 2, stages.Buffer(buf)), "save",
		func(ctx context.Context, _ pipeline.Message[int]) error {
			calls.Add(1)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	s := pipelinetest.NewSettler()
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	recs := s.Records(tp0, 0, 100, func(i int, r *pipeline.Record) { r.Value = []byte("1") })
	if err := part.Handle(ctx, recs); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle = %v, want it to block", err)
	}
	close(release)
	part.Close()
	// Close finishes exactly what Handle handed over: 2 records in the
	// workers, buf queued, and 1 that the source goroutine is pushing (the
	// input buffer of 1 record is an unbuffered hand-off).
	if got, want := s.Count(), 2+buf+1; got != want {
		t.Errorf("%d records got in while the sink was stuck, want %d", got, want)
	}
}

func TestCancelStopsEveryStage(t *testing.T) {
	// Every kind of stage, holding or blocked, when the partition is
	// cancelled: Close returns promptly, nothing settles, no goroutine stays.
	clock := pipelinetest.NewClock(time.Unix(0, 0))
	p := pipeline.New(pipeline.Clock(clock), pipeline.Logger(quiet), pipeline.InputBuffer(16))
	started := make(chan struct{}, 100)
	block := func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	bs := stages.Duplicate(pipeline.Source(p, "orders", intCodec), "dup", 4, stages.Buffer(8))
	pipeline.Sink(stages.FanOut(bs[0], "keyed", 4, stages.Buffer(16)), "a", func(ctx context.Context, _ pipeline.Message[int]) error { return block(ctx) })
	pipeline.Sink(stages.Window(bs[1], "hour", stages.Tumbling(time.Hour)), "b", noop[stages.Pane[int]])
	pipeline.Sink(stages.Batches(bs[2], "batch", 1000, time.Hour), "c", noop[stages.Batch[int]])
	w := stages.Window(bs[3], "sliding", stages.SlidingCount(4, 1))
	pipeline.Sink(stages.FanOut(w, "unordered", 4, stages.Unordered()), "d", func(ctx context.Context, _ pipeline.Message[stages.Pane[int]]) error { return block(ctx) })
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	s := pipelinetest.NewSettler()
	ctx, cancel := context.WithCancel(context.Background())
	part, err := p.OpenPartition(ctx, tp0)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan error, 1)
	go func() {
		handled <- part.Handle(ctx, s.Records(tp0, 0, 1000, func(i int, r *pipeline.Record) { r.Key, r.Value = []byte{byte(i % 7)}, []byte("1") }))
	}()
	for range 8 { // both fan-outs have all their workers blocked
		<-started
	}
	cancel()
	if err := <-handled; !errors.Is(err, context.Canceled) {
		t.Errorf("Handle = %v, want context.Canceled", err)
	}
	closed := make(chan struct{})
	go func() {
		part.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(timeout):
		t.Fatal("Close did not return after cancel")
	}
	if s.Count() != 0 {
		t.Errorf("%d records settled, want 0", s.Count())
	}
	goleak.VerifyNone(t)
}

func TestFanOutOneWorkerIsPartitionOrder(t *testing.T) {
	p := pipeline.New()
	var c collect[int]
	pipeline.Sink(stages.FanOut(pipeline.Source(p, "orders", intCodec), "one", 1), "save", c.sink)
	s := pipelinetest.NewSettler()
	feed(t, p, s.Records(tp0, 0, 500, func(i int, r *pipeline.Record) {
		r.Key = []byte{byte(i % 3)}
		r.Value = []byte(strconv.Itoa(i))
	}))
	if got := c.values(); len(got) != 500 || !slices.IsSorted(got) {
		t.Errorf("sink saw %d records, sorted %v; want 500 in offset order", len(got), slices.IsSorted(got))
	}
	// No key leases with one worker: a window may follow.
	p = pipeline.New()
	sinkOK(stages.Window(stages.FanOut(pipeline.Source(p, "orders", intCodec), "one", 1), "w", stages.TumblingCount(2)))
	if err := p.Err(); err != nil {
		t.Error(err)
	}
}
