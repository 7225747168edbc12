package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// This file keeps the README's pipeline example compiling and working:
// TestREADMEExample checks that the README's Go block is the code between
// the markers below, and runs it against an in-process broker.

type readmeOrder struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Test     bool   `json:"test"`
}

func readmeExample(ctx context.Context, brokers []string,
	callWarehouse func(context.Context, pipeline.Message[readmeOrder]) error,
	saveTotals func(context.Context, pipeline.Message[stages.Pane[readmeOrder]]) error) error {
	type Order = readmeOrder
	// README:begin
	conn := sluice.Connection{Brokers: brokers} // and TLS, SASL, a client ID: given once
	pub, err := dlq.New(dlq.Connection(conn), dlq.Group("shop"), dlq.AutoCreate(1))
	if err != nil {
		return err
	}
	defer pub.Close()
	ship, err := handlers.Guard(callWarehouse, // func(context.Context, pipeline.Message[Order]) error
		handlers.Name("ship"),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 5}),
		handlers.Breaker(handlers.BreakerPolicy{}),
		handlers.RateLimit(1000, 100),
		handlers.Timeout(2*time.Second))
	if err != nil {
		return err
	}

	p := pipeline.New(pipeline.DeadLetters(pub))
	orders := pipeline.Source(p, "orders", pipeline.JSON[Order]())
	valid := stages.Filter(orders, "valid", func(o Order) bool { return !o.Test })
	toTotals, toShip := stages.Duplicate2(valid, "split")
	pipeline.Sink(stages.Window(toTotals, "per-second", stages.Tumbling(time.Second)), "totals", saveTotals)
	pipeline.Sink(stages.FanOut(toShip, "ship-workers", 16), "ship", ship) // in order per key

	c, err := consumer.New(consumer.Connection(conn), consumer.Group("shop"),
		consumer.Handle(p)) // reads the topics of p's Sources
	if err != nil {
		return err
	}
	return c.Run(ctx) // until ctx is cancelled; then drain, commit, leave the group
	// README:end
}

func TestREADMEExample(t *testing.T) {
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	code := between(string(src), "\t// README:begin\n", "\t// README:end\n")
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(code, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(lines, "\n") + "\n"; !strings.Contains(string(readme), "```go\n"+want+"```") {
		t.Errorf("README.md does not show the example as it is in readme_test.go; copy it:\n%s", want)
	}

	kc := kafkatest.New(t, kafkatest.Topic("orders", 2))
	kc.Produce(t, jsonRecord("orders", "alice", `{"id":"1","customer":"alice"}`), jsonRecord("orders", "bob", `not json`))
	shipped := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- readmeExample(ctx, kc.Addrs,
			func(_ context.Context, m pipeline.Message[readmeOrder]) error { shipped <- m.Value().ID; return nil },
			func(context.Context, pipeline.Message[stages.Pane[readmeOrder]]) error { return nil })
	}()
	select {
	case id := <-shipped:
		if id != "1" {
			t.Errorf("shipped %q, want order 1", id)
		}
	case err := <-errc:
		t.Fatalf("the README example stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the README example shipped nothing in 30s")
	}
	kc.WaitCommittedEnd(t, "shop", "orders", 20*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func between(s, begin, end string) string {
	_, after, _ := strings.Cut(s, begin)
	before, _, _ := strings.Cut(after, end)
	return before
}

func jsonRecord(topic, key, value string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}
}
