package tracing

import (
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice/pipeline"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/sluice-go/sluice/tracing"

// Attributes this package adds besides the OpenTelemetry messaging ones.
const (
	// AttrSink is the name of the sink that handled the message.
	AttrSink = attribute.Key("sluice.sink")
	// AttrFailureClass is the failure class of an error that implements
	// pipeline.Failure (exhausted, permanent, ...).
	AttrFailureClass = attribute.Key("sluice.failure.class")
	// AttrFailureAttempts is how many times the sink was called for a
	// failed message.
	AttrFailureAttempts = attribute.Key("sluice.failure.attempts")
)

// maxLinks bounds the span links a window or batch message gets, one per
// member record with a trace context.
const maxLinks = 128

// Opt configures a Tracer.
type Opt interface{ apply(*Tracer) }

type optFunc func(*Tracer)

func (f optFunc) apply(t *Tracer) { f(t) }

// TracerProvider sets where spans go. Default (nil): otel's global
// provider, otel.GetTracerProvider(), read when New is called.
func TracerProvider(tp trace.TracerProvider) Opt { return optFunc(func(t *Tracer) { t.provider = tp }) }

// Propagator sets how trace context is read from (and, by kotel, written
// to) record headers. Default: W3C Trace Context (traceparent and
// tracestate headers), whatever the global propagator is, because that is
// what the dead-letter and replay paths carry.
func Propagator(p propagation.TextMapPropagator) Opt { return optFunc(func(t *Tracer) { t.prop = p }) }

// Group adds messaging.consumer.group.name, the consumer group, to the
// spans. Default: none.
func Group(name string) Opt { return optFunc(func(t *Tracer) { t.group = name }) }

// Tracer traces the handling of records: a span per message handled by a
// sink (Sink), the record's trace context handed to the dead-letter write
// (DeadLetterer), and franz-go's client spans (KafkaClient). It is safe for
// concurrent use.
type Tracer struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	group    string
}

// New returns a Tracer.
func New(opts ...Opt) *Tracer {
	t := &Tracer{}
	for _, o := range opts {
		if o != nil {
			o.apply(t)
		}
	}
	if t.provider == nil {
		t.provider = otel.GetTracerProvider()
	}
	if t.prop == nil {
		t.prop = propagation.TraceContext{}
	}
	t.tracer = t.provider.Tracer(ScopeName)
	return t
}

// Extract returns ctx carrying the remote span context found in headers
// (a traceparent header, by default), or ctx as it is if there is none.
func (t *Tracer) Extract(ctx context.Context, headers []pipeline.Header) context.Context {
	return t.prop.Extract(ctx, headerCarrier(headers))
}

// Sink returns middleware that runs each call of a sink in a span. The
// span's parent is the trace context in the record's headers (W3C
// traceparent/tracestate unless Propagator says otherwise), or whatever span
// ctx carries when the record has none; a window or batch message, which
// has no headers of its own, gets a link to each member's context instead.
// The span is named "process <topic>", has the OpenTelemetry messaging
// attributes (system kafka, destination, partition, offset) and
// sluice.sink=name, and records the sink's error, with its failure class
// when it has one. The sink is called with the span's context, so its own
// calls (HTTP, SQL) become children of the span.
//
// Put it outermost, around the guard chain, so that the span covers every
// attempt and records the final outcome:
//
//	guarded, _ := handlers.Guard(store, handlers.Retry(...))
//	pipeline.Sink(in, "store", tracing.Sink[Order](tr, "store")(guarded))
func Sink[T any](t *Tracer, name string) func(func(context.Context, pipeline.Message[T]) error) func(context.Context, pipeline.Message[T]) error {
	return func(next func(context.Context, pipeline.Message[T]) error) func(context.Context, pipeline.Message[T]) error {
		return func(ctx context.Context, m pipeline.Message[T]) error {
			ctx, span := t.start(ctx, name, m.Topic(), m.Partition(), m.Offset(), m.Headers(), m.Token())
			ended := false
			defer func() {
				if !ended { // the sink panicked; the pipeline recovers it
					span.SetStatus(codes.Error, "panic")
					span.End()
				}
			}()
			err := next(ctx, m)
			ended = true
			t.finish(span, err)
			return err
		}
	}
}

// start starts the span of one message; it is not generic so that the
// middleware's code is not instantiated per message type.
func (t *Tracer) start(ctx context.Context, sink, topic string, partition int32, offset int64, headers []pipeline.Header, tok pipeline.Token) (context.Context, trace.Span) {
	ctx = t.Extract(ctx, headers)
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingDestinationPartitionID(strconv.FormatInt(int64(partition), 10)),
		semconv.MessagingKafkaOffset(int(offset)),
		AttrSink.String(sink),
	}
	if t.group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(t.group))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if _, single := tok.(*pipeline.Record); !single && headers == nil {
		var links []trace.Link
		n := 0
		for r := range pipeline.Records(tok) {
			n++
			if len(links) < maxLinks {
				if sc := trace.SpanContextFromContext(t.Extract(context.Background(), r.Headers)); sc.IsValid() {
					links = append(links, trace.Link{SpanContext: sc})
				}
			}
		}
		if n > 1 {
			attrs = append(attrs, semconv.MessagingBatchMessageCount(n))
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	return t.tracer.Start(ctx, "process "+topic, opts...)
}

func (t *Tracer) finish(span trace.Span, err error) {
	defer span.End()
	if err == nil {
		return
	}
	var f pipeline.Failure
	if errors.As(err, &f) {
		span.SetAttributes(AttrFailureClass.String(f.FailureClass()), AttrFailureAttempts.Int(f.FailureAttempts()))
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// DeadLetterer wraps dl so that each dead-letter write runs with the failed
// record's trace context in its ctx. The dead letter itself carries the
// context anyway, since it keeps the original headers; the wrapper matters
// when the producing client is instrumented with KafkaClient (kotel): kotel
// starts a publish span from the write's ctx and overwrites the traceparent
// header with it, which without the wrapper starts a new trace (the
// pipeline writes dead letters with the partition's context, which holds no
// span). With it, the publish span and the dead letter stay in the
// record's trace.
func (t *Tracer) DeadLetterer(dl pipeline.DeadLetterer) pipeline.DeadLetterer {
	return deadLetterer{t: t, dl: dl}
}

type deadLetterer struct {
	t  *Tracer
	dl pipeline.DeadLetterer
}

func (d deadLetterer) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	if dl.Record != nil {
		ctx = d.t.Extract(ctx, dl.Record.Headers)
	}
	return d.dl.DeadLetter(ctx, dl)
}

// KafkaClient returns the option that adds franz-go's kotel tracing hooks
// to a client, with t's provider and propagator: publish spans injected
// into produced records' headers, and receive spans for fetched records.
// Pass it through consumer.ClientOpts or dlq.ClientOpts.
func (t *Tracer) KafkaClient(opts ...kotel.TracerOpt) kgo.Opt {
	base := []kotel.TracerOpt{kotel.TracerProvider(t.provider), kotel.TracerPropagator(t.prop)}
	if t.group != "" {
		base = append(base, kotel.ConsumerGroup(t.group))
	}
	k := kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(append(base, opts...)...)))
	return kgo.WithHooks(k.Hooks()...)
}

// headerCarrier reads trace context from record headers. It is read-only:
// records are not changed once handed to a pipeline.
type headerCarrier []pipeline.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

// Get returns the last header named key, as pipeline.Record.Header does.
func (c headerCarrier) Get(key string) string {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Key == key {
			return string(c[i].Value)
		}
	}
	return ""
}

func (headerCarrier) Set(string, string) {}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c))
	for i, h := range c {
		keys[i] = h.Key
	}
	return keys
}
