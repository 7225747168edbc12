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
	"github.com/sluice-go/sluice/handlers"
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
	cfg.Brokers = strings.Split(brokers, ",")
	cfg.DeadLetters.AutoCreate = 1 // dead-letter topics as the source's, replication 1 (a dev broker)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Run starts the app (or exits 1 naming what is wrong), waits for
	// SIGINT or SIGTERM, and stops it within fx's stop timeout (15s), above
	// the drain timeout.
	fx.New(app(cfg, strings.Split(topics, ","), os.Stdout, log)).Run()
}

// Output is where the app prints what it handled.
type Output struct{ io.Writer }

// Topics are the topics the pipeline reads, one Source each; the consumer
// reads the pipeline's topics.
type Topics []string

// app is the whole application as one fx option.
func app(cfg sluicefx.Config, topics Topics, out io.Writer, log *slog.Logger) fx.Option {
	return fx.Options(
		fx.WithLogger(func() fxevent.Logger { return &fxevent.SlogLogger{Logger: log} }),
		fx.Supply(cfg, topics, Output{out}),
		sluicefx.Logger(log),
		sluicefx.Module,           // consumer + metrics + /healthz /readyz /metrics
		sluicefx.DeadLetterModule, // dead letters on the consumer's connection, closed after the drain
		sluicefx.Pipeline(newPipeline),
	)
}

// newPipeline builds the application's pipeline from what the graph
// provides: JSON orders, up to 8 at once per partition (in order per key),
// a guarded "store" sink, dead letters to <topic>.dlq. The Kit wires the
// metrics, the logger and the dead letters in.
func newPipeline(topics Topics, kit sluicefx.Kit, out Output) (*pipeline.Pipeline, error) {
	lim, err := backpressure.NewAdaptive(backpressure.MaxLimit(32), backpressure.Hooks(kit.LimiterHooks("store")...))
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
	guarded, err := handlers.Guard(store, append(kit.Guard("store"), // name, logger, metrics
		handlers.Retry(handlers.RetryPolicy{}),
		handlers.Breaker(handlers.BreakerPolicy{}),
		handlers.Limiter(lim),
		handlers.Timeout(5*time.Second),
	)...)
	if err != nil {
		return nil, err
	}
	p := kit.Pipeline() // dead letters, metrics, logger
	for _, topic := range topics {
		orders := pipeline.Source(p, topic, pipeline.JSON[Order]())
		pipeline.Sink(stages.FanOut(orders, topic+"-workers", 8), topic+"-store", guarded)
	}
	return p, p.Err()
}
