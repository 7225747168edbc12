package stages_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

type Order struct {
	ID       int    `json:"id"`
	Customer string `json:"customer"`
	Amount   int    `json:"amount"`
}

// The demo pipeline: decode orders, drop invalid ones, and send each valid
// order both to per-second totals and, in parallel per customer, to
// shipping. A consumer would run it with consumer.New(consumer.Handle(p),
// ...); here pipelinetest.Feed plays the consumer for one partition.
func Example() {
	dlq := &pipelinetest.DeadLetters{} // in production, a dlq.Publisher
	var mu sync.Mutex
	var shipped []string

	p := pipeline.New(pipeline.DeadLetters(dlq))
	orders := pipeline.Source(p, "orders", pipeline.JSON[Order]())
	valid := stages.Filter(orders, "valid", func(o Order) bool { return o.Amount > 0 })
	toTotals, toShip := stages.Duplicate2(valid, "split")
	perSecond := stages.Window(toTotals, "per-second", stages.Tumbling(time.Second), stages.EventTime(0))
	pipeline.Sink(perSecond, "totals", func(_ context.Context, m pipeline.Message[stages.Pane[Order]]) error {
		total := 0
		for _, o := range m.Value().Items {
			total += o.Value().Amount
		}
		fmt.Printf("%s: %d orders, total %d\n", m.Value().Start.UTC().Format(time.TimeOnly), len(m.Value().Items), total)
		return nil
	})
	pipeline.Sink(stages.FanOut(toShip, "ship-workers", 64), "ship", func(_ context.Context, m pipeline.Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		shipped = append(shipped, fmt.Sprintf("%s#%d", m.Value().Customer, m.Value().ID))
		return nil
	})
	if err := p.Err(); err != nil {
		fmt.Println(err)
		return
	}

	values := []string{
		`{"id":1,"customer":"ada","amount":30}`,
		`{"id":2,"customer":"bob","amount":0}`,
		`{"id":3,"customer":"ada","amount":12}`,
		`not json`,
		`{"id":5,"customer":"cy","amount":8}`,
	}
	settler := pipelinetest.NewSettler()
	tp := pipeline.TopicPartition{Topic: "orders", Partition: 0}
	recs := settler.Records(tp, 0, len(values), func(i int, r *pipeline.Record) {
		r.Value = []byte(values[i])
		r.Timestamp = time.Date(2026, 1, 1, 12, 0, i/3, 0, time.UTC)
	})
	if err := pipelinetest.Feed(context.Background(), p, tp, recs, 0); err != nil {
		fmt.Println(err)
		return
	}
	slices.Sort(shipped)
	fmt.Println("shipped:", strings.Join(shipped, " "))
	for _, dl := range dlq.Letters() {
		fmt.Printf("dead letter: %s from %s, class %s\n", dl.Record, dl.Stage, dl.Class)
	}
	fmt.Println("commit at offset", settler.Watermark(tp))
	// Output:
	// 12:00:00: 2 orders, total 42
	// 12:00:01: 1 orders, total 8
	// shipped: ada#1 ada#3 cy#5
	// dead letter: orders/0@3 from orders, class decode
	// commit at offset 5
}

// feedValues plays the consumer: one partition of topic "orders" gets a
// record per value, keyed by the value's first character.
func feedValues(p *pipeline.Pipeline, values ...string) {
	if err := p.Err(); err != nil {
		fmt.Println(err)
		return
	}
	tp := pipeline.TopicPartition{Topic: "orders", Partition: 0}
	recs := pipelinetest.NewSettler().Records(tp, 0, len(values), func(i int, r *pipeline.Record) {
		r.Key = []byte(values[i][:1])
		r.Value = []byte(values[i])
	})
	if err := pipelinetest.Feed(context.Background(), p, tp, recs, 0); err != nil {
		fmt.Println(err)
	}
}

func ExampleMap() {
	p := pipeline.New()
	upper := stages.Map(pipeline.Source(p, "orders", pipeline.String()), "upper", strings.ToUpper)
	pipeline.Sink(upper, "print", func(_ context.Context, m pipeline.Message[string]) error {
		fmt.Println(m.Value())
		return nil
	})
	feedValues(p, "a1", "b1")
	// Output:
	// A1
	// B1
}

func ExampleFilter() {
	p := pipeline.New()
	long := stages.Filter(pipeline.Source(p, "orders", pipeline.String()), "long", func(s string) bool { return len(s) > 2 })
	pipeline.Sink(long, "print", func(_ context.Context, m pipeline.Message[string]) error {
		fmt.Println(m.Value())
		return nil
	})
	feedValues(p, "a1", "b123", "c1") // a1 and c1 settle as filtered
	// Output:
	// b123
}

func ExampleDuplicate2() {
	var mu sync.Mutex
	var got []string
	record := func(branch string) func(context.Context, pipeline.Message[string]) error {
		return func(_ context.Context, m pipeline.Message[string]) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, branch+":"+m.Value())
			return nil
		}
	}
	p := pipeline.New()
	audit, index := stages.Duplicate2(pipeline.Source(p, "orders", pipeline.String()), "split")
	pipeline.Sink(audit, "audit", record("audit"))
	pipeline.Sink(index, "index", record("index"))
	feedValues(p, "a1", "b1")
	slices.Sort(got)
	fmt.Println(got) // each record settles once both branches have it
	// Output:
	// [audit:a1 audit:b1 index:a1 index:b1]
}

func ExampleFanOut() {
	var mu sync.Mutex
	perKey := map[string][]string{}
	p := pipeline.New()
	workers := stages.FanOut(pipeline.Source(p, "orders", pipeline.String()), "workers", 16)
	pipeline.Sink(workers, "call-api", func(_ context.Context, m pipeline.Message[string]) error {
		mu.Lock()
		defer mu.Unlock()
		perKey[string(m.Key())] = append(perKey[string(m.Key())], m.Value())
		return nil
	})
	feedValues(p, "a1", "b1", "a2", "c1", "b2", "a3")
	// Keys run in parallel; each key's records in offset order.
	fmt.Println(perKey["a"], perKey["b"], perKey["c"])
	// Output:
	// [a1 a2 a3] [b1 b2] [c1]
}

func ExampleWindow() {
	p := pipeline.New()
	w := stages.Window(pipeline.Source(p, "orders", pipeline.String()), "pairs", stages.SlidingCount(3, 2))
	pipeline.Sink(w, "print", func(_ context.Context, m pipeline.Message[stages.Pane[string]]) error {
		var vs []string
		for _, it := range m.Value().Items {
			vs = append(vs, it.Value())
		}
		fmt.Println(m.Value().Index, vs, "early:", m.Value().Early)
		return nil
	})
	feedValues(p, "a1", "a2", "a3", "a4", "a5", "a6")
	// Output:
	// 0 [a1 a2 a3] early: false
	// 1 [a3 a4 a5] early: false
	// 2 [a5 a6] early: true
}

func ExampleBatches() {
	p := pipeline.New()
	b := stages.Batches(pipeline.Source(p, "orders", pipeline.String()), "bulk", 2, 100*time.Millisecond)
	pipeline.Sink(b, "insert", func(_ context.Context, m pipeline.Message[stages.Batch[string]]) error {
		fmt.Println("insert", m.Value().Values(), "ending at offset", m.Offset())
		return nil
	})
	feedValues(p, "a1", "b1", "c1") // the last batch is flushed when the partition closes
	// Output:
	// insert [a1 b1] ending at offset 1
	// insert [c1] ending at offset 2
}
