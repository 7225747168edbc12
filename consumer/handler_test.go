package consumer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// workHandler is a pipeline.Handler for tests: each partition gets `workers`
// goroutines that call fn for every record and settle it when fn returns nil.
// With more than one worker, records complete out of offset order.
type workHandler struct {
	workers int
	fn      func(ctx context.Context, r *pipeline.Record) error

	mu     sync.Mutex
	opened []pipeline.TopicPartition
}

func (h *workHandler) OpenPartition(ctx context.Context, tp pipeline.TopicPartition) (pipeline.Partition, error) {
	h.mu.Lock()
	h.opened = append(h.opened, tp)
	h.mu.Unlock()
	p := &workPartition{in: make(chan *pipeline.Record, 16)}
	for range max(h.workers, 1) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for r := range p.in {
				if ctx.Err() != nil {
					continue // cancelled: leave it unsettled
				}
				if err := h.fn(ctx, r); err == nil {
					r.Settle()
				}
			}
		}()
	}
	return p, nil
}

type workPartition struct {
	in chan *pipeline.Record
	wg sync.WaitGroup
}

func (p *workPartition) Handle(ctx context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		select {
		case p.in <- r:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *workPartition) Close() {
	close(p.in)
	p.wg.Wait()
}

// ledger records what a handler handled, keyed by partition and offset.
type ledger struct {
	mu      sync.Mutex
	handled map[pipeline.TopicPartition]map[int64]int
	total   int
	changed chan struct{}
}

func newLedger() *ledger {
	return &ledger{handled: map[pipeline.TopicPartition]map[int64]int{}, changed: make(chan struct{}, 1)}
}

func (l *ledger) add(r *pipeline.Record) {
	tp := pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	l.mu.Lock()
	if l.handled[tp] == nil {
		l.handled[tp] = map[int64]int{}
	}
	l.handled[tp][r.Offset]++
	l.total++
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// waitTotal waits until at least n records were handled.
func (l *ledger) waitTotal(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		got := l.total
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("handled %d records after %v, want %d", got, timeout, n)
		}
	}
}

// check compares the ledger with the end offsets: it returns how many
// records were never handled and how many were handled more than once.
func (l *ledger) check(ends map[int32]int64, topic string) (lost, dups int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, end := range ends {
		got := l.handled[pipeline.TopicPartition{Topic: topic, Partition: p}]
		for o := int64(0); o < end; o++ {
			switch n := got[o]; {
			case n == 0:
				lost++
			case n > 1:
				dups += n - 1
			}
		}
	}
	return lost, dups
}

// runConsumer starts a consumer in the background; stop it with the
// returned func, which waits for Run and returns its error.
func runConsumer(t *testing.T, opts ...consumer.Opt) (*consumer.Consumer, func() error) {
	t.Helper()
	c, err := consumer.New(opts...)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(60 * time.Second):
				runErr = fmt.Errorf("Run did not return 60s after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

// baseOpts are the options every test consumer shares.
// listed gives a test handler, which does not list the topics it reads,
// the topics; a handler that lists them is returned as it is.
func listed(h pipeline.Handler, topics ...string) pipeline.Handler {
	if _, ok := h.(interface{ Topics() []string }); ok {
		return h
	}
	return listedHandler{h, topics}
}

// clientID is the cluster's connection with a client ID of its own.
func clientID(kc *kafkatest.Cluster, id string) consumer.Opt {
	return consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: id})
}

type listedHandler struct {
	pipeline.Handler
	topics []string
}

func (l listedHandler) Topics() []string { return l.topics }

func baseOpts(kc *kafkatest.Cluster, group string, h pipeline.Handler, topics ...string) []consumer.Opt {
	return []consumer.Opt{
		consumer.Connection(sluice.Connection{Brokers: kc.Addrs}),
		consumer.Group(group),
		consumer.Handle(listed(h, topics...)),
		consumer.CommitInterval(50 * time.Millisecond),
		consumer.SessionTimeout(3 * time.Second),
		consumer.RebalanceTimeout(20 * time.Second),
		consumer.DrainTimeout(10 * time.Second),
		consumer.Logger(quietLogger()),
	}
}
