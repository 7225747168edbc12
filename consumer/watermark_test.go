package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// atTotalMark starts a consumer of 4 partitions whose sink waits for its
// context, with consumer-wide marks that a backlog of 2,000 records
// reaches, and waits until the consumer-wide mark paused every partition.
func atTotalMark(t *testing.T, group string, extra ...consumer.Opt) (*kafkatest.Cluster, *consumer.Consumer, chan error, context.CancelFunc) {
	t.Helper()
	const topic = "mark"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 4))
	kc.ProduceN(t, topic, 2000, kafkatest.KeyedValue(100))
	h := &workHandler{workers: 64, fn: func(ctx context.Context, r *pipeline.Record) error {
		<-ctx.Done() // a downstream that never answers
		return ctx.Err()
	}}
	opts := append(baseOpts(kc, group, h, topic),
		consumer.MaxUnsettled(consumer.Water{Records: 100}, consumer.Water{Records: 150}),
		consumer.DrainTimeout(2*time.Second), consumer.CloseGrace(2*time.Second))
	c, err := consumer.New(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	kafkatest.Eventually(t, 20*time.Second, c.AllPaused, "the consumer-wide mark was never reached (unsettled %v)",
		kafkatest.Lazy(func() any { h, b := c.Unsettled(); return [2]int64{h, b} }))
	return kc, c, errc, cancel
}

// stopWithin cancels Run and fails t if it does not return within bound.
func stopWithin(t *testing.T, cancel context.CancelFunc, errc chan error, bound time.Duration) {
	t.Helper()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("Run did not return within %v of cancel: the stop hangs", bound)
	}
}

// The consumer-wide high-water mark once deadlocked every path that
// releases partitions (shutdown, revoke, loss): release held the pause
// lock and called into code that took it again.
func TestShutdownAtConsumerWideMarkDoesNotHang(t *testing.T) {
	_, _, errc, cancel := atTotalMark(t, "mark-stop")
	// Drain timeout 2s + close grace 2s, plus leaving the group.
	stopWithin(t, cancel, errc, 15*time.Second)
}

func TestRevokeAtConsumerWideMarkDoesNotHang(t *testing.T) {
	kc, c, errc, cancel := atTotalMark(t, "mark-revoke")
	h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error { return nil }}
	_, stop := runConsumer(t, baseOpts(kc, "mark-revoke", h, "mark")...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return len(c.Assigned()) < 4 },
		"the first member never gave up partitions to the second (assigned %v)", kafkatest.Lazy(func() any { return c.Assigned() }))
	stopWithin(t, cancel, errc, 15*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestLossAtConsumerWideMarkDoesNotHang(t *testing.T) {
	w := &lostWatch{settledSet: *newSettledSet(), lost: make(chan []pipeline.TopicPartition, 1)}
	kc, _, errc, cancel := atTotalMark(t, "mark-lost", consumer.Hooks(w),
		consumer.ClientOpts(kgo.HeartbeatInterval(50*time.Millisecond)))
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.UnknownMemberID})
	select {
	case <-w.lost:
	case <-time.After(20 * time.Second):
		t.Fatal("the partitions were never reported lost: releasing them hangs")
	}
	fault.Remove()
	stopWithin(t, cancel, errc, 15*time.Second)
}
