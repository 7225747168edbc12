// Package health serves the probes of a Sluice consumer: /healthz
// (liveness), /readyz (readiness, from consumer.Status) and, on the same
// listener, /metrics (a prometheus.Gatherer).
//
//	srv, err := health.NewServer(":8080", health.Status(c), health.Metrics(reg))
//	go srv.Run(ctx)
//	defer srv.Close()
//
// # Options of NewServer
//
//	Status(src, ready...)  serve /readyz from src (a *consumer.Consumer); default: not served
//	                       ready: StalledUnready() makes stalls unready; default: reported only
//	Metrics(g)             serve /metrics from a prometheus.Gatherer; default: not served
//	Logger(l)              listener and serving errors; default slog.Default()
//	ShutdownTimeout(d)     how long Run waits for open requests; default 5s
//	Handle(pattern, h)     serve more routes on the same listener (pprof); default none
//
// A bad option is a *sluice.ConfigError naming it. Without a server,
// Liveness, Readiness and Check give the handlers and the verdict.
//
// # Verdicts
//
// /healthz answers 200 "ok" as long as the process serves HTTP. It checks
// nothing else on purpose: Kubernetes restarts a container whose liveness
// probe fails, and no state of a consumer (a downstream outage, a stalled
// partition, a rebalance in progress) is fixed by a restart; a restart
// would only add a rebalance to the outage. A consumer that failed for
// good stops its process (sluicefx shuts the application down), which the
// supervisor sees without a probe.
//
// /readyz answers 200 when the consumer is running, has joined its group
// (with partitions, or as an idle member when the group has more members
// than partitions) and has not failed; otherwise 503 with the reason.
//
// Stalled partitions (unsettled records whose commit has not moved for the
// consumer's StallAfter) are listed in the body but do not make the
// consumer unready, unless StalledUnready is given. A stall nearly always
// means a sink's downstream is down or one record is stuck: taking the pod
// out of a Service or holding up a rollout fixes neither, and every replica
// of the consumer would turn unready together. Alert on
// sluice_partitions_stalled instead.
//
// # Bodies
//
// Plain text by default, for a human with curl:
//
//	ready
//	running: true, joined: true
//	assigned (2): orders/0 orders/1
//	paused (0):
//	stalled (1): orders/1 (does not affect readiness)
//	unsettled: 12, buffered: 40
//
// JSON (the Report type) with "Accept: application/json" or ?format=json.
package health
