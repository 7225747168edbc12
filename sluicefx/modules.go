package sluicefx

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/tracing"
)

// Value groups the modules read. Provide into them to extend the consumer
// (fx struct tags need the literal names).
const (
	// GroupConsumerHooks collects consumer.Hook values passed to
	// consumer.Hooks. MetricsModule adds its *metrics.Metrics.
	GroupConsumerHooks = "sluice.consumer.hooks"
	// GroupClientOpts collects kgo.Opt values passed to the consumer's
	// client (consumer.ClientOpts): MetricsModule adds kprom, TracingModule
	// kotel. Their order is not defined, so do not provide options whose
	// effect depends on it.
	GroupClientOpts = "sluice.consumer.client_opts"
	// GroupMetricsOpts collects metrics.Opt values passed to metrics.New
	// (see MetricsOptions).
	GroupMetricsOpts = "sluice.metrics.opts"
)

// Module is ConsumerModule, MetricsModule and HealthModule: a consumer run
// under the fx lifecycle, its Prometheus metrics, and an HTTP server of
// /healthz, /readyz and /metrics. The application supplies a Config, a
// pipeline.Handler (Pipeline), and optionally a *slog.Logger (Logger) and a
// prometheus.Registerer (Registry). Add TracingModule for OpenTelemetry.
var Module = fx.Module("sluice", ConsumerModule, MetricsModule, HealthModule)

// ConsumerModule provides the *consumer.Consumer (NewConsumer) and runs it:
// OnStart starts it in a goroutine and returns at once, OnStop drains and
// commits within the stop timeout, and stops at once when the timeout
// passes (Runner). A fatal consumer error shuts the application down with
// exit code 1. It provides *Runner too, whose Done and Err say when and why
// the consumer stopped.
var ConsumerModule = fx.Module("sluice.consumer",
	fx.Provide(NewConsumer, newFxRunner),
	fx.Invoke(func(*Runner) {}),
)

// MetricsModule provides the *metrics.Metrics (NewMetrics), registered on
// the application's prometheus.Registerer, or on a registry of its own when
// the application provides none. It hooks them into the consumer and its
// client (GroupConsumerHooks, GroupClientOpts), into DeadLetterModule's
// publisher and its client, and watches the consumer for lag and stalls.
// The pipeline and its guards get them through Kit (Kit.Pipeline,
// Kit.Guard, Kit.LimiterHooks).
var MetricsModule = fx.Module("sluice.metrics",
	fx.Provide(NewMetrics),
	fx.Invoke(watchConsumer),
)

// HealthModule serves /healthz, /readyz (from the consumer's Status) and
// /metrics (MetricsModule's Scrape, when present) on Config.HTTPAddr. The
// listener is opened when the server is constructed, so a taken port fails
// the application's start; OnStop closes it.
var HealthModule = fx.Module("sluice.health",
	fx.Provide(NewHealthServer),
	fx.Invoke(runHealthServer),
)

// DeadLetterModule provides the *dlq.Publisher (NewDeadLetters): dead
// letters written with a client of its own on the Config's connection
// (Config.Connection: the consumer's brokers, SASL, TLS and client ID),
// the Config's Group and DeadLetters settings, instrumented by
// MetricsModule and TracingModule when present. The pipeline gets it
// through Kit.Pipeline. Its client closes at stop, after the consumer has
// drained (which may still write dead letters).
var DeadLetterModule = fx.Module("sluice.dlq",
	fx.Provide(NewDeadLetters),
)

// TracingModule provides a *tracing.Tracer (NewTracer) on the
// application's trace.TracerProvider (otel's global one when it provides
// none) and adds kotel client tracing to the consumer's client and to
// DeadLetterModule's. Kit.Pipeline hands the pipeline the traced
// publisher (Tracer.DeadLetterer); the application wraps its sinks with
// tracing.Sink.
var TracingModule = fx.Module("sluice.tracing",
	fx.Provide(NewTracer),
)

// Pipeline provides the application's pipeline as the consumer's
// pipeline.Handler. ctor is an fx constructor returning a
// *pipeline.Pipeline (or another pipeline.Handler implementation) and
// optionally an error; its parameters come from the graph, for example
// *metrics.Metrics and *tracing.Tracer.
func Pipeline(ctor any) fx.Option {
	return fx.Provide(fx.Annotate(ctor, fx.As(new(pipeline.Handler))))
}

// Registry provides reg as the prometheus.Registerer of MetricsModule and,
// when it also is a prometheus.Gatherer (a *prometheus.Registry is), as
// the Gatherer served on /metrics.
func Registry(reg prometheus.Registerer) fx.Option {
	opts := []fx.Option{fx.Provide(func() prometheus.Registerer { return reg })}
	if g, ok := reg.(prometheus.Gatherer); ok {
		opts = append(opts, fx.Provide(func() prometheus.Gatherer { return g }))
	}
	return fx.Options(opts...)
}

// MetricsOptions passes options to metrics.New in MetricsModule, for
// example metrics.LagInterval. Give each kind of option once: their order
// is not defined.
func MetricsOptions(opts ...metrics.Opt) fx.Option {
	anns := make([]any, len(opts))
	for i, o := range opts {
		anns[i] = fx.Annotate(func() metrics.Opt { return o }, fx.ResultTags(`group:"sluice.metrics.opts"`))
	}
	return fx.Provide(anns...)
}

// Logger provides l as the modules' logger. fx's own event log is the
// application's choice (fx.WithLogger with fxevent.SlogLogger).
func Logger(l *slog.Logger) fx.Option { return fx.Supply(l) }

// ConsumerParams are NewConsumer's inputs.
type ConsumerParams struct {
	fx.In

	Config  Config
	Handler pipeline.Handler
	// Logger defaults to slog.Default().
	Logger     *slog.Logger    `optional:"true"`
	Hooks      []consumer.Hook `group:"sluice.consumer.hooks"`
	ClientOpts []kgo.Opt       `group:"sluice.consumer.client_opts"`
}

// ConsumerResult is NewConsumer's output.
type ConsumerResult struct {
	fx.Out

	Consumer *consumer.Consumer
}

// NewConsumer builds a consumer from the config, the handler, the logger,
// the hooks and the client options. Configuration errors are
// *sluice.ConfigError naming the Config field (see Config.Validate). It
// does not contact the brokers. Without fx, fill in the params directly.
func NewConsumer(p ConsumerParams) (ConsumerResult, error) {
	opts, err := p.Config.ConsumerOpts()
	if err != nil {
		return ConsumerResult{}, err
	}
	opts = append(opts, consumer.Handle(p.Handler), consumer.Hooks(p.Hooks...), consumer.ClientOpts(p.ClientOpts...))
	if p.Logger != nil {
		opts = append(opts, consumer.Logger(p.Logger))
	}
	c, err := consumer.New(opts...)
	if err != nil {
		return ConsumerResult{}, fieldError(err)
	}
	return ConsumerResult{Consumer: c}, nil
}

// DeadLetterParams are NewDeadLetters's inputs.
type DeadLetterParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    Config
	Logger    *slog.Logger     `optional:"true"`
	Metrics   *metrics.Metrics `optional:"true"`
	Tracer    *tracing.Tracer  `optional:"true"`
}

// NewDeadLetters validates the config (the publisher creates its client
// now, and a start that fails later would not close it) and returns the
// dead-letter publisher on the config's connection; it closes on stop.
// Errors name the Config field.
func NewDeadLetters(p DeadLetterParams) (*dlq.Publisher, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	conn, err := p.Config.Connection()
	if err != nil {
		return nil, err
	}
	opts := []dlq.Opt{dlq.Connection(conn), dlq.Group(p.Config.groupName())}
	if d := p.Config.DeadLetters; d.Suffix != "" {
		opts = append(opts, dlq.Suffix(d.Suffix))
	}
	if d := p.Config.DeadLetters; d.AutoCreate != 0 {
		opts = append(opts, dlq.AutoCreate(d.AutoCreate))
	}
	var clientOpts []kgo.Opt
	if p.Logger != nil {
		clientOpts = append(clientOpts, kgo.WithLogger(kslog.New(p.Logger.With("lib", "franz-go", "client", "dlq"))))
	}
	if p.Metrics != nil {
		opts = append(opts, dlq.Hooks(p.Metrics))
		clientOpts = append(clientOpts, p.Metrics.KafkaClient("dlq"))
	}
	if p.Tracer != nil {
		clientOpts = append(clientOpts, p.Tracer.KafkaClient())
	}
	pub, err := dlq.New(append(opts, dlq.ClientOpts(clientOpts...))...)
	if err != nil {
		return nil, fmt.Errorf("sluicefx: dead letters: %w", err)
	}
	p.Lifecycle.Append(fx.StopHook(pub.Close))
	return pub, nil
}

// Kit is what the modules give the application's pipeline constructor to
// wire the pipeline and its guards in one place: take it as a parameter
// (it is an fx.In struct) and use Pipeline, Guard and LimiterHooks;
// what a module that is absent would provide is left out.
//
//	func newPipeline(kit sluicefx.Kit) (*pipeline.Pipeline, error) {
//		store, err := handlers.Guard(save, append(kit.Guard("store"), handlers.Retry(handlers.RetryPolicy{}))...)
//		...
//		p := kit.Pipeline() // dead letters, metrics, logger
//		pipeline.Sink(pipeline.Source(p, "orders", pipeline.JSON[Order]()), "store", store)
//		return p, p.Err()
//	}
type Kit struct {
	fx.In

	// Logger is the modules' logger; nil: slog.Default().
	Logger *slog.Logger `optional:"true"`
	// Metrics is MetricsModule's; nil without it.
	Metrics *metrics.Metrics `optional:"true"`
	// Tracer is TracingModule's; nil without it.
	Tracer *tracing.Tracer `optional:"true"`
	// DeadLetters is DeadLetterModule's publisher; nil without it.
	DeadLetters *dlq.Publisher `optional:"true"`
}

// Pipeline returns pipeline.New with the kit's dead-letter publisher
// (traced when TracingModule is present, and wrapped with
// consumer.ShareDeadLetters, which changes nothing for a consumer group and
// releases a share group's transient failures for redelivery until their
// last delivery), metrics hooks and logger, then opts.
func (k Kit) Pipeline(opts ...pipeline.Opt) *pipeline.Pipeline {
	var base []pipeline.Opt
	if k.DeadLetters != nil {
		var dl pipeline.DeadLetterer = k.DeadLetters
		if k.Tracer != nil {
			dl = k.Tracer.DeadLetterer(dl)
		}
		base = append(base, pipeline.DeadLetters(consumer.ShareDeadLetters(dl)))
	}
	if k.Metrics != nil {
		base = append(base, pipeline.Hooks(k.Metrics))
	}
	if k.Logger != nil {
		base = append(base, pipeline.Logger(k.Logger))
	}
	return pipeline.New(append(base, opts...)...)
}

// Guard returns the guard options every sink's guard chain shares: its
// name, the logger and the metrics hooks. Append the sink's own policies
// (handlers.Retry, handlers.Breaker, handlers.Limiter...).
func (k Kit) Guard(name string) []handlers.Opt {
	opts := []handlers.Opt{handlers.Name(name)}
	if k.Logger != nil {
		opts = append(opts, handlers.Logger(k.Logger))
	}
	if k.Metrics != nil {
		opts = append(opts, handlers.Hooks(k.Metrics))
	}
	return opts
}

// LimiterHooks returns the hooks that export the concurrency limiter of
// sink name (metrics.Limiter), none without MetricsModule; pass them to
// backpressure.Hooks.
func (k Kit) LimiterHooks(name string) []backpressure.Hook {
	if k.Metrics == nil {
		return nil
	}
	return []backpressure.Hook{k.Metrics.Limiter(name)}
}

type runnerParams struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Consumer   *consumer.Consumer
	Logger     *slog.Logger `optional:"true"`
}

func newFxRunner(p runnerParams) *Runner {
	r := NewRunner(p.Consumer, p.Logger, func(error) {
		// The consumer has logged the error; stop the application so that
		// its supervisor restarts it.
		_ = p.Shutdowner.Shutdown(fx.ExitCode(1))
	})
	p.Lifecycle.Append(fx.Hook{OnStart: r.Start, OnStop: r.Stop})
	return r
}

// Scrape is what HealthModule serves on /metrics: the application's
// prometheus.Gatherer, its Registerer when that is also a Gatherer, or
// MetricsModule's own registry.
type Scrape struct {
	prometheus.Gatherer
}

// MetricsParams are NewMetrics's inputs; all are optional.
type MetricsParams struct {
	fx.In

	Registerer prometheus.Registerer `optional:"true"`
	Gatherer   prometheus.Gatherer   `optional:"true"`
	Logger     *slog.Logger          `optional:"true"`
	Options    []metrics.Opt         `group:"sluice.metrics.opts"`
}

// MetricsResult is NewMetrics's output.
type MetricsResult struct {
	fx.Out

	Metrics   *metrics.Metrics
	Scrape    Scrape
	Hook      consumer.Hook `group:"sluice.consumer.hooks"`
	ClientOpt kgo.Opt       `group:"sluice.consumer.client_opts"`
}

// NewMetrics creates the metrics on the given Registerer (a registry of its
// own when nil) and the client option that adds franz-go's kprom metrics to
// the consumer's client (role "consumer").
func NewMetrics(p MetricsParams) (MetricsResult, error) {
	reg, g := p.Registerer, p.Gatherer
	if reg == nil {
		own := prometheus.NewRegistry()
		reg = own
		if g == nil {
			g = own
		} else {
			g = prometheus.Gatherers{g, own}
		}
	}
	if g == nil {
		g, _ = reg.(prometheus.Gatherer)
	}
	var opts []metrics.Opt
	if p.Logger != nil {
		opts = append(opts, metrics.Logger(p.Logger))
	}
	opts = append(opts, p.Options...)
	m, err := metrics.New(reg, opts...)
	if err != nil {
		return MetricsResult{}, fmt.Errorf("sluicefx: %w", err)
	}
	return MetricsResult{Metrics: m, Scrape: Scrape{g}, Hook: m, ClientOpt: m.KafkaClient("consumer")}, nil
}

type watchParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Metrics   *metrics.Metrics
	Consumer  *consumer.Consumer `optional:"true"`
}

// watchConsumer exports the consumer's lag and stalls while the
// application runs.
func watchConsumer(p watchParams) {
	if p.Consumer == nil {
		return
	}
	var stop func()
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			stop = p.Metrics.Watch(p.Consumer)
			return nil
		},
		OnStop: func(context.Context) error {
			stop()
			return nil
		},
	})
}

// HealthParams are NewHealthServer's inputs.
type HealthParams struct {
	fx.In

	Config   Config
	Consumer *consumer.Consumer
	// Scrape is served on /metrics when it holds a Gatherer.
	Scrape Scrape       `optional:"true"`
	Logger *slog.Logger `optional:"true"`
}

// NewHealthServer listens on Config.HTTPAddr and returns the server of
// /healthz, /readyz and /metrics; run it with Run, or let HealthModule do
// so.
func NewHealthServer(p HealthParams) (*health.Server, error) {
	var ready []health.ReadyOpt
	if p.Config.StalledUnready {
		ready = append(ready, health.StalledUnready())
	}
	opts := []health.Opt{health.Status(p.Consumer, ready...), health.Logger(p.Logger)}
	if p.Scrape.Gatherer != nil {
		opts = append(opts, health.Metrics(p.Scrape.Gatherer))
	} else {
		log := p.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Info("sluicefx: /metrics not served: no prometheus.Gatherer (provide one, or a Registerer that is one)")
	}
	s, err := health.NewServer(p.Config.httpAddr(), opts...)
	if err != nil {
		return nil, fmt.Errorf("sluicefx: %w", err)
	}
	return s, nil
}

type healthRunParams struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Server     *health.Server
	Logger     *slog.Logger `optional:"true"`
}

func runHealthServer(p healthRunParams) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() { // owned by the server: Close waits for Run
				if err := p.Server.Run(context.Background()); err != nil {
					log.Error("sluicefx: health server stopped; shutting down", "err", err)
					_ = p.Shutdowner.Shutdown(fx.ExitCode(1))
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			p.Server.Close()
			return nil
		},
	})
}

// TracingParams are NewTracer's inputs.
type TracingParams struct {
	fx.In

	Config Config
	// Provider defaults to otel.GetTracerProvider().
	Provider trace.TracerProvider `optional:"true"`
	// Propagator defaults to W3C Trace Context.
	Propagator propagation.TextMapPropagator `optional:"true"`
}

// TracingResult is NewTracer's output.
type TracingResult struct {
	fx.Out

	Tracer    *tracing.Tracer
	ClientOpt kgo.Opt `group:"sluice.consumer.client_opts"`
}

// NewTracer returns the Tracer and the kotel option for the consumer's
// client.
func NewTracer(p TracingParams) TracingResult {
	t := tracing.New(tracing.TracerProvider(p.Provider), tracing.Propagator(p.Propagator), tracing.Group(p.Config.Group))
	return TracingResult{Tracer: t, ClientOpt: t.KafkaClient()}
}
