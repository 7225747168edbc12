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
	loud := func(m pipeline.Message[string]) ([]kafka.Output, error) {
		return []kafka.Output{{Topic: "orders.loud", Key: m.Key(), Value: []byte(fmt.Sprintf("%s!", m.Value()))}}, nil
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
