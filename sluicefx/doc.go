// Package sluicefx assembles a Sluice consumer with go.uber.org/fx: the
// consumer run under the fx lifecycle, its Prometheus metrics, an HTTP
// server of /healthz, /readyz and /metrics, and optional OpenTelemetry
// tracing.
//
//	fx.New(
//		fx.Supply(cfg),                  // sluicefx.Config, loaded by the application
//		sluicefx.Logger(logger),         // optional: *slog.Logger (default slog.Default())
//		sluicefx.Registry(reg),          // optional: prometheus.Registerer (default: a registry of its own)
//		sluicefx.Module,                 // ConsumerModule + MetricsModule + HealthModule
//		sluicefx.DeadLetterModule,       // optional: *dlq.Publisher on the consumer's connection
//		sluicefx.TracingModule,          // optional
//		sluicefx.Pipeline(newPipeline),  // the application's pipeline.Handler
//	).Run()
//
// The application's pipeline constructor takes a Kit, which wires what the
// modules provide into the pipeline in one place: kit.Pipeline() is
// pipeline.New with the dead-letter publisher (traced with TracingModule),
// the metrics hooks and the logger; kit.Guard(name) are a guard chain's
// name, logger and metrics hooks; kit.LimiterHooks(name) exports a
// concurrency limiter. The topics are the pipeline's Sources.
//
// # Lifecycle
//
// OnStart starts the consumer in a goroutine and returns at once; the group
// is joined in the background and /readyz turns ready when it is. OnStop
// shuts the consumer down gracefully (consumer.Close: stop fetching, let
// in-flight records settle within DrainTimeout, commit, leave the group)
// bounded by fx's stop timeout: when that passes first, the consumer is
// stopped at once (consumer.Stop: in-flight work is cancelled and only what
// settled is committed) and OnStop returns an error saying so. Keep
// DrainTimeout below fx's stop timeout (fx.StopTimeout, 15s by default) so
// that a normal drain fits. A consumer that fails on its own (a handler that
// cannot open a partition, a panic) shuts the application down with exit
// code 1, so that its supervisor restarts it.
//
// Hooks run in reverse order at stop: the HTTP server stops first, then the
// consumer drains, then what the application constructed before the
// consumer (a dead-letter publisher) closes, after the drain that may still
// write dead letters.
//
// # What the modules own
//
// The modules provide only what they own: the *consumer.Consumer, the
// *Runner, the *metrics.Metrics and its Scrape, the *health.Server, the
// *tracing.Tracer. The logger, the Prometheus registry, the tracer
// provider and the propagator are the application's, taken from the graph
// when present (all optional). Values provided into the groups
// GroupConsumerHooks and GroupClientOpts reach the consumer; MetricsOptions
// reaches metrics.New. Every constructor works without fx: fill in its
// Params struct. DeadLetterModule provides the *dlq.Publisher; its client
// uses the Config's connection, so brokers, SASL, TLS and client ID are
// configured once.
//
// # Configuration
//
// Config maps one to one to the consumer options (a zero field keeps the
// consumer's default) plus the connection (Brokers, ClientID, SASL, TLS:
// Config.Connection, a sluice.Connection), the dead letters (DeadLetters)
// and the HTTP address. Validate runs the consumer's own validation, and
// every error is a *sluice.ConfigError whose Option is the Config field's
// path: "sluicefx: DrainTimeout: ...", "sluicefx: SASL.Mechanism = ...".
// The SASL password is a Secret, which prints, logs and marshals as
// "[redacted]".
//
// # Modes
//
// Config.Group makes a consumer group member (Config.GroupProtocol
// "consumer" for KIP-848); Config.ShareGroup instead makes a share group
// member (queue mode, consumer.ShareGroup), tuned by Config.Share. The
// modules are the same in both modes: in share mode the metrics add
// sluice_share_acks_total and compute no lag, /readyz is ready once a
// share group heartbeat is answered, dead letters name the share group,
// and Kit.Pipeline wraps the dead letters with consumer.ShareDeadLetters
// (it does so in both modes; a consumer group's records pass through it
// unchanged), so that a record failing transiently is released for
// redelivery and dead-lettered only on its last delivery. See "Choosing a
// mode" in package consumer.
//
// # Logs
//
// Everything logs through the one *slog.Logger: the consumer, franz-go's
// client (kslog, under lib=franz-go), the guards and the pipeline when the
// application passes the logger on. Records are named by
// topic/partition@offset; payloads, keys and credentials are never logged.
package sluicefx
