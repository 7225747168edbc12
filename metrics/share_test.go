package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

// TestShareConsumerMetrics: a share group member on kfake, hooked to the
// metrics and watched, acknowledging 10 records: one fails permanently
// (dead-lettered, rejected), one fails transiently at its first delivery
// (released, not dead-lettered) and succeeds at its second, the rest
// succeed. The acknowledgement counters, the pipeline's outcomes and dead
// letters say so, and the watch computes no lag (a share group has no
// committed offsets) and counts no lag error.
func TestShareConsumerMetrics(t *testing.T) {
	const topic, n = "jobs", 10
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.share.record.lock.duration.ms": "3000",
		"group.share.session.timeout.ms":      "3000",
	})))
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(5))
	m, reg := newMetrics(t, metrics.LagInterval(50*time.Millisecond))

	p := pipeline.New(pipeline.Logger(quiet), pipeline.Hooks(m), pipeline.DeadLetters(consumer.ShareDeadLetters(&pipelinetest.DeadLetters{})))
	pipeline.Sink(pipeline.Source(p, topic, pipeline.Bytes()), "work", func(ctx context.Context, msg pipeline.Message[[]byte]) error {
		for r := range pipeline.Records(msg.Token()) {
			switch {
			case r.Offset == 3:
				return pipeline.Permanent(errors.New("malformed job"))
			case r.Offset == 6 && r.Deliveries == 1:
				return errors.New("downstream hiccup")
			}
		}
		return nil
	})
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(
		consumer.Connection(sluice.Connection{Brokers: kc.Addrs}),
		consumer.ShareGroup("workers"),
		consumer.Handle(p),
		consumer.Logger(quiet),
		consumer.Hooks(m),
		consumer.ShareSinkAttempts(1),
	)
	if err != nil {
		t.Fatal(err)
	}
	stopWatch := m.Watch(c)
	defer stopWatch()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	acks := func(kind string) float64 {
		return snapshot(t, reg).Value(metrics.ShareAcks, "topic", topic, "kind", kind)
	}
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		return acks(consumer.ShareAccept) == n-1 && acks(consumer.ShareReject) == 1
	}, "acks: accept %v, reject %v", kafkatest.Lazy(func() any { return acks(consumer.ShareAccept) }), kafkatest.Lazy(func() any { return acks(consumer.ShareReject) }))
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30s after cancel")
	}
	stopWatch()

	s := snapshot(t, reg)
	for _, tt := range []struct {
		give string
		want float64
	}{
		{metricstest.Key(metrics.ShareAcks, "topic", topic, "kind", consumer.ShareAccept), n - 1},
		{metricstest.Key(metrics.ShareAcks, "topic", topic, "kind", consumer.ShareRelease), 1},
		{metricstest.Key(metrics.ShareAcks, "topic", topic, "kind", consumer.ShareReject), 1},
		{metricstest.Key(metrics.ShareAckErrors, "topic", topic), 0},
		{metricstest.Key(metrics.RecordsHandled, "stage", "work", "outcome", "ok"), n - 1},
		{metricstest.Key(metrics.RecordsHandled, "stage", "work", "outcome", "released"), 1},
		{metricstest.Key(metrics.RecordsHandled, "stage", "work", "outcome", "dead_lettered"), 1},
		{metricstest.Key(metrics.DeadLetters, "stage", "work", "reason", pipeline.ClassPermanent), 1},
		{metricstest.Key(metrics.DeadLetters, "stage", "work", "reason", pipeline.ClassExhausted), 0},
		{metricstest.Key(metrics.RecordsConsumed, "topic", topic, "partition", "0"), n + 1},
		{metrics.LagErrors, 0},
	} {
		if got := s[tt.give]; got != tt.want {
			t.Errorf("%s = %v, want %v", tt.give, got, tt.want)
		}
	}
	if s.Has(metrics.ConsumerLag) {
		t.Errorf("a share group member exported %s: %v", metrics.ConsumerLag, s.Series(metrics.ConsumerLag))
	}
}
