// Command fxapp is a Sluice consumer assembled with go.uber.org/fx and
// package sluicefx: configuration in a sluicefx.Config, the consumer run
// under the fx lifecycle, Prometheus metrics and /healthz, /readyz and
// /metrics on one HTTP listener, a dead-letter publisher closed after the
// consumer has drained, and a graceful stop on SIGINT or SIGTERM (stop
// fetching, let in-flight orders finish, commit, leave the group).
//
// Run it against the embedded broker:
//
//	go run ./cmd/sluice dev broker --topics orders:3 &
//	go run ./examples/fxapp
//	curl localhost:8080/readyz
//
// or any Kafka with --brokers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sluicefx"
	"github.com/sluice-go/sluice/stages"
)

// Order is what the orders topic carries.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

func main() {
	cfg := sluicefx.Config{}
	var brokers, topics string
	flag.StringVar(&brokers, "brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	flag.StringVar(&cfg.Group, "group", "fxapp", "consumer group")
	flag.StringVar(&topics, "topics", "orders", "topics to consume, comma-separated")
	flag.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "where to serve /healthz, /readyz and /metrics")
	flag.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "how long a stop waits for in-flight orders")
	flag.Parse()
	cfg.Brokers, cfg.Topics = strings.Split(brokers, ","), strings.Split(topics, ",")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Run starts the app (or exits 1 naming what is wrong), waits for
	// SIGINT or SIGTERM, and stops it within fx's stop timeout (15s), above
	// the drain timeout.
	fx.New(app(cfg, os.Stdout, log)).Run()
}

// Output is where the app prints what it handled.
type Output struct{ io.Writer }

// app is the whole application as one fx option.
func app(cfg sluicefx.Config, out io.Writer, log *slog.Logger) fx.Option {
	return fx.Options(
		fx.WithLogger(func() fxevent.Logger { return &fxevent.SlogLogger{Logger: log} }),
		fx.Supply(cfg, Output{out}),
		sluicefx.Logger(log),
		sluicefx.Module, // consumer + metrics + /healthz /readyz /metrics
		fx.Provide(newDeadLetters),
		sluicefx.Pipeline(newPipeline),
	)
}

// newDeadLetters is the dead-letter publisher, with its own client on the
// config's connection, instrumented by the app's metrics. It is closed on
// stop after the consumer has drained: it is constructed before the
// pipeline, so its stop hook runs after the consumer's.
func newDeadLetters(lc fx.Lifecycle, cfg sluicefx.Config, m *metrics.Metrics) (*dlq.Publisher, error) {
	// The publisher creates its client now, and a client created by a
	// start that fails later is never closed: check the config (the
	// consumer checks it too, after this) before. Errors name the field.
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := cfg.KafkaOpts()
	if err != nil {
		return nil, err
	}
	pub, err := dlq.New(dlq.Brokers(cfg.Brokers...), dlq.Group(cfg.Group), dlq.AutoCreate(1),
		dlq.Hooks(m), dlq.ClientOpts(append(conn, m.KafkaClient("dlq"))...))
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(pub.Close))
	return pub, nil
}

// newPipeline builds the application's pipeline from what the graph
// provides: JSON orders, up to 8 at once per partition (in order per key),
// a guarded "store" sink, dead letters to <topic>.dlq.
func newPipeline(cfg sluicefx.Config, m *metrics.Metrics, log *slog.Logger, pub *dlq.Publisher, out Output) (*pipeline.Pipeline, error) {
	lim, err := backpressure.NewAdaptive(backpressure.MaxLimit(32), backpressure.Hooks(m.Limiter("store")))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	store := func(ctx context.Context, msg pipeline.Message[Order]) error {
		o := msg.Value()
		if o.ID == "" {
			return pipeline.Permanent(errors.New("order without an id"))
		}
		mu.Lock()
		defer mu.Unlock()
		_, err := fmt.Fprintf(out, "stored order %s from %s: %.2f\n", o.ID, o.Customer, o.Amount)
		return err
	}
	guarded, err := handlers.Guard(store,
		handlers.Name("store"),
		handlers.Logger(log),
		handlers.Hooks(m),
		handlers.Retry(handlers.RetryPolicy{}),
		handlers.Breaker(handlers.BreakerPolicy{}),
		handlers.Limiter(lim),
		handlers.Timeout(5*time.Second),
	)
	if err != nil {
		return nil, err
	}
	p := pipeline.New(pipeline.DeadLetters(pub), pipeline.Hooks(m), pipeline.Logger(log))
	for _, topic := range cfg.Topics {
		orders := pipeline.Source(p, topic, pipeline.JSON[Order]())
		pipeline.Sink(stages.FanOut(orders, topic+"-workers", 8), topic+"-store", guarded)
	}
	return p, p.Err()
}
