// Command quickstart is the smallest useful Sluice consumer: it reads JSON
// orders from a topic, saves them with up to 8 at a time (in order per key),
// and commits an offset only once every record before it was saved.
//
// What can go wrong goes where it belongs: a record that is not valid JSON,
// or an order the sink marks Permanent, goes to the topic's dead-letter topic
// (orders.dlq) instead of stopping the partition; an error of the store (a
// database that is down) is retried with capped, jittered backoff and holds
// the partition until the store is back, so an outage loses nothing and
// dead-letters nothing. Wrap the sink with package handlers for a circuit
// breaker, adaptive concurrency, a rate limit or a retry budget.
//
// Run it against the embedded broker:
//
//	go run ./cmd/sluice dev broker --topics orders:3 &
//	go run ./examples/quickstart
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
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// Order is what the orders topic carries.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

// Store is where orders go: a database, a service. Save's errors are taken
// as transient (retried) unless marked with pipeline.Permanent.
type Store interface {
	Save(ctx context.Context, o Order) error
}

// printer is the quickstart's store: it prints each order.
type printer struct{ out io.Writer }

func (p printer) Save(_ context.Context, o Order) error {
	_, err := fmt.Fprintf(p.out, "order %s from %s: %.2f\n", o.ID, o.Customer, o.Amount)
	return err
}

// Config is what the command line sets.
type Config struct {
	Brokers []string
	Group   string
	Topic   string
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	group := flag.String("group", "quickstart", "consumer group")
	topic := flag.String("topic", "orders", "topic to consume")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := Config{Brokers: strings.Split(*brokers, ","), Group: *group, Topic: *topic}
	if err := run(ctx, cfg, printer{os.Stdout}, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run consumes until ctx is cancelled, then drains and commits.
func run(ctx context.Context, cfg Config, store Store, log *slog.Logger) error {
	conn := sluice.Connection{Brokers: cfg.Brokers} // and TLS, SASL, a client ID: given once
	dead, err := dlq.New(dlq.Connection(conn), dlq.Group(cfg.Group), dlq.AutoCreate(1))
	if err != nil {
		return err
	}
	defer dead.Close()

	p := pipeline.New(pipeline.DeadLetters(dead), pipeline.Logger(log))
	orders := pipeline.Source(p, cfg.Topic, pipeline.JSON[Order]())
	pipeline.Sink(stages.FanOut(orders, "workers", 8), "save", func(ctx context.Context, m pipeline.Message[Order]) error {
		o := m.Value()
		if o.ID == "" {
			return pipeline.Permanent(errors.New("order without an id")) // dead-lettered at once
		}
		return store.Save(ctx, o) // an error is retried with backoff: an outage holds, it does not dead-letter
	})

	c, err := consumer.New(
		consumer.Connection(conn),
		consumer.Group(cfg.Group),
		consumer.Handle(p),
		consumer.Logger(log),
	)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
