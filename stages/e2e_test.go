package stages_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

type shipment struct {
	Customer string `json:"customer"`
	Seq      int    `json:"seq"` // per customer
	Qty      int    `json:"qty"`
}

// TestDemoPipelineOnKafka runs the demo-shaped pipeline (decode, filter,
// duplicate, a processing-time window on one branch, a key-ordered fan-out
// of 64 on the other) under a real consumer against kfake: every valid
// record reaches both sinks, in key order on the fan-out; invalid ones are
// filtered, undecodable ones dead-lettered; after shutdown the committed
// offsets equal the end offsets.
func TestDemoPipelineOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("kfake end-to-end test")
	}
	const (
		topic      = "orders"
		partitions = 4
		n          = 3000
		customers  = 50
	)
	c := kafkatest.New(t, kafkatest.Topic(topic, partitions))
	seqs := map[string]int{}
	var wantValid, wantBad int
	c.ProduceN(t, topic, n, func(i int) *kgo.Record {
		cust := fmt.Sprint("c", i%customers)
		seqs[cust]++
		v := fmt.Appendf(nil, `{"customer":%q,"seq":%d,"qty":%d}`, cust, seqs[cust], i%10)
		switch {
		case i%97 == 0:
			v = []byte("{broken")
			wantBad++
		case i%10 != 0:
			wantValid++
		}
		return &kgo.Record{Key: []byte(cust), Value: v}
	})

	var (
		mu       sync.Mutex
		windowed = map[string]int{} // customer/seq -> times seen in a window
		shipped  = map[string]int{} // customer/seq -> times shipped
		lastSeq  = map[string]int{}
		bad      []string
	)
	dlq := &pipelinetest.DeadLetters{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(log))
	orders := pipeline.Source(p, topic, pipeline.JSON[shipment]())
	valid := stages.Filter(orders, "valid", func(s shipment) bool { return s.Qty > 0 })
	toWin, toShip := stages.Duplicate2(valid, "split")
	pipeline.Sink(stages.Window(toWin, "per-100ms", stages.Tumbling(100*time.Millisecond)), "totals",
		func(_ context.Context, m pipeline.Message[stages.Pane[shipment]]) error {
			mu.Lock()
			defer mu.Unlock()
			for _, it := range m.Value().Items {
				windowed[fmt.Sprint(it.Value().Customer, "/", it.Value().Seq)]++
			}
			return nil
		})
	pipeline.Sink(stages.FanOut(toShip, "ship-workers", 64), "ship", func(_ context.Context, m pipeline.Message[shipment]) error {
		time.Sleep(time.Duration(m.Value().Seq%3) * 100 * time.Microsecond) // the workload
		mu.Lock()
		defer mu.Unlock()
		s := m.Value()
		if last := lastSeq[s.Customer]; s.Seq <= last {
			bad = append(bad, fmt.Sprintf("%s: seq %d after %d", s.Customer, s.Seq, last))
		}
		lastSeq[s.Customer] = s.Seq
		shipped[fmt.Sprint(s.Customer, "/", s.Seq)]++
		return nil
	})

	cons, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: c.Addrs}), consumer.Group("demo"), consumer.Handle(p), consumer.CommitInterval(50*time.Millisecond), consumer.Logger(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- cons.Run(ctx) }()
	count := func(m map[string]int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(m) == wantValid }
	}
	kafkatest.Eventually(t, 30*time.Second, count(shipped), "all %d valid records shipped", wantValid)
	cancel() // drain: the last window is flushed early, then offsets committed
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("consumer: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("key order broken: %v", bad[:min(5, len(bad))])
	}
	if len(windowed) != wantValid || len(shipped) != wantValid {
		t.Errorf("windowed %d, shipped %d, want %d each", len(windowed), len(shipped), wantValid)
	}
	for k, times := range shipped {
		if times != 1 || windowed[k] != 1 {
			t.Errorf("%s shipped %d times and windowed %d times, want once each (no redelivery in one run)", k, times, windowed[k])
		}
	}
	if got := len(dlq.Letters()); got != wantBad {
		t.Errorf("%d dead letters, want %d", got, wantBad)
	}
	for _, l := range dlq.Letters() {
		if l.Class != pipeline.ClassDecode || l.Stage != topic {
			t.Errorf("dead letter %+v", l)
		}
	}
	ends, committed := c.EndOffsets(t, topic), c.Committed(t, "demo", topic)
	for part, end := range ends {
		if committed[part] != end {
			t.Errorf("partition %d: committed %d, end offset %d", part, committed[part], end)
		}
	}
}
