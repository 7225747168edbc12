// Command quickstart is the smallest useful Sluice consumer: it reads JSON
// orders from a topic, handles them with up to 8 at a time (in order per
// key), and commits an offset only once every record before it was handled.
// Records that are not valid JSON go to the topic's dead-letter topic
// (orders.dlq) instead of stopping the partition.
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
	if err := run(ctx, cfg, os.Stdout, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run consumes until ctx is cancelled, then drains and commits.
func run(ctx context.Context, cfg Config, out io.Writer, log *slog.Logger) error {
	dead, err := dlq.New(dlq.Brokers(cfg.Brokers...), dlq.Group(cfg.Group), dlq.AutoCreate(1))
	if err != nil {
		return err
	}
	defer dead.Close()

	p := pipeline.New(pipeline.DeadLetters(dead), pipeline.Logger(log))
	orders := pipeline.Source(p, cfg.Topic, pipeline.JSON[Order]())
	pipeline.Sink(stages.FanOut(orders, "workers", 8), "print", func(ctx context.Context, m pipeline.Message[Order]) error {
		o := m.Value()
		if o.ID == "" {
			return errors.New("order without an id") // dead-lettered
		}
		_, err := fmt.Fprintf(out, "order %s from %s: %.2f\n", o.ID, o.Customer, o.Amount)
		return err
	})

	c, err := consumer.New(
		consumer.Brokers(cfg.Brokers...),
		consumer.Group(cfg.Group),
		consumer.Topics(cfg.Topic),
		consumer.Handle(p),
		consumer.Logger(log),
	)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
