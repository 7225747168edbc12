package orders_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The pipeline fed by hand for one partition (under a consumer,
// consumer.Handle(p) does it): a good order is shipped, a test order
// filtered, a rejected order and an undecodable record dead-lettered, and
// the window's totals flushed when the partition closes.
func ExampleNew() {
	var mu sync.Mutex
	var lines []string
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	dead := &pipelinetest.DeadLetters{} // in production, a dlq.Publisher
	p, err := orders.New(orders.Config{
		Ship: func(_ context.Context, m pipeline.Message[orders.Order]) error {
			if m.Value().Amount <= 0 {
				return pipeline.Permanent(errors.New("amount rejected"))
			}
			say("shipped %s", m.Value().ID)
			return nil
		},
		Totals: func(_ context.Context, t orders.Totals) error {
			say("totals: %d orders, %.2f, early %v", t.Orders, t.Amount, t.Early)
			return nil
		},
		DeadLetters: dead,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	values := []string{
		`{"id":"o1","customer":"ada","seq":1,"amount":30,"currency":"EUR"}`,
		`{"id":"o2","customer":"ada","seq":2,"amount":5,"currency":"EUR","test":true}`,
		`{"id":"o3","customer":"bob","seq":1,"amount":-1,"currency":"EUR"}`,
		`{"id":`,
	}
	settler := pipelinetest.NewSettler()
	tp := pipeline.TopicPartition{Topic: "orders"}
	recs := settler.Records(tp, 0, len(values), func(i int, r *pipeline.Record) { r.Value = []byte(values[i]) })
	if err := pipelinetest.Feed(context.Background(), p, tp, recs, 0); err != nil {
		fmt.Println(err)
		return
	}
	for _, dl := range dead.Letters() {
		say("dead letter: %s from %s, class %s", dl.Record, dl.Stage, dl.Class)
	}
	slices.Sort(lines) // the fan-out ships customers in parallel
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Println("commit at", settler.Watermark(tp))
	// Output:
	// dead letter: orders/0@2 from ship, class permanent
	// dead letter: orders/0@3 from decode, class decode
	// shipped o1
	// totals: 2 orders, 29.00, early true
	// commit at 4
}
