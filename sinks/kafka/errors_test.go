package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
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

// routeOrRefuse routes like twoOutputs, except that "poison" cannot be
// routed and "big" becomes an output larger than the writer's client takes.
func routeOrRefuse(m pipeline.Message[string], out *kafka.Outputs) error {
	switch m.Value() {
	case "poison":
		return errors.New("cannot route poison")
	case "big":
		out.Add("out", nil, bytes.Repeat([]byte("x"), 4096))
		return nil
	}
	return twoOutputs(m, out)
}

// deadLetterRun consumes "in" (with "poison" and "big" among v0..v9) into
// "out" through routeOrRefuse, dead-lettering to in.dlq through pub.
func deadLetterRun(t *testing.T, kc *kafkatest.Cluster, w *kafka.Writer, pub *dlq.Publisher, extra ...consumer.Opt) {
	t.Helper()
	p := pipeline.New(pipeline.Logger(quietLogger()), pipeline.DeadLetters(pub))
	pipeline.Sink(pipeline.Source(p, "in", pipeline.String()), "out", kafka.Sink(w, routeOrRefuse))
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
}

func produceWithPoison(t *testing.T, kc *kafkatest.Cluster) {
	t.Helper()
	recs := make([]*kgo.Record, 10)
	for i := range recs {
		recs[i] = kafkatest.KeyedValue(1)(i)
		recs[i].Topic = "in"
	}
	recs[3].Value, recs[7].Value = []byte("poison"), []byte("big")
	kc.Produce(t, recs...)
}

// A record the brokers refuse for good (too large) and a Route error are
// permanent: dead-lettered with class permanent, not retried.
func TestRefusedOutputsAreDeadLetteredAsPermanent(t *testing.T) {
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
	deadLetterRun(t, kc, w, pub)
	letters := readCommitted(t, kc, "in.dlq", 1)
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2 (poison and big)", len(letters))
	}
	for _, l := range letters {
		prov, err := dlq.ProvenanceOf(l)
		if err != nil {
			t.Fatal(err)
		}
		if prov.Class != pipeline.ClassPermanent {
			t.Errorf("dead letter of %q: class %q, want permanent (%s)", l.Value, prov.Class, prov.Error)
		}
	}
}

// With the publisher passed to ExactlyOnce too, dead letters commit in the
// consumer's transactions: one that aborts takes its dead letters with it,
// and a read_committed reader sees each dead letter once.
func TestDeadLettersInTheTransaction(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1), kafkatest.Topic("in.dlq", 1))
	produceWithPoison(t, kc)
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration, Count: 2})
	defer fault.Remove()
	w, err := kafka.NewWriter(kafka.ProduceTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: kc.Addrs}), dlq.Group("etl"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deadLetterRun(t, kc, w, pub, consumer.ExactlyOnce("etl-1", w, pub),
		consumer.ClientOpts(kgo.ProducerBatchMaxBytes(1024)))
	if fault.Hits() == 0 {
		t.Fatal("no transaction aborted: the test did not test an abort")
	}
	if letters := readCommitted(t, kc, "in.dlq", 1); len(letters) != 2 {
		t.Fatalf("%d dead letters read_committed, want 2 (poison and big), each once", len(letters))
	}
	if all := readTopic(t, kc, "in.dlq", 1, kgo.ReadUncommitted()); len(all) <= 2 {
		t.Fatalf("%d dead letters read_uncommitted: no aborted transaction held one, so the test proves little", len(all))
	}
	var want []string
	for i := range 10 {
		if i != 3 && i != 7 {
			want = append(want, wantOutputs(i + 1)[2*i:]...)
		}
	}
	if lost, dups, ex := exactlyOnce(want, countByValue(readCommitted(t, kc, "out", 1))); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// kcat (librdkafka) reading the outputs read_committed sees no record of an
// aborted transaction: each output once.
func TestKcatReadCommittedSeesNoAbortedOutput(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs Debian's kcat)")
	}
	const n = 200
	kc := kafkatest.New(t, kafkatest.Topic("in", 2), kafkatest.Topic("out", 2))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(10))
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration, Count: 2})
	defer fault.Remove()
	w := eosWriter(t)
	_, stop := member(t, kc, w, consumer.ExactlyOnce("etl-1", w))
	kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fault.Hits() == 0 {
		t.Fatal("no transaction aborted: the test did not test an abort")
	}
	read := func(isolation string) map[string]int {
		out, err := exec.Command(kcat, "-C", "-b", kc.Addrs[0], "-t", "out", "-o", "beginning", "-e", "-q",
			"-X", "isolation.level="+isolation, "-f", "%s\n").CombinedOutput()
		if err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
		got := map[string]int{}
		for _, v := range strings.Fields(string(out)) {
			got[v]++
		}
		return got
	}
	if lost, dups, ex := exactlyOnce(wantOutputs(n), read("read_committed")); lost != 0 || dups != 0 {
		t.Fatalf("kcat read_committed: %d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
	if _, dups, _ := exactlyOnce(wantOutputs(n), read("read_uncommitted")); dups == 0 {
		t.Fatal("kcat read_uncommitted sees no aborted output either: the aborts wrote nothing, so the test proves little")
	}
}

func TestWriterConfigErrorsNameTheOption(t *testing.T) {
	for _, tt := range []struct {
		give []kafka.Opt
		want string
	}{
		{give: []kafka.Opt{kafka.ClientOpts(kgo.ClientID("x"))}, want: "ClientOpts"},
		{give: []kafka.Opt{kafka.Connection(sluice.Connection{})}, want: "Connection"},
		{give: []kafka.Opt{kafka.Connection(sluice.Connection{Brokers: []string{"b:9092"}}), kafka.ProduceTimeout(0)}, want: "ProduceTimeout"},
		{give: []kafka.Opt{kafka.Connection(sluice.Connection{Brokers: []string{""}})}, want: "Connection"},
		{give: []kafka.Opt{kafka.Connection(sluice.Connection{Brokers: []string{"b:9092"}}), kafka.ClientOpts(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())}, want: "acks=all"},
	} {
		_, err := kafka.NewWriter(tt.give...)
		if !errors.Is(err, sluice.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewWriter: %v, want a config error naming %s", err, tt.want)
		}
	}
}

// A writer with no client of its own that was never passed to
// consumer.ExactlyOnce says so instead of writing nothing.
func TestUnboundWriterSaysSo(t *testing.T) {
	w, err := kafka.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	sink := kafka.Sink(w, twoOutputs)
	err = sink(context.Background(), pipeline.NewMessage("v", &pipeline.Record{Topic: "in"}))
	if !errors.Is(err, kafka.ErrNoClient) {
		t.Fatalf("sink: %v, want ErrNoClient", err)
	}
}
