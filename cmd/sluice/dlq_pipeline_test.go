package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

type order struct {
	N      int  `json:"n"`
	Poison bool `json:"poison"`
}

// TestDLQThroughPipelineAndConsumer runs a real consumer and pipeline:
// poison records are dead-lettered with full provenance, `sluice dlq`
// shows and replays them, the consumer handles the replayed records, and
// the replay-count guard stops records that keep failing.
func TestDLQThroughPipelineAndConsumer(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	b := "--brokers=" + c.Addrs[0]

	// Record i: i%4==0 does not decode, i%4==1 is refused by the sink
	// until healed, the rest are fine.
	produced := c.ProduceN(t, "orders", 12, func(i int) *kgo.Record {
		v := fmt.Appendf(nil, `{"n":%d,"poison":%t}`, i, i%4 == 1)
		if i%4 == 0 {
			v = []byte(`{"n":`)
		}
		return &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: v, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: fmt.Appendf(nil, "tp-%d", i)}}}
	})

	var (
		mu      sync.Mutex
		healed  bool
		handled = map[string][]string{} // key -> replay-count header of each delivery
	)
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}), dlq.Group("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	p := pipeline.New(pipeline.DeadLetters(pub), pipeline.DeadLetterBackoff(10*time.Millisecond, 100*time.Millisecond))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.JSON[order]()), "store", func(_ context.Context, m pipeline.Message[order]) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Value().Poison && !healed {
			return pipeline.Permanent(errors.New("store: order rejected"))
		}
		rc, _ := m.Header(dlq.HeaderReplayCount)
		handled[string(m.Key())] = append(handled[string(m.Key())], string(rc))
		return nil
	})
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	cons, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: c.Addrs}), consumer.Group("shop"), consumer.Handle(p),
		consumer.CommitInterval(20*time.Millisecond), consumer.SessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- cons.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	}()
	handledKeys := func() int { mu.Lock(); defer mu.Unlock(); return len(handled) }
	dlqCount := func() int64 { return total(c.EndOffsets(t, "orders.dlq")) }
	kafkatest.Eventually(t, 20*time.Second, func() bool { return handledKeys() == 6 && dlqCount() == 6 }, "6 handled and 6 dead-lettered")

	// Complete provenance, as inspect --json shows it.
	type prov struct {
		Topic        string     `json:"topic"`
		Partition    int32      `json:"partition"`
		Offset       int64      `json:"offset"`
		Timestamp    *time.Time `json:"timestamp"`
		Group        string     `json:"group"`
		Sink         string     `json:"sink"`
		Error        string     `json:"error"`
		Class        string     `json:"class"`
		Attempts     int        `json:"attempts"`
		FirstFailure *time.Time `json:"first_failure"`
		LastFailure  *time.Time `json:"last_failure"`
	}
	out := mustCLI(t, "dlq", "inspect", "orders.dlq", b, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("inspect: %d lines\n%s", len(lines), out)
	}
	for _, line := range lines {
		var l struct {
			Key        string            `json:"key"`
			Headers    map[string]string `json:"headers"`
			Provenance prov              `json:"provenance"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		var i int
		fmt.Sscanf(l.Key, "k%d", &i)
		src, pv := produced[i], l.Provenance
		wantClass, wantSink := pipeline.ClassPermanent, "store"
		if i%4 == 0 {
			wantClass, wantSink = pipeline.ClassDecode, "orders"
		}
		if pv.Topic != "orders" || pv.Partition != src.Partition || pv.Offset != src.Offset || pv.Group != "shop" ||
			pv.Sink != wantSink || pv.Class != wantClass || pv.Error == "" || pv.Attempts < 1 ||
			pv.Timestamp == nil || pv.FirstFailure == nil || pv.LastFailure == nil || l.Headers["traceparent"] != fmt.Sprint("tp-", i) {
			t.Errorf("dead letter of record %d (%s/%d@%d): %s", i, src.Topic, src.Partition, src.Offset, line)
		}
	}
	out = mustCLI(t, "dlq", "stats", "orders.dlq", b)
	if !strings.Contains(out, "6 dead letters") || !strings.Contains(out, "decode     3") || !strings.Contains(out, "permanent  3") {
		t.Fatalf("stats:\n%s", out)
	}

	// The sink is fixed: replay its dead letters; the consumer handles them.
	mu.Lock()
	healed = true
	mu.Unlock()
	before := total(c.EndOffsets(t, "orders"))
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--sink", "store", "--dry-run")
	if !strings.Contains(out, "would replay 3") || total(c.EndOffsets(t, "orders")) != before {
		t.Fatalf("dry run:\n%s", out)
	}
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--sink", "store")
	if !strings.Contains(out, "replayed 3") {
		t.Fatalf("replay:\n%s", out)
	}
	kafkatest.Eventually(t, 20*time.Second, func() bool { return handledKeys() == 9 }, "replayed records handled")
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--sink", "store")
	if !strings.Contains(out, "replayed 0") || total(c.EndOffsets(t, "orders")) != before+3 {
		t.Fatalf("second replay:\n%s", out)
	}
	mu.Lock()
	for _, k := range []string{"k1", "k5", "k9"} {
		if got := handled[k]; len(got) != 1 || got[0] != "1" {
			t.Errorf("%s handled with replay counts %v, want once with 1", k, got)
		}
	}
	mu.Unlock()

	// Records that still do not decode come back; the guard stops them.
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--class", "decode", "--max-replays", "1")
	if !strings.Contains(out, "replayed 3") {
		t.Fatalf("replay of decode failures:\n%s", out)
	}
	kafkatest.Eventually(t, 20*time.Second, func() bool { return dlqCount() == 9 }, "decode failures dead-lettered again")
	out, _, err = runCLI(t, "dlq", "replay", "orders.dlq", b, "--class", "decode", "--max-replays", "1")
	if !strings.Contains(out, "replayed 0, refused 3") || exitCode(err) != exitRefused {
		t.Fatalf("guard: %v\n%s", err, out)
	}
}
