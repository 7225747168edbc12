package dlq_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// TestOversizedDeadLetterLeavesValueOut writes dead letters that do not fit:
// one larger than the client's batch limit, one larger than the dead-letter
// topic's own max.message.bytes (refused by the broker). Each is written
// without its value, with HeaderValueDropped and complete provenance; a
// small one keeps its value. Replay refuses the ones without a value, even
// forced.
func TestOversizedDeadLetterLeavesValueOut(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1), kafkatest.Topic("small", 1))
	adm := kadm.NewClient(c.Client(t))
	small := "65536"
	if _, err := adm.CreateTopic(ctxT(t), 1, 1, map[string]*string{"max.message.bytes": &small}, "small.dlq"); err != nil {
		t.Fatal(err)
	}
	hooks := &recorder{}
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}), dlq.Hooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	tests := []struct {
		name      string
		topic     string
		valueSize int
		dropped   bool
	}{
		{"over the client's batch limit", "orders", dlq.DefaultMaxMessageBytes, true},
		{"over the topic's limit", "small", 100 << 10, true},
		{"fits", "orders", 10 << 10, false},
	}
	for i, tt := range tests {
		rec := &pipeline.Record{Topic: tt.topic, Offset: int64(i), Key: []byte("k"), Value: noise(tt.valueSize)}
		if err := pub.DeadLetter(ctxT(t), pipeline.DeadLetter{Record: rec, Stage: "decode", Class: pipeline.ClassDecode, Err: errors.New("bad")}); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
	}
	a := newAdmin(t, c)
	got := append(readAll(t, a, "orders.dlq", nil), readAll(t, a, "small.dlq", nil)...)
	if len(got) != 3 {
		t.Fatalf("read %d dead letters, want 3", len(got))
	}
	byOffset := map[int64]dlq.Letter{}
	for _, l := range got {
		byOffset[l.Provenance.Offset] = l
	}
	for i, tt := range tests {
		l := byOffset[int64(i)]
		if l.ProvenanceErr != nil || l.Provenance.Topic != tt.topic || l.Provenance.Class != pipeline.ClassDecode {
			t.Errorf("%s: provenance %+v (%v)", tt.name, l.Provenance, l.ProvenanceErr)
		}
		wantDropped := 0
		if tt.dropped {
			wantDropped = tt.valueSize
		}
		if l.Provenance.ValueDropped != wantDropped || (len(l.Record.Value) == 0) != tt.dropped {
			t.Errorf("%s: value of %d bytes, dropped %d; want dropped %v", tt.name, len(l.Record.Value), l.Provenance.ValueDropped, tt.dropped)
		}
	}
	hooks.mu.Lock()
	dropped := 0
	for _, w := range hooks.written {
		if w.ValueDropped > 0 {
			dropped++
		}
	}
	hooks.mu.Unlock()
	if dropped != 2 {
		t.Errorf("hooks saw %d dead letters without value, want 2", dropped)
	}

	stats, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Replayed != 1 || stats.Incomplete != 1 {
		t.Fatalf("replay (forced) replayed %d, skipped %d without value; want 1 and 1", stats.Replayed, stats.Incomplete)
	}
}

// TestOversizedDeadLetterDoesNotStallPartition is the regression test for a
// record near the broker's limit that fails to decode: its dead letter (the
// record plus provenance) was larger than the dead-letter client's batch
// limit, the write failed with MESSAGE_TOO_LARGE forever, and the whole
// partition waited behind it. (Found by the reliability suite's
// oversized-dead-letter scenario.)
func TestOversizedDeadLetterDoesNotStallPartition(t *testing.T) {
	const maxBytes = 1 << 20
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1),
		kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(maxBytes)})))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: kc.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var (
		mu  sync.Mutex
		got = map[string]bool{}
	)
	p := pipeline.New(pipeline.Logger(quiet()), pipeline.DeadLetters(pub), pipeline.DeadLetterBackoff(10*time.Millisecond, 100*time.Millisecond))
	decode := pipeline.DecodeFunc[string](func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			return "", errors.New("undecodable")
		}
		return string(b), nil
	})
	pipeline.Sink(pipeline.Source(p, "orders", decode), "collect", func(_ context.Context, m pipeline.Message[string]) error {
		mu.Lock()
		got[m.Value()] = true
		mu.Unlock()
		return nil
	})
	kc.ProduceWith(t, []kgo.Opt{kgo.ProducerBatchMaxBytes(maxBytes)}, &kgo.Record{Topic: "orders", Value: []byte("bad" + strings.Repeat("x", maxBytes-1024))})
	kc.Produce(t, &kgo.Record{Topic: "orders", Value: []byte("good-0")}, &kgo.Record{Topic: "orders", Value: []byte("good-1")})
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("oversize"), consumer.Handle(p), consumer.Logger(quiet()), consumer.CommitInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	kafkatest.Eventually(t, 20*time.Second, func() bool { return kc.Committed(t, "oversize", "orders")[0] == 3 },
		"the partition did not get past the oversized bad record")
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !got["good-0"] || !got["good-1"] {
		t.Fatalf("handled %v, want the records behind the bad one", got)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// noise is n bytes that do not compress, so that size limits apply to them
// as they are.
func noise(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
