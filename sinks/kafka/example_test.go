package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
)

// Read "orders", write each order upper-cased to "orders.loud"; the
// consumer and the writer share one connection.
func ExampleSink() {
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "orders.loud"))
	defer cluster.Close()
	conn := sluice.Connection{Brokers: cluster.ListenAddrs()}
	producer, _ := kgo.NewClient(conn.ClientOpts()...)
	defer producer.Close()
	producer.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte("order-1")})

	w, err := kafka.NewWriter(kafka.Connection(conn))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	loud := func(m pipeline.Message[string], out *kafka.Outputs) error {
		out.Add("orders.loud", m.Key(), []byte(m.Value()+"!"))
		return nil
	}
	p := pipeline.New(pipeline.Logger(slog.New(slog.DiscardHandler)))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "loud", kafka.Sink(w, loud))
	c, err := consumer.New(consumer.Connection(conn), consumer.Group("example"), consumer.Handle(p),
		consumer.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	reader, _ := kgo.NewClient(append(conn.ClientOpts(), kgo.ConsumeTopics("orders.loud"))...)
	defer reader.Close()
	fetchCtx, cancelFetch := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelFetch()
	fetches := reader.PollFetches(fetchCtx)
	fetches.EachRecord(func(r *kgo.Record) { fmt.Printf("%s %s\n", r.Key, r.Value) })
	cancel() // drain, commit, leave the group
	fmt.Println(<-done)
	// Output:
	// alice order-1!
	// <nil>
}

func ExampleNewWriter_configError() {
	_, err := kafka.NewWriter(kafka.Connection(sluice.Connection{}))
	fmt.Println(err)
	// Output: kafka: Connection.Brokers: at least one broker address (host:port) is required
}

// A Route adds what a message becomes: here every order goes to
// "orders.enriched", and a large one to "orders.large" too, with a header.
// The zero Outputs is ready to use, which is how a test calls a Route.
func ExampleRoute() {
	var route kafka.Route[int] = func(m pipeline.Message[int], out *kafka.Outputs) error {
		out.Add("orders.enriched", m.Key(), fmt.Appendf(nil, "amount=%d", m.Value()))
		if m.Value() > 100 {
			out.Add("orders.large", m.Key(), nil, pipeline.Header{Key: "reason", Value: []byte("amount")})
		}
		return nil
	}
	var out kafka.Outputs
	err := route(pipeline.NewMessage(250, &pipeline.Record{Topic: "orders", Key: []byte("alice")}), &out)
	fmt.Println(out.Len(), err)
	// Output: 2 <nil>
}
