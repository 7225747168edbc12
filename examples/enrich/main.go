// Command enrich is consume-transform-produce with Sluice: it reads JSON
// orders, adds the customer's tier and the amount with tax, and writes the
// result to a second topic, keyed by customer. Orders that are not valid
// JSON, or that have no ID, go to the dead-letter topic.
//
// At least once (the default), each order's output is written and
// acknowledged before the order's offset can be committed, so nothing is
// lost; an order handled again after a crash is written again. With
// --exactly-once the outputs, the dead letters and the input offsets commit
// in one Kafka transaction, so a read_committed reader of orders.enriched
// sees each order's output exactly once, across crashes and rebalances.
//
// Run it against the embedded broker:
//
//	go run ./cmd/sluice dev broker --topics orders:3,orders.enriched:3 &
//	go run ./examples/enrich --exactly-once
//
// or any Kafka with --brokers. Give each running copy its own --id in
// exactly-once mode.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
	"github.com/sluice-go/sluice/stages"
)

// Order is what the orders topic carries.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

// Enriched is what the output topic carries.
type Enriched struct {
	Order
	Tier      string  `json:"tier"`
	WithTax   float64 `json:"with_tax"`
	SourceRef string  `json:"source"`
}

// Config is what the command line sets.
type Config struct {
	Brokers     []string
	Group       string
	Input       string
	Output      string
	ExactlyOnce bool
	// ID names this copy's transactional producer in exactly-once mode:
	// one per running copy, stable across its restarts.
	ID string
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	group := flag.String("group", "enrich", "consumer group")
	in := flag.String("input", "orders", "topic to read")
	out := flag.String("output", "orders.enriched", "topic to write")
	eos := flag.Bool("exactly-once", false, "commit outputs and offsets in one transaction")
	host, _ := os.Hostname()
	id := flag.String("id", "enrich-"+host, "transactional ID of this copy (exactly-once mode)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := Config{Brokers: strings.Split(*brokers, ","), Group: *group, Input: *in, Output: *out, ExactlyOnce: *eos, ID: *id}
	if err := run(ctx, cfg, slog.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

// tier is the enrichment: in a real job, a lookup.
func tier(customer string) string {
	if strings.HasPrefix(customer, "vip-") {
		return "gold"
	}
	return "standard"
}

// enrich is the work; an error dead-letters the order.
func enrich(o Order) (Enriched, error) {
	if o.ID == "" {
		return Enriched{}, pipeline.Permanent(errors.New("order without an id"))
	}
	return Enriched{Order: o, Tier: tier(o.Customer), WithTax: o.Amount * 1.2}, nil
}

// route turns an enriched order into its output record.
func route(output string) kafka.Route[Enriched] {
	return func(m pipeline.Message[Enriched], out *kafka.Outputs) error {
		e := m.Value()
		e.SourceRef = fmt.Sprintf("%s/%d@%d", m.Topic(), m.Partition(), m.Offset())
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		out.Add(output, []byte(e.Customer), v)
		return nil
	}
}

// run consumes until ctx is cancelled, then drains and commits.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	conn := sluice.Connection{Brokers: cfg.Brokers} // and TLS, SASL, a client ID: given once
	dead, err := dlq.New(dlq.Connection(conn), dlq.Group(cfg.Group), dlq.AutoCreate(1))
	if err != nil {
		return err
	}
	defer dead.Close()
	var writerOpts []kafka.Opt
	if !cfg.ExactlyOnce {
		writerOpts = append(writerOpts, kafka.Connection(conn)) // a client of its own
	}
	w, err := kafka.NewWriter(writerOpts...)
	if err != nil {
		return err
	}
	defer w.Close()

	p := pipeline.New(pipeline.DeadLetters(dead), pipeline.Logger(log))
	orders := pipeline.Source(p, cfg.Input, pipeline.JSON[Order]())
	// What can fail for one order fails before batching, so that a bad
	// order is dead-lettered alone.
	enriched := stages.TryMap(orders, "enrich", enrich)
	// Batches of up to 200 orders per partition (or what came within 5ms)
	// are written together: one broker round trip per batch, not per order.
	batches := stages.Batches(enriched, "batches", 200, 5*time.Millisecond)
	pipeline.Sink(batches, "write", kafka.BatchSink(w, route(cfg.Output)))

	opts := []consumer.Opt{consumer.Connection(conn), consumer.Group(cfg.Group), consumer.Handle(p), consumer.Logger(log)}
	if cfg.ExactlyOnce {
		opts = append(opts, consumer.ExactlyOnce(cfg.ID, w, dead),
			// dead letters of source partition p go to partition p
			consumer.ClientOpts(kgo.RecordPartitioner(dlq.Partitioner(nil))))
	}
	c, err := consumer.New(opts...)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
