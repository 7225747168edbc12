package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
)

// twoOutputs routes each input value v to "out" as v-a and v-b.
func twoOutputs(m pipeline.Message[string], out *kafka.Outputs) error {
	v := m.Value()
	out.Add("out", m.Key(), []byte(v+"-a"))
	out.Add("out", m.Key(), []byte(v+"-b"))
	return nil
}

// wantOutputs are the outputs twoOutputs makes of inputs v0..v(n-1).
func wantOutputs(n int) []string {
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("v%d-a", i), fmt.Sprintf("v%d-b", i))
	}
	return want
}

// member runs a consumer of "in" writing through w; extra options are
// added last. It returns the consumer and a stop function.
func member(t *testing.T, kc *kafkatest.Cluster, w *kafka.Writer, extra ...consumer.Opt) (*consumer.Consumer, func() error) {
	t.Helper()
	p := pipeline.New(pipeline.Logger(quietLogger()))
	pipeline.Sink(pipeline.Source(p, "in", pipeline.String()), "out", kafka.Sink(w, twoOutputs))
	opts := append([]consumer.Opt{consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("etl"), consumer.Handle(p),
		consumer.CommitInterval(50 * time.Millisecond), consumer.SessionTimeout(6 * time.Second),
		consumer.RebalanceTimeout(20 * time.Second), consumer.DrainTimeout(10 * time.Second),
		consumer.Logger(quietLogger())}, extra...)
	c, err := consumer.New(opts...)
	if err != nil {
		t.Fatal(err)
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
				runErr = errors.New("Run did not return 60s after cancel")
			}
			<-c.Done()
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

func TestAtLeastOnceWritesEveryOutput(t *testing.T) {
	const n = 300
	kc := kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	w, err := kafka.NewWriter(kafka.Connection(sluice.Connection{Brokers: kc.Addrs}), kafka.Provenance(""))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, stop := member(t, kc, w)
	kc.WaitCommittedEnd(t, "etl", "in", 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := readCommitted(t, kc, "out", 3)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(got)); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
	for _, r := range got {
		if len(r.Headers) == 0 || r.Headers[0].Key != kafka.DefaultProvenanceHeader {
			t.Fatalf("output %q has no provenance header: %v", r.Value, r.Headers)
		}
	}
}

func TestExactlyOnceCommitsOutputsWithOffsets(t *testing.T) {
	const n = 300
	kc := kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	w, err := kafka.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	_, stop := member(t, kc, w, consumer.ExactlyOnce("etl-1", w))
	kc.WaitCommittedEnd(t, "etl", "in", 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := readCommitted(t, kc, "out", 3)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(got)); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}
