package sluicefx_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/fx"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sluicefx"
)

func Example() {
	broker, _ := devbroker.Start(devbroker.Config{Topics: []devbroker.Topic{{Name: "orders", Partitions: 1}}})
	defer broker.Close()
	addr := broker.ListenAddrs()[0]
	producer, _ := kgo.NewClient(kgo.SeedBrokers(addr))
	producer.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Value: []byte("order-1")})
	producer.Close()

	handled := make(chan string, 1)
	// The application's pipeline; the Kit comes from the fx graph and
	// wires metrics, the logger and dead letters in.
	newPipeline := func(kit sluicefx.Kit) (*pipeline.Pipeline, error) {
		store, err := handlers.Guard(func(_ context.Context, msg pipeline.Message[string]) error {
			handled <- msg.Value()
			return nil
		}, append(kit.Guard("store"), handlers.Retry(handlers.RetryPolicy{}))...)
		if err != nil {
			return nil, err
		}
		p := kit.Pipeline()
		pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "store", store)
		return p, p.Err()
	}

	app := fx.New(
		fx.NopLogger,
		fx.Supply(sluicefx.Config{Brokers: []string{addr}, Group: "example", HTTPAddr: "127.0.0.1:0"}),
		sluicefx.Logger(slog.New(slog.DiscardHandler)),
		sluicefx.Registry(prometheus.NewRegistry()),
		sluicefx.Module,           // consumer, metrics, /healthz /readyz /metrics
		sluicefx.DeadLetterModule, // dead letters on the consumer's connection
		sluicefx.Pipeline(newPipeline),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-handled)
	if err := app.Stop(ctx); err != nil { // drain, commit, leave the group
		fmt.Println(err)
	}
	// Output: order-1
}

func ExampleConfig_Validate() {
	cfg := sluicefx.Config{Brokers: []string{"localhost:9092"}, Group: "shop", DrainTimeout: 2 * time.Minute}
	fmt.Println(cfg.Validate())
	// Output: sluicefx: DrainTimeout: 2m0s must be shorter than RebalanceTimeout 1m0s, or the group evicts the member while it drains
}
