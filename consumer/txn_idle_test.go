package consumer_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// countLog is a slog handler that counts records whose message contains s.
type countLog struct {
	s string
	n *atomic.Int64
}

func (h countLog) Enabled(context.Context, slog.Level) bool { return true }
func (h countLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.s) {
		h.n.Add(1)
	}
	return nil
}
func (h countLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countLog) WithGroup(string) slog.Handler      { return h }

// runCopier runs an exactly-once consumer that copies "in" to "out" with
// commit interval interval. ends counts the transaction ends that held
// franz-go's session for 500ms (an end with no offsets); cancel stops the
// consumer, and errc has Run's error.
func runCopier(t *testing.T, kc *kafkatest.Cluster, interval time.Duration) (hook *commitSignal, ends *atomic.Int64, errc chan error, cancel context.CancelFunc) {
	t.Helper()
	w := &txnWriter{}
	h := &workHandler{fn: func(ctx context.Context, rec *pipeline.Record) error {
		return w.cl.ProduceSync(ctx, &kgo.Record{Topic: "out", Value: rec.Value}).FirstErr()
	}}
	hook = &commitSignal{committed: make(chan struct{}, 1)}
	ends = new(atomic.Int64)
	log := slog.New(countLog{s: "sleeping 500ms", n: ends})
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("etl"), consumer.Handle(listed(h, "in")),
		consumer.CommitInterval(interval), consumer.ExactlyOnce("etl-1", w),
		consumer.Hooks(hook), consumer.Logger(log), consumer.ClientOpts(kgo.FetchMaxWait(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc = make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	return hook, ends, errc, cancel
}

// An idle exactly-once consumer ends no transactions: each empty end costs
// franz-go's session a 500ms pause (it cannot tell that the broker supports
// KIP-447) that holds its lock, so the next end and any rebalance wait. Over ten
// fetches of an idle topic (about twenty barrier intervals) no transaction
// ends.
func TestExactlyOnceIdleConsumerEndsNoEmptyTransactions(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1))
	var fetches atomic.Int64
	fetched := make(chan struct{}, 1)
	kc.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		fetches.Add(1)
		select {
		case fetched <- struct{}{}:
		default:
		}
		return nil, nil, false
	})
	hook, ends, errc, cancel := runCopier(t, kc, 25*time.Millisecond)
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	kc.Produce(t, &kgo.Record{Topic: "in", Value: []byte("first")})
	hook.await(t, errc, "for the first record")
	before := ends.Load()
	for start := fetches.Load(); fetches.Load() < start+10; {
		select {
		case <-fetched:
		case <-time.After(30 * time.Second):
			t.Fatal("no fetch within 30s")
		}
	}
	if got := ends.Load() - before; got != 0 {
		t.Errorf("an idle consumer ended %d empty transactions over ten fetches (each holds the session 500ms), want 0", got)
	}
	kc.Produce(t, &kgo.Record{Topic: "in", Value: []byte("second")})
	hook.await(t, errc, "for the record after the idle time")
	if got := len(kc.ReadCommitted(t, "out", 1)); got != 2 {
		t.Errorf("read_committed output holds %d records, want 2", got)
	}
}

// A shutdown after the last transaction committed, with nothing fetched
// since, ends the open transaction without a commit: an end with no offsets
// would cost franz-go's session a 500ms pause, and Run would wait for it
// (every exactly-once run that read everything it was given stopped half a
// second late).
func TestExactlyOnceShutdownWithNothingFetchedEndsNoEmptyTransaction(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1))
	hook, ends, errc, cancel := runCopier(t, kc, 25*time.Millisecond)
	kc.Produce(t, &kgo.Record{Topic: "in", Value: []byte("only")})
	hook.await(t, errc, "for the record")
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := ends.Load(); got != 0 {
		t.Errorf("%d empty transactions ended with a commit (each holds the session 500ms), want 0", got)
	}
	if got := len(kc.ReadCommitted(t, "out", 1)); got != 1 {
		t.Errorf("read_committed output holds %d records, want 1", got)
	}
}

// A consumer that has read everything there is ends its transaction a
// quarter of CommitInterval after it began, not at the end of the
// interval: its outputs are visible to read_committed readers sooner.
func TestExactlyOnceCaughtUpEndsTransactionEarly(t *testing.T) {
	const interval = 4 * time.Second
	kc := kafkatest.New(t, kafkatest.Topic("in", 2), kafkatest.Topic("out", 1))
	hook, _, errc, cancel := runCopier(t, kc, interval)
	awaitEarlyCommits(t, kc, hook, errc, cancel, interval, func(i int) int32 { return int32(i % 2) })
	if got := len(kc.ReadCommitted(t, "out", 1)); got != 3 {
		t.Errorf("read_committed output holds %d records, want 3", got)
	}
}
