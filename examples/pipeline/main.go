// Command pipeline runs the example pipeline of package orders under a
// Sluice consumer: JSON orders are decoded (undecodable ones dead-lettered),
// test orders filtered out, and every other order sent both to per-second
// totals and, key-ordered per customer, to a simulated warehouse behind every
// guard (deadline budget, retry, breaker, rate limit, adaptive concurrency,
// per-attempt timeout, panic recovery). Orders the warehouse rejects
// (amount <= 0) and orders that crash its client (unknown currency) go to
// orders.dlq with their provenance.
//
// Run it against the embedded broker:
//
//	go run ./cmd/sluice dev broker --topics orders:3 &
//	go run ./examples/pipeline
//
// or any Kafka with --brokers.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/pipeline"
)

// Config is what the command line sets.
type Config struct {
	Brokers []string
	Group   string
	Topic   string
	// Workers is the fan-out's workers per partition.
	Workers int
	// Latency is the simulated warehouse's latency per call.
	Latency time.Duration
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	group := flag.String("group", "pipeline-example", "consumer group")
	topic := flag.String("topic", "orders", "topic to consume")
	workers := flag.Int("workers", 16, "key-ordered fan-out workers per partition")
	latency := flag.Duration("latency", 5*time.Millisecond, "simulated warehouse latency per call")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := Config{Brokers: strings.Split(*brokers, ","), Group: *group, Topic: *topic, Workers: *workers, Latency: *latency}
	if err := run(ctx, cfg, os.Stdout, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// run consumes until ctx is cancelled, then drains (flushing the open
// windows) and commits.
func run(ctx context.Context, cfg Config, out io.Writer, log *slog.Logger) error {
	conn := sluice.Connection{Brokers: cfg.Brokers} // and TLS, SASL, a client ID: given once
	dead, err := dlq.New(dlq.Connection(conn), dlq.Group(cfg.Group), dlq.AutoCreate(1))
	if err != nil {
		return err
	}
	defer dead.Close()

	w := &warehouse{out: out, latency: cfg.Latency, rates: map[string]*float64{"EUR": ptr(1.0), "USD": ptr(0.92)}}
	p, err := orders.New(orders.Config{
		Topic:       cfg.Topic,
		Ship:        w.ship,
		Totals:      w.totals,
		DeadLetters: dead,
		Logger:      log,
		Workers:     cfg.Workers,
	})
	if err != nil {
		return err
	}
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

// warehouse stands in for the downstream service an order is shipped to.
type warehouse struct {
	latency time.Duration
	rates   map[string]*float64 // exchange rates to EUR

	mu  sync.Mutex // serialises lines on out
	out io.Writer
}

func (w *warehouse) ship(ctx context.Context, m pipeline.Message[orders.Order]) error {
	o := m.Value()
	t := time.NewTimer(w.latency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if o.Amount <= 0 {
		// A 4xx: the warehouse answered, and will never accept this order.
		return pipeline.Permanent(fmt.Errorf("order %s: amount %.2f rejected", o.ID, o.Amount))
	}
	// A bug in the warehouse client: an unknown currency dereferences a
	// nil rate and panics. The guard recovers it; the order is
	// dead-lettered with class panic and the partition keeps flowing.
	eur := o.Amount * *w.rates[o.Currency]
	w.printf("shipped %s: customer %s #%d, %.2f EUR\n", o.ID, o.Customer, o.Seq, eur)
	return nil
}

func (w *warehouse) totals(_ context.Context, t orders.Totals) error {
	early := ""
	if t.Early {
		early = " (flushed early)"
	}
	w.printf("totals %s-%s: %d orders, %.2f%s\n", t.Start.Format(time.TimeOnly), t.End.Format(time.TimeOnly), t.Orders, t.Amount, early)
	return nil
}

func (w *warehouse) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format, args...)
}

func ptr[T any](v T) *T { return &v }
