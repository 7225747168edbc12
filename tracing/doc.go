// Package tracing adds OpenTelemetry tracing to a Sluice consumer: a span
// for every message a sink handles, child of the W3C trace context the
// record carries in its headers, and franz-go's own client spans through
// plugin/kotel. Package pipeline knows nothing of OpenTelemetry; this
// package wraps its sinks.
//
//	tr := tracing.New(tracing.TracerProvider(tp), tracing.Group("shop"))
//	pub, _ := dlq.New(dlq.Connection(conn), dlq.ClientOpts(tr.KafkaClient()))
//	p := pipeline.New(pipeline.DeadLetters(tr.DeadLetterer(pub)))
//	guarded, _ := handlers.Guard(store, handlers.Name("store"), ...)
//	pipeline.Sink(orders, "store", tracing.Sink[Order](tr, "store")(guarded))
//	c, _ := consumer.New(..., consumer.ClientOpts(tr.KafkaClient()))
//
// # Options of New
//
//	TracerProvider(tp)  where spans go; default otel.GetTracerProvider()
//	Propagator(p)       how trace context is read from headers; default W3C Trace Context
//	Group(name)         the consumer group, as messaging.consumer.group.name; default none
//
// New cannot fail: every option has a usable zero value.
//
// # Spans
//
// Sink starts one span per message, "process <topic>", kind consumer, with
// the messaging attributes of the OpenTelemetry semantic conventions and
// sluice.sink. Its parent is the context extracted from the record's
// headers (traceparent and tracestate), so a trace started by the producer
// continues through the consumer; the sink receives the span's context, so
// what it calls joins the trace. Errors are recorded with their failure
// class; a panic ends the span with an error status before the pipeline
// recovers it. A window or batch message links to its members' contexts.
//
// # Dead letters and replays
//
// The trace context travels in headers, and both the dead-letter and the
// replay path keep a record's headers: a dead letter has the traceparent
// of the record that failed, and a replayed record has it again, so its
// new span is a child of the same context as the first attempt's. The one
// thing that breaks this is kotel on the dead-letter publisher's client:
// kotel starts a publish span from the write's context and overwrites the
// traceparent header with it, and the pipeline writes dead letters with
// its partition's context, which holds no span. DeadLetterer wraps the
// publisher so that the write's context carries the record's trace
// context: the publish span, and the dead letter, stay in the trace.
//
// # Decisions
//
//   - The default propagator is W3C Trace Context, not otel's global
//     propagator (a no-op until the application sets one), because the
//     headers the dead-letter and replay paths carry are W3C's.
//   - The span's parent is the header context (not a link): a consumer
//     handling a record is part of the record's trace. kotel's receive
//     spans, when enabled, are siblings of it.
//   - Put Sink outermost, around the guard chain: one span per message
//     covering every attempt, recording the final outcome.
package tracing
