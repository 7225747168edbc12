package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// A consumer that has read everything there is commits a quarter of
// CommitInterval after its records settle, not at the end of the interval.
// The input has two partitions and one of them never gets a record: an
// idle partition does not hold the early commit back.
func TestCaughtUpConsumerCommitsEarly(t *testing.T) {
	const interval = 4 * time.Second
	kc := kafkatest.New(t, kafkatest.Topic("in", 2))
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	hook := &commitSignal{committed: make(chan struct{}, 1)}
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("early"), consumer.Handle(listed(h, "in")),
		consumer.CommitInterval(interval), consumer.Hooks(hook), consumer.Logger(quietLogger()),
		consumer.ClientOpts(kgo.FetchMaxWait(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	awaitEarlyCommits(t, kc, hook, errc, cancel, interval, func(int) int32 { return 0 })
}

// awaitEarlyCommits produces three records to "in", the i-th to partition
// part(i), and checks that each one commits well within the commit
// interval, then stops the consumer (cancel) and checks Run's error.
func awaitEarlyCommits(t *testing.T, kc *kafkatest.Cluster, hook *commitSignal, errc chan error, cancel context.CancelFunc,
	interval time.Duration, part func(i int) int32) {
	t.Helper()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for i := range 3 {
		produced := time.Now()
		kc.Produce(t, &kgo.Record{Topic: "in", Partition: part(i), Value: []byte{byte(i)}})
		hook.await(t, errc, "for the record")
		// A quarter of the interval, and a barrier or a commit: far
		// less than the interval.
		if took := time.Since(produced); took > interval*3/4 {
			t.Fatalf("record %d: committed %v after it was produced, want well under the %v interval", i, took, interval)
		}
	}
}
