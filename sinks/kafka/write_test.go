package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
)

// runWrite consumes "in" to completion through kafka.Write with route.
func runWrite(t *testing.T, kc *kafkatest.Cluster, w *kafka.Writer, route kafka.Route[string], dl pipeline.DeadLetterer, extra ...consumer.Opt) {
	t.Helper()
	opts := []pipeline.Opt{pipeline.Logger(quietLogger())}
	if dl != nil {
		opts = append(opts, pipeline.DeadLetters(dl))
	}
	p := pipeline.New(opts...)
	kafka.Write(pipeline.Source(p, "in", pipeline.String()), "out", w, route)
	c, err := consumer.New(append([]consumer.Opt{consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("etl"), consumer.Handle(p),
		consumer.CommitInterval(50 * time.Millisecond), consumer.Logger(quietLogger())}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	<-c.Done()
}

// aloWriter is a Writer of its own on kc, closed when the test ends.
func aloWriter(t *testing.T, kc *kafkatest.Cluster) *kafka.Writer {
	t.Helper()
	w, err := kafka.NewWriter(kafka.Connection(sluice.Connection{Brokers: kc.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestWriteAtLeastOnce(t *testing.T) {
	const n = 2000
	kc := kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	runWrite(t, kc, aloWriter(t, kc), twoOutputs, nil)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(kc.ReadCommitted(t, "out", 3))); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// Write in exactly-once mode, with transactions that abort: each output
// once, read_committed.
func TestWriteExactlyOnceAcrossAborts(t *testing.T) {
	const n = 2000
	kc := kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration, Count: 3})
	defer fault.Remove()
	w := eosWriter(t)
	runWrite(t, kc, w, twoOutputs, nil, consumer.ExactlyOnce("etl-1", w))
	if fault.Hits() == 0 {
		t.Fatal("no transaction aborted: the test did not test an abort")
	}
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(kc.ReadCommitted(t, "out", 3))); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// A refused output and a Route error dead-letter only their own message.
func TestWriteDeadLettersOnlyTheRefused(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1), kafkatest.Topic("in.dlq", 1))
	produceWithPoison(t, kc)
	w, err := kafka.NewWriter(kafka.Connection(sluice.Connection{Brokers: kc.Addrs}), kafka.ClientOpts(kgo.ProducerBatchMaxBytes(1024)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: kc.Addrs}), dlq.Group("etl"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	runWrite(t, kc, w, routeOrRefuse, pub)
	if letters := kc.ReadCommitted(t, "in.dlq", 1); len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2 (poison and big)", len(letters))
	}
	var want []string
	for i := range 10 {
		if i != 3 && i != 7 {
			want = append(want, wantOutputs(i + 1)[2*i:]...)
		}
	}
	if lost, dups, ex := exactlyOnce(want, countByValue(kc.ReadCommitted(t, "out", 1))); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

func TestWriteRefusesMissingArguments(t *testing.T) {
	p := pipeline.New()
	kafka.Write(pipeline.Source(p, "in", pipeline.String()), "out", nil, twoOutputs)
	if err := p.Err(); !errors.Is(err, pipeline.ErrBuild) {
		t.Fatalf("Err: %v, want a build error for the nil writer", err)
	}
}

// The sink reuses the Outputs a Route adds to: each output must keep the
// headers it was given, not those of a later message.
func TestWriteOutputsKeepTheirHeaders(t *testing.T) {
	const n = 500
	kc := kafkatest.New(t, kafkatest.Topic("in", 2), kafkatest.Topic("out", 2))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	withHeader := func(m pipeline.Message[string], out *kafka.Outputs) error {
		a, b := []byte(m.Value()+"-a"), []byte(m.Value()+"-b")
		out.Add("out", m.Key(), a, pipeline.Header{Key: "copy", Value: a}, pipeline.Header{Key: "n", Value: []byte("1")})
		out.Add("out", m.Key(), b, pipeline.Header{Key: "copy", Value: b})
		return nil
	}
	runWrite(t, kc, aloWriter(t, kc), withHeader, nil)
	got := kc.ReadCommitted(t, "out", 2)
	if len(got) != 2*n {
		t.Fatalf("%d outputs, want %d", len(got), 2*n)
	}
	for _, r := range got {
		if len(r.Headers) == 0 || r.Headers[0].Key != "copy" || string(r.Headers[0].Value) != string(r.Value) {
			t.Fatalf("output %q has headers %v, want copy=%q first", r.Value, r.Headers, r.Value)
		}
	}
}

// A message of more outputs than the sink keeps a pooled Outputs for (64)
// is written whole, and the messages after it, routed into other Outputs,
// keep their own records and headers.
func TestWriteManyOutputsPastThePoolCap(t *testing.T) {
	const n, many = 40, 100
	kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(5))
	fanOut := func(m pipeline.Message[string], out *kafka.Outputs) error {
		k := 1
		if m.Offset()%4 == 0 {
			k = many
		}
		for i := range k {
			v := fmt.Appendf(nil, "%s-%d", m.Value(), i)
			out.Add("out", m.Key(), v, pipeline.Header{Key: "copy", Value: v})
		}
		return nil
	}
	runWrite(t, kc, aloWriter(t, kc), fanOut, nil)
	got := kc.ReadCommitted(t, "out", 1)
	if want := n/4*many + (n - n/4); len(got) != want {
		t.Fatalf("%d outputs, want %d", len(got), want)
	}
	for _, r := range got {
		if len(r.Headers) != 1 || string(r.Headers[0].Value) != string(r.Value) {
			t.Fatalf("output %q has headers %v, want only copy=%q", r.Value, r.Headers, r.Value)
		}
	}
}
