package pipeline_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

// feedValues plays the consumer for one partition of topic "orders".
func feedValues(p *pipeline.Pipeline, values ...string) *pipelinetest.Settler {
	s := pipelinetest.NewSettler()
	recs := s.Records(tp0, 0, len(values), func(i int, r *pipeline.Record) { r.Value = []byte(values[i]) })
	if err := pipelinetest.Feed(context.Background(), p, tp0, recs, 0); err != nil {
		fmt.Println(err)
	}
	return s
}

func ExampleSource() {
	type Order struct {
		ID  int `json:"id"`
		Qty int `json:"qty"`
	}
	dlq := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(quiet))
	orders := pipeline.Source(p, "orders", pipeline.JSON[Order]())
	pipeline.Sink(orders, "print", func(_ context.Context, m pipeline.Message[Order]) error {
		fmt.Printf("%s: order %d, qty %d\n", m, m.Value().ID, m.Value().Qty)
		return nil
	})
	feedValues(p, `{"id":7,"qty":2}`, `{"id":`, `{"id":9,"qty":1}`)
	for _, dl := range dlq.Letters() {
		fmt.Println("dead letter:", dl.Record, dl.Class)
	}
	// Output:
	// orders/0@0: order 7, qty 2
	// orders/0@2: order 9, qty 1
	// dead letter: orders/0@1 decode
}

func ExampleSink() {
	dlq := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(quiet))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "save", func(ctx context.Context, m pipeline.Message[string]) error {
		if m.Value() == "bad" {
			return pipeline.Permanent(errors.New("rejected")) // dead-lettered, then settled
		}
		return nil // settled
	})
	s := feedValues(p, "good", "bad", "good")
	for _, dl := range dlq.Letters() {
		fmt.Printf("dead letter: %s from %s: %v (class %s, %d attempt)\n", dl.Record, dl.Stage, dl.Err, dl.Class, dl.Attempts)
	}
	fmt.Println("commit at offset", s.Watermark(tp0))
	// Output:
	// dead letter: orders/0@1 from save: rejected (class permanent, 1 attempt)
	// commit at offset 3
}

func ExamplePipeline_Err() {
	p := pipeline.New()
	orders := pipeline.Source(p, "orders", pipeline.Bytes())
	pipeline.Sink(orders, "save", func(context.Context, pipeline.Message[[]byte]) error { return nil })
	pipeline.Sink(orders, "audit", func(context.Context, pipeline.Message[[]byte]) error { return nil })
	fmt.Println(p.Err())
	// Output:
	// pipeline: audit: stream "orders" is already consumed by "save"; use stages.Duplicate to send it to both
}
