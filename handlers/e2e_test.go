package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

// event is the record value of the end-to-end tests.
type event struct {
	ID   int    `json:"id"`
	Kind string `json:"kind"` // "", "panic" or "reject"
}

func produceEvents(t *testing.T, c *kafkatest.Cluster, topic string, from, n, keys int, kind func(id int) string) {
	t.Helper()
	c.ProduceN(t, topic, n, func(i int) *kgo.Record {
		id := from + i
		v, _ := json.Marshal(event{ID: id, Kind: kind(id)})
		if kind(id) == "undecodable" {
			v = []byte("{broken")
		}
		return &kgo.Record{Key: fmt.Appendf(nil, "k%d", id%keys), Value: v}
	})
}

// consumerWatch observes the consumer: fetched records, pauses, commits.
type consumerWatch struct {
	fetched atomic.Int64
	paused  atomic.Int64 // pauses so far

	mu        sync.Mutex
	committed map[int32]int64 // last committed offset by partition
	isPaused  map[int32]bool
}

func (w *consumerWatch) OnFetched(_ pipeline.TopicPartition, records int, _ int64) {
	w.fetched.Add(int64(records))
}

func (w *consumerWatch) OnPaused(tp pipeline.TopicPartition, paused bool) {
	if paused {
		w.paused.Add(1)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isPaused == nil {
		w.isPaused = map[int32]bool{}
	}
	w.isPaused[tp.Partition] = paused
}

// AllPaused reports whether n partitions are paused now.
func (w *consumerWatch) AllPaused(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	for _, p := range w.isPaused {
		if p {
			k++
		}
	}
	return k == n
}

func (w *consumerWatch) OnCommitted(tp pipeline.TopicPartition, offset int64, err error) {
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed == nil {
		w.committed = map[int32]int64{}
	}
	w.committed[tp.Partition] = offset
}

func (w *consumerWatch) Committed(p int32) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed[p]
}

var (
	_ consumer.HookFetched   = (*consumerWatch)(nil)
	_ consumer.HookPaused    = (*consumerWatch)(nil)
	_ consumer.HookCommitted = (*consumerWatch)(nil)
)

// breakerWatch closes opened and closed when the breaker first opens and
// when it closes after that.
type breakerWatch struct {
	opened, closed      chan struct{}
	openOnce, closeOnce sync.Once
	mu                  sync.Mutex
	states              []handlers.BreakerState
}

// waitProbes waits for n failed half-open probes.
func (b *breakerWatch) waitProbes(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		k := 0
		for i := 1; i < len(b.states); i++ {
			if b.states[i-1] == handlers.BreakerHalfOpen && b.states[i] == handlers.BreakerOpen {
				k++
			}
		}
		return k
	}
	start := count()
	kafkatest.Eventually(t, 10*time.Second, func() bool { return count() >= start+n }, "%d failed probes", n)
}

func newBreakerWatch() *breakerWatch {
	return &breakerWatch{opened: make(chan struct{}), closed: make(chan struct{})}
}

func (b *breakerWatch) OnBreakerState(_ string, _, to handlers.BreakerState) {
	b.mu.Lock()
	b.states = append(b.states, to)
	b.mu.Unlock()
	switch to {
	case handlers.BreakerOpen:
		b.openOnce.Do(func() { close(b.opened) })
	case handlers.BreakerClosed:
		select {
		case <-b.opened:
			b.closeOnce.Do(func() { close(b.closed) })
		default:
		}
	}
}

func runConsumer(t *testing.T, opts ...consumer.Opt) (stop func()) {
	t.Helper()
	cons, err := consumer.New(append([]consumer.Opt{consumer.CommitInterval(50 * time.Millisecond), consumer.Logger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("consumer: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("after %v: %s", d, what)
	}
}

// TestSinkOutageOnKafka: a sink goes down for a while under a real consumer.
// The breaker opens, the records wait (no attempt spent, nothing
// dead-lettered), the consumer pauses fetching while the backlog grows, and
// after recovery every record is handled and committed.
func TestSinkOutageOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("kfake end-to-end test")
	}
	const (
		topic      = "events"
		partitions = 2
		keys       = 64
		before     = 1000 // records produced before the outage
		during     = 4000 // records produced during it
		high       = 200  // unsettled records per partition before fetches pause
	)
	c := kafkatest.New(t, kafkatest.Topic(topic, partitions))
	ok := func(int) string { return "" }
	produceEvents(t, c, topic, 0, before, keys, ok)

	var down atomic.Bool
	var mu sync.Mutex
	handled := map[int]int{}
	var handledN atomic.Int64
	store := func(ctx context.Context, m pipeline.Message[event]) error {
		if down.Load() {
			return handlers.Overloaded(errors.New("store unavailable"))
		}
		mu.Lock()
		handled[m.Value().ID]++
		mu.Unlock()
		handledN.Add(1)
		return nil
	}
	bw := newBreakerWatch()
	guarded := mustGuard(t, store, handlers.Name("store"), handlers.Hooks(bw),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond}),
		handlers.Breaker(handlers.BreakerPolicy{Window: 2 * time.Second, MinRequests: 10, OpenTimeout: 200 * time.Millisecond}),
		handlers.Timeout(time.Second))

	dlq := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(quiet))
	pipeline.Sink(stages.FanOut(pipeline.Source(p, topic, pipeline.JSON[event]()), "lanes", 8), "store", guarded)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	cw := &consumerWatch{}
	stop := runConsumer(t, consumer.Connection(sluice.Connection{Brokers: c.Addrs}), consumer.Group("outage"), consumer.Handle(p),
		consumer.Hooks(cw), consumer.MaxUnsettled(consumer.Water{Records: high}, consumer.Water{}))

	kafkatest.Eventually(t, 30*time.Second, func() bool { return handledN.Load() >= before/2 }, "half the records handled before the outage")
	down.Store(true)
	fetchedAtOutage := cw.fetched.Load()
	produceEvents(t, c, topic, before, during/2, keys, ok)
	waitClosed(t, bw.opened, 10*time.Second, "the breaker did not open in the outage")

	// During the outage the partitions fill up to their high-water mark and
	// pause: the backlog stays in Kafka instead of in memory.
	kafkatest.Eventually(t, 10*time.Second, func() bool { return cw.AllPaused(partitions) }, "the partitions did not pause in the outage")
	fetchedAtPause := cw.fetched.Load()
	committedAtPause := []int64{cw.Committed(0), cw.Committed(1)}
	produceEvents(t, c, topic, before+during/2, during/2, keys, ok)
	// Let the outage last a few probes of the breaker: the lag grows, the
	// consumer fetches nothing more and commits nothing.
	bw.waitProbes(t, 3)
	// What was produced before the pause was fetched up to the marks plus
	// one fetch per partition (a fetch returns whole producer batches); of
	// what was produced while paused, nothing.
	fetched := cw.fetched.Load() - fetchedAtOutage
	if more := cw.fetched.Load() - fetchedAtPause; more > 0 || fetched > before+during/2 {
		t.Errorf("%d records fetched during the outage, %d of them while paused; want at most %d and none", fetched, more, before+during/2)
	}
	if got := []int64{cw.Committed(0), cw.Committed(1)}; fmt.Sprint(got) != fmt.Sprint(committedAtPause) {
		t.Errorf("commits moved during the outage: %v -> %v", committedAtPause, got)
	}
	if n := len(dlq.Letters()); n != 0 {
		t.Fatalf("%d records dead-lettered during the outage: %+v", n, dlq.Letters()[0])
	}
	mu.Lock()
	handledInOutage := len(handled)
	mu.Unlock()

	down.Store(false)
	waitClosed(t, bw.closed, 10*time.Second, "the breaker did not close after recovery")
	kafkatest.Eventually(t, 30*time.Second, func() bool { return handledN.Load() >= before+during }, "all records handled after recovery (%v)",
		kafkatest.Lazy(func() any { return handledN.Load() }))
	ends := c.EndOffsets(t, topic)
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		for part, end := range ends {
			if cw.Committed(part) != end {
				return false
			}
		}
		return true
	}, "committed offsets reach the end offsets")
	stop()

	mu.Lock()
	defer mu.Unlock()
	if len(handled) != before+during {
		t.Errorf("%d distinct records handled; want %d", len(handled), before+during)
	}
	for id, n := range handled {
		if n != 1 {
			t.Errorf("record %d handled %d times", id, n)
		}
	}
	if n := len(dlq.Letters()); n != 0 {
		t.Errorf("%d records dead-lettered; want none for an outage", n)
	}
	committed := c.Committed(t, "outage", topic)
	for part, end := range ends {
		if committed[part] != end {
			t.Errorf("partition %d: committed %d, end %d", part, committed[part], end)
		}
	}
	t.Logf("handled %d before recovery, fetched %d during the outage, %d pauses, breaker %v",
		handledInOutage, fetched, cw.paused.Load(), bw.states)
}

// TestPoisonRecordsOnKafka: undecodable, panicking and permanently rejected
// records are each dead-lettered once with their class; the partition keeps
// flowing around them; and its commits pass a poison record only once its
// dead letter is acknowledged.
func TestPoisonRecordsOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("kfake end-to-end test")
	}
	const (
		topic = "orders"
		n     = 1000
		keys  = 50
		gated = 100 // the poison record whose dead letter waits for the test
	)
	kind := func(id int) string {
		switch {
		case id == gated || id%97 == 3:
			return "reject"
		case id%89 == 5:
			return "panic"
		case id%83 == 7:
			return "undecodable"
		}
		return ""
	}
	wantClass := map[string]string{"reject": pipeline.ClassPermanent, "panic": pipeline.ClassPanic, "undecodable": pipeline.ClassDecode}
	want := map[int]string{}
	for id := range n {
		if k := kind(id); k != "" {
			want[id] = wantClass[k]
		}
	}
	c := kafkatest.New(t, kafkatest.Topic(topic, 1))
	produceEvents(t, c, topic, 0, n, keys, kind)

	var calls sync.Map // id -> *atomic.Int64
	var handledAfterGated atomic.Int64
	store := func(ctx context.Context, m pipeline.Message[event]) error {
		e := m.Value()
		cnt, _ := calls.LoadOrStore(e.ID, new(atomic.Int64))
		cnt.(*atomic.Int64).Add(1)
		switch e.Kind {
		case "panic":
			panic(fmt.Sprintf("cannot store %d", e.ID))
		case "reject":
			return &handlers.HTTPError{Status: http.StatusUnprocessableEntity}
		}
		if e.ID > gated {
			handledAfterGated.Add(1)
		}
		return nil
	}
	guarded := mustGuard(t, store, handlers.Name("store"),
		handlers.Retry(handlers.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}),
		handlers.Breaker(handlers.BreakerPolicy{}))

	release := make(chan struct{})
	gatedOffset := make(chan int64, 1)
	dlq := &pipelinetest.DeadLetters{Fail: func(ctx context.Context, dl pipeline.DeadLetter) error {
		var e event
		if json.Unmarshal(dl.Record.Value, &e) == nil && e.ID == gated {
			select {
			case gatedOffset <- dl.Record.Offset:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(quiet))
	pipeline.Sink(stages.FanOut(pipeline.Source(p, topic, pipeline.JSON[event]()), "lanes", 8), "store", guarded)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	cw := &consumerWatch{}
	stop := runConsumer(t, consumer.Connection(sluice.Connection{Brokers: c.Addrs}), consumer.Group("poison"), consumer.Handle(p), consumer.Hooks(cw))

	var off int64
	select {
	case off = <-gatedOffset:
	case <-time.After(30 * time.Second):
		t.Fatal("the gated poison record never reached the dead-letter queue")
	}
	// The partition keeps flowing on the other lanes while the dead letter
	// is unacknowledged, but no commit passes the poison record.
	kafkatest.Eventually(t, 30*time.Second, func() bool { return handledAfterGated.Load() >= 500 }, "records after the poison handled")
	commitsBefore := cw.Committed(0)
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		return c.Committed(t, "poison", topic)[0] == cw.Committed(0) && cw.Committed(0) > 0
	}, "a commit while the dead letter is pending")
	if got := cw.Committed(0); got > off || commitsBefore > off {
		t.Fatalf("committed offset %d passed the poison record at %d before its dead letter was acknowledged", got, off)
	}
	t.Logf("poison record at offset %d: commits held at %d while its dead letter was pending", off, cw.Committed(0))
	close(release)

	end := c.EndOffsets(t, topic)[0]
	kafkatest.Eventually(t, 30*time.Second, func() bool { return cw.Committed(0) == end }, "commits reach the end offset %d (at %v)",
		end, kafkatest.Lazy(func() any { return cw.Committed(0) }))
	stop()

	letters := dlq.Letters()
	byID := map[int]pipeline.DeadLetter{}
	for _, l := range letters {
		var e event
		if err := json.Unmarshal(l.Record.Value, &e); err != nil {
			// Undecodable: recover the id from the offset (one partition,
			// produced in order from 0).
			e.ID = int(l.Record.Offset)
		}
		if _, dup := byID[e.ID]; dup {
			t.Errorf("record %d dead-lettered twice", e.ID)
		}
		byID[e.ID] = l
	}
	if len(byID) != len(want) {
		t.Errorf("%d records dead-lettered; want %d", len(byID), len(want))
	}
	for id, class := range want {
		l, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("poison record %d (%s) not dead-lettered", id, class)
		case l.Class != class:
			t.Errorf("record %d dead-lettered as %q; want %q (err %v)", id, l.Class, class, l.Err)
		case l.Attempts != 1:
			t.Errorf("record %d: %d attempts; a poison record is tried once", id, l.Attempts)
		}
	}
	calls.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n != 1 {
			t.Errorf("record %v: sink called %d times; want once", k, n)
		}
		return true
	})
}
