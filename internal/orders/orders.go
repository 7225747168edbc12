// Package orders is the pipeline of examples/pipeline, also run by `sluice
// demo`: JSON orders are decoded, test orders filtered out, and every other
// order goes both to per-second totals (a tumbling window) and, in parallel
// across customers but in order per customer, to a shipping downstream
// guarded by every guard of package handlers. Records that cannot be handled
// go to the dead-letter topic.
//
//	source "orders" (raw bytes)
//	  -> Decode "decode" (JSON; undecodable -> dead letter, class decode)
//	  -> Filter "valid" (drops test orders)
//	  -> Duplicate2 "split"
//	       -> Window "per-second" (tumbling, processing time) -> sink "totals"
//	       -> FanOut "ship-workers" (key-ordered) -> sink "ship", guarded:
//	          deadline budget -> retry -> breaker -> rate limit
//	            -> adaptive concurrency -> per-attempt timeout -> panic recovery
//	            -> the downstream call
//
// The record key is the customer, so a customer's orders reach the
// downstream one at a time in the order they were produced, while different
// customers' orders run in parallel even inside one partition.
package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// Order is what the orders topic carries, keyed by Customer.
type Order struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	// Seq numbers a customer's orders from 1, in the order they were
	// produced: a consumer that sees them out of order broke key order.
	Seq      int     `json:"seq"`
	Amount   float64 `json:"amount"`
	Currency string  `json:"currency"`
	// Test orders are dropped by the filter stage.
	Test bool `json:"test,omitempty"`
}

// Totals is what the window branch computes for each window.
type Totals struct {
	// Start and End bound the window: [Start, End).
	Start, End time.Time
	// Orders is how many orders fell in the window, Amount their sum.
	Orders int
	Amount float64
	// Early says the window was flushed before it ended, because its
	// partition was closed (rebalance or shutdown).
	Early bool
}

// Stage and sink names. They label dead letters (sluice.dlq.stage), logs and
// metrics (stage and sink labels).
const (
	StageDecode  = "decode"
	StageValid   = "valid"
	StageSplit   = "split"
	StageWindow  = "per-second"
	SinkTotals   = "totals"
	StageWorkers = "ship-workers"
	SinkShip     = "ship"
)

// Config configures the pipeline. Zero fields take the defaults given.
type Config struct {
	// Topic is the source topic. Default "orders".
	Topic string
	// Ship is the downstream call for each order. Required. Return
	// pipeline.Permanent (or an HTTP 4xx through handlers.CheckHTTP) for an
	// order the downstream rejects: it is dead-lettered at once. Any other
	// error is retried.
	Ship func(context.Context, pipeline.Message[Order]) error
	// Totals receives each window's totals. Required.
	Totals func(context.Context, Totals) error
	// DeadLetters parks what cannot be handled, usually a *dlq.Publisher.
	// Default none: a failed record is held unsettled and its partition's
	// commits stop before it (see pipeline.DeadLetters).
	DeadLetters pipeline.DeadLetterer
	// Metrics, when set, observes the pipeline, the guards and the
	// concurrency limiter.
	Metrics *metrics.Metrics
	// PipelineHooks and GuardHooks are further observers of the pipeline
	// (pipeline.Hooks) and of the ship guards (handlers.Hooks).
	PipelineHooks []pipeline.Hook
	GuardHooks    []handlers.Hook
	// Logger gets the pipeline's and the guards' logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Workers is the key-ordered fan-out's workers per partition: how many
	// customers of one partition are shipped at once. Default 16.
	Workers int
	// Window is the length of the totals windows. Default 1s.
	Window time.Duration
	// Guards tunes the ship sink's guards.
	Guards Guards
}

// Guards tunes the guards of the ship sink. Zero fields take the defaults
// given; the policies' own zero fields take the handlers package defaults.
type Guards struct {
	// Budget is the longest an order may spend in the ship sink, waits
	// for an open breaker included; then it is dead-lettered with class
	// deadline. Default 2m, longer than the outages this example rides out:
	// a downstream that is down is waited for, not a reason to give up
	// orders (a shorter budget trades that for bounded staleness).
	Budget time.Duration
	// Retry retries transient failures. Default MaxAttempts 5, BaseDelay
	// 50ms, MaxDelay 2s.
	Retry handlers.RetryPolicy
	// Breaker stops calling a downstream that is down. Default: the
	// handlers defaults (opens at 50% failures over 10s, or 5 failures in a
	// row at low traffic; probes after 5s).
	Breaker handlers.BreakerPolicy
	// Rate caps the calls per second, retries included; Burst is the
	// bucket size. Defaults 2000 and 100.
	Rate  rate.Limit
	Burst int
	// MaxConcurrency caps the adaptive concurrency limiter, which finds
	// the downstream's capacity from its latency. Default 64.
	MaxConcurrency int
	// Timeout bounds each call. Default 2s.
	Timeout time.Duration
	// Limiter replaces the adaptive limiter (MaxConcurrency is then
	// unused).
	Limiter backpressure.Limiter
}

func (c *Config) defaults() {
	if c.Topic == "" {
		c.Topic = "orders"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.Window == 0 {
		c.Window = time.Second
	}
	g := &c.Guards
	if g.Budget == 0 {
		g.Budget = 2 * time.Minute
	}
	if g.Retry.MaxAttempts == 0 {
		g.Retry.MaxAttempts = 5
	}
	if g.Retry.BaseDelay == 0 {
		g.Retry.BaseDelay = 50 * time.Millisecond
	}
	if g.Retry.MaxDelay == 0 {
		g.Retry.MaxDelay = 2 * time.Second
	}
	if g.Rate == 0 {
		g.Rate = 2000
	}
	if g.Burst == 0 {
		g.Burst = 100
	}
	if g.MaxConcurrency == 0 {
		g.MaxConcurrency = 64
	}
	if g.Timeout == 0 {
		g.Timeout = 2 * time.Second
	}
}

// New builds the pipeline; hand it to consumer.Handle. Configuration
// mistakes are returned, naming the field or the guard option at fault.
func New(cfg Config) (*pipeline.Pipeline, error) {
	cfg.defaults()
	switch {
	case cfg.Ship == nil:
		return nil, errors.New("orders: Config.Ship is required")
	case cfg.Totals == nil:
		return nil, errors.New("orders: Config.Totals is required")
	}
	ship, err := guard(cfg)
	if err != nil {
		return nil, fmt.Errorf("orders: ship guards: %w", err)
	}

	hooks := cfg.PipelineHooks
	if cfg.Metrics != nil {
		hooks = append(hooks, cfg.Metrics)
	}
	p := pipeline.New(pipeline.DeadLetters(cfg.DeadLetters), pipeline.Logger(cfg.Logger), pipeline.Hooks(hooks...))
	raw := pipeline.Source(p, cfg.Topic, pipeline.Bytes())
	orders := stages.Decode(raw, StageDecode, pipeline.JSON[Order]())
	valid := stages.Filter(orders, StageValid, func(o Order) bool { return !o.Test })
	toTotals, toShip := stages.Duplicate2(valid, StageSplit)
	windows := stages.Window(toTotals, StageWindow, stages.Tumbling(cfg.Window))
	pipeline.Sink(windows, SinkTotals, func(ctx context.Context, m pipeline.Message[stages.Pane[Order]]) error {
		pane := m.Value()
		t := Totals{Start: pane.Start, End: pane.End, Orders: len(pane.Items), Early: pane.Early}
		for _, it := range pane.Items {
			t.Amount += it.Value().Amount
		}
		return cfg.Totals(ctx, t)
	})
	pipeline.Sink(stages.FanOut(toShip, StageWorkers, cfg.Workers), SinkShip, ship)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// guard wraps the ship call in every guard, in the handlers package's fixed
// order: budget, retry, breaker, rate limit, limiter, timeout, recovery.
func guard(cfg Config) (handlers.Guarded[pipeline.Message[Order]], error) {
	g := cfg.Guards
	lim := g.Limiter
	if lim == nil {
		opts := []backpressure.AdaptiveOpt{backpressure.MaxLimit(g.MaxConcurrency), backpressure.InitialLimit(min(20, g.MaxConcurrency))}
		if cfg.Metrics != nil {
			opts = append(opts, backpressure.Hooks(cfg.Metrics.Limiter(SinkShip)))
		}
		a, err := backpressure.NewAdaptive(opts...)
		if err != nil {
			return nil, err
		}
		lim = a
	}
	hooks := cfg.GuardHooks
	if cfg.Metrics != nil {
		hooks = append(hooks, cfg.Metrics)
	}
	return handlers.Guard(cfg.Ship,
		handlers.Name(SinkShip),
		handlers.Logger(cfg.Logger),
		handlers.Hooks(hooks...),
		handlers.Budget(g.Budget),
		handlers.Retry(g.Retry),
		handlers.Breaker(g.Breaker),
		handlers.RateLimit(g.Rate, g.Burst),
		handlers.Limiter(lim),
		handlers.Timeout(g.Timeout),
	)
}
