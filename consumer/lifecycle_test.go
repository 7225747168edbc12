package consumer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// within fails t if fn does not return within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// Close, Stop and Run must be safe in any order and any number of times; a
// second Close before Run once hung, and so did Stop after it.
func TestCloseStopAndRunInAnyOrder(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("order", 1))
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	newConsumer := func(t *testing.T) *consumer.Consumer {
		c, err := consumer.New(baseOpts(kc, "order", h, "order")...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	type step func(t *testing.T, c *consumer.Consumer)
	closeC := func(t *testing.T, c *consumer.Consumer) { within(t, 10*time.Second, "Close", c.Close) }
	stopC := func(t *testing.T, c *consumer.Consumer) { within(t, 10*time.Second, "Stop", c.Stop) }
	runClosed := func(t *testing.T, c *consumer.Consumer) {
		var err error
		within(t, 10*time.Second, "Run", func() { err = c.Run(context.Background()) })
		if !errors.Is(err, consumer.ErrClosed) {
			t.Fatalf("Run after Close: %v, want ErrClosed", err)
		}
	}
	tests := []struct {
		give  string
		steps []step
	}{
		{give: "close close stop run", steps: []step{closeC, closeC, stopC, runClosed}},
		{give: "stop stop close run", steps: []step{stopC, stopC, closeC, runClosed}},
		{give: "close run run", steps: []step{closeC, runClosed, runClosed}},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			c := newConsumer(t)
			for _, s := range tt.steps {
				s(t, c)
			}
			<-c.Done()
		})
	}
}

// Close and Stop from several goroutines while Run runs all return once
// Run has, and Run then refuses to run again.
func TestConcurrentCloseAndStopWhileRunning(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("conc", 2))
	kc.ProduceN(t, "conc", 100, kafkatest.KeyedValue(10))
	l := newLedger()
	h := &workHandler{workers: 2, fn: func(ctx context.Context, r *pipeline.Record) error { l.add(r); return nil }}
	c, err := consumer.New(baseOpts(kc, "conc", h, "conc")...)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	l.waitTotal(t, 100, 20*time.Second)
	if err := c.Run(context.Background()); !errors.Is(err, consumer.ErrRunning) {
		t.Fatalf("second Run while running: %v, want ErrRunning", err)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				c.Close()
			} else {
				c.Stop()
			}
		}()
	}
	within(t, 20*time.Second, "Close and Stop", wg.Wait)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	default:
		t.Fatal("Close returned before Run did")
	}
	if err := c.Run(context.Background()); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Run after it returned: %v, want ErrClosed", err)
	}
}

// deadlineWatch collects malformed deadline reports.
type deadlineWatch struct {
	mu      sync.Mutex
	offsets []int64
}

func (w *deadlineWatch) OnMalformedDeadline(_ pipeline.TopicPartition, offset int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.offsets = append(w.offsets, offset)
}

// A malformed sluice-deadline header was ignored without a word; it is
// still ignored (the record is handled, with no deadline), and now told to
// the hooks (and logged).
func TestMalformedDeadlineHeaderIsReported(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("dl", 1))
	kc.Produce(t,
		&kgo.Record{Topic: "dl", Value: []byte("ok"), Headers: []kgo.RecordHeader{{Key: pipeline.DeadlineHeader, Value: []byte("4102444800000")}}},
		&kgo.Record{Topic: "dl", Value: []byte("bad"), Headers: []kgo.RecordHeader{{Key: pipeline.DeadlineHeader, Value: []byte("tomorrow")}}})
	deadlines := make(chan time.Time, 2)
	h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error { deadlines <- r.Deadline; return nil }}
	w := &deadlineWatch{}
	_, stop := runConsumer(t, append(baseOpts(kc, "dl", h, "dl"), consumer.Hooks(w))...)
	kc.WaitCommittedEnd(t, "dl", "dl", 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := <-deadlines; !d.Equal(time.UnixMilli(4102444800000)) {
		t.Errorf("well-formed header: deadline %v", d)
	}
	if d := <-deadlines; !d.IsZero() {
		t.Errorf("malformed header: deadline %v, want none", d)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.offsets) != 1 || w.offsets[0] != 1 {
		t.Fatalf("malformed deadlines reported at %v, want [1]", w.offsets)
	}
}
