package tracing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A W3C trace context as an upstream producer writes it.
const (
	traceID     = "0af7651916cd43dd8448eb211c80319c"
	parentID    = "b7ad6b7169203331"
	traceparent = "00-" + traceID + "-" + parentID + "-01"
	tracestate  = "rojo=00f067aa0ba902b7"
)

func newTracer(t *testing.T, opts ...tracing.Opt) (*tracing.Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tracing.New(append([]tracing.Opt{tracing.TracerProvider(tp)}, opts...)...), sr
}

func record(offset int64, headers ...pipeline.Header) *pipeline.Record {
	return &pipeline.Record{Topic: "orders", Partition: 2, Offset: offset, Headers: headers}
}

func w3c(tp string) []pipeline.Header {
	return []pipeline.Header{{Key: "traceparent", Value: []byte(tp)}, {Key: "tracestate", Value: []byte(tracestate)}}
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func onlySpan(t *testing.T, sr *tracetest.SpanRecorder) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := sr.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	return spans[0]
}

func TestSinkSpanIsChildOfHeaderContext(t *testing.T) {
	tr, sr := newTracer(t, tracing.Group("shop"))
	var inSink trace.SpanContext
	sink := tracing.Sink[string](tr, "store")(func(ctx context.Context, m pipeline.Message[string]) error {
		inSink = trace.SpanContextFromContext(ctx)
		return nil
	})
	if err := sink(context.Background(), pipeline.NewMessage("v", record(7, w3c(traceparent)...))); err != nil {
		t.Fatal(err)
	}
	s := onlySpan(t, sr)
	p := s.Parent()
	if p.TraceID().String() != traceID || p.SpanID().String() != parentID || !p.IsRemote() || p.TraceState().String() != tracestate {
		t.Fatalf("parent %v, want the header's context", p)
	}
	if s.SpanContext().TraceID().String() != traceID || inSink.SpanID() != s.SpanContext().SpanID() {
		t.Fatalf("span %v, sink saw %v", s.SpanContext(), inSink)
	}
	for _, tt := range []struct {
		give attribute.Key
		want string
	}{
		{"messaging.system", "kafka"},
		{"messaging.operation.type", "process"},
		{"messaging.destination.name", "orders"},
		{"messaging.destination.partition.id", "2"},
		{"messaging.kafka.offset", "7"},
		{"messaging.consumer.group.name", "shop"},
		{tracing.AttrSink, "store"},
	} {
		if got := attr(s, tt.give).Emit(); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.give, got, tt.want)
		}
	}
	if s.Name() != "process orders" || s.SpanKind() != trace.SpanKindConsumer || s.Status().Code != codes.Unset {
		t.Errorf("span %q kind %v status %v", s.Name(), s.SpanKind(), s.Status())
	}
}

// failure is a sink error with a failure class, as guards return them.
type failure struct{ class string }

func (f failure) Error() string                        { return "store: " + f.class }
func (f failure) FailureClass() string                 { return f.class }
func (f failure) FailureAttempts() int                 { return 3 }
func (f failure) FailureTimes() (time.Time, time.Time) { return time.Time{}, time.Time{} }

func TestSinkSpanRecordsErrors(t *testing.T) {
	tr, sr := newTracer(t)
	sink := tracing.Sink[string](tr, "store")(func(context.Context, pipeline.Message[string]) error {
		return failure{pipeline.ClassExhausted}
	})
	err := sink(context.Background(), pipeline.NewMessage("v", record(1, w3c(traceparent)...)))
	if !errors.As(err, new(failure)) {
		t.Fatalf("sink error changed: %v", err)
	}
	s := onlySpan(t, sr)
	if s.Status().Code != codes.Error || attr(s, tracing.AttrFailureClass).AsString() != "exhausted" || attr(s, tracing.AttrFailureAttempts).AsInt64() != 3 {
		t.Fatalf("status %v, attributes %v", s.Status(), s.Attributes())
	}
	if ev := s.Events(); len(ev) != 1 || ev[0].Name != "exception" {
		t.Fatalf("events %v", ev)
	}
}

func TestSinkSpanOnPanic(t *testing.T) {
	tr, sr := newTracer(t)
	sink := tracing.Sink[string](tr, "store")(func(context.Context, pipeline.Message[string]) error { panic("boom") })
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want the sink's panic", v)
			}
		}()
		_ = sink(context.Background(), pipeline.NewMessage("v", record(1)))
	}()
	if s := onlySpan(t, sr); s.Status().Code != codes.Error || s.Status().Description != "panic" {
		t.Fatalf("status %v", s.Status())
	}
}

func TestSinkSpanWithoutHeaderContext(t *testing.T) {
	tr, sr := newTracer(t)
	sink := tracing.Sink[string](tr, "store")(func(context.Context, pipeline.Message[string]) error { return nil })
	// No headers: a root span.
	_ = sink(context.Background(), pipeline.NewMessage("v", record(1)))
	// A malformed header is ignored: a root span too.
	_ = sink(context.Background(), pipeline.NewMessage("v", record(2, pipeline.Header{Key: "traceparent", Value: []byte("garbage")})))
	// No headers, but a span in ctx: its child.
	ctx, parent := sdktrace.NewTracerProvider().Tracer("t").Start(context.Background(), "poll")
	_ = sink(ctx, pipeline.NewMessage("v", record(3)))
	parent.End()
	spans := sr.Ended()
	if len(spans) != 3 || spans[0].Parent().IsValid() || spans[1].Parent().IsValid() || spans[2].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("parents: %v", spans)
	}
}

// TestGroupMessageLinksMembers: a window or batch message has no headers of
// its own; its span links to each member's context.
func TestGroupMessageLinksMembers(t *testing.T) {
	tr, sr := newTracer(t)
	other := "00-" + "1bf7651916cd43dd8448eb211c80319c" + "-" + "c7ad6b7169203331" + "-01"
	members := []pipeline.Message[string]{
		pipeline.NewMessage("a", record(1, w3c(traceparent)...)),
		pipeline.NewMessage("b", record(2, w3c(other)...)),
		pipeline.NewMessage("c", record(3)),
	}
	for _, m := range members {
		m.Token().(*pipeline.Record).Bind(nil)
	}
	sink := tracing.Sink[[]string](tr, "totals")(func(context.Context, pipeline.Message[[]string]) error { return nil })
	_ = sink(context.Background(), pipeline.Group([]string{"a", "b", "c"}, members))
	s := onlySpan(t, sr)
	links := s.Links()
	if s.Parent().IsValid() || len(links) != 2 || links[0].SpanContext.SpanID().String() != parentID || attr(s, "messaging.batch.message_count").AsInt64() != 3 {
		t.Fatalf("parent %v, links %v, attributes %v", s.Parent(), links, s.Attributes())
	}
}

// TestDeadLettererCarriesContext: the dead-letter write runs with the
// record's trace context.
func TestDeadLettererCarriesContext(t *testing.T) {
	tr, _ := newTracer(t)
	var got trace.SpanContext
	dl := tr.DeadLetterer(deadLetterFunc(func(ctx context.Context, _ pipeline.DeadLetter) error {
		got = trace.SpanContextFromContext(ctx)
		return nil
	}))
	if err := dl.DeadLetter(context.Background(), pipeline.DeadLetter{Record: record(1, w3c(traceparent)...)}); err != nil {
		t.Fatal(err)
	}
	if got.TraceID().String() != traceID || got.SpanID().String() != parentID {
		t.Fatalf("write context %v", got)
	}
}

type deadLetterFunc func(context.Context, pipeline.DeadLetter) error

func (f deadLetterFunc) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	return f(ctx, dl)
}

// TestPropagatorOption: another propagator reads other headers.
func TestPropagatorOption(t *testing.T) {
	tr, sr := newTracer(t, tracing.Propagator(propagation.NewCompositeTextMapPropagator(propagation.Baggage{})))
	sink := tracing.Sink[string](tr, "store")(func(context.Context, pipeline.Message[string]) error { return nil })
	_ = sink(context.Background(), pipeline.NewMessage("v", record(1, w3c(traceparent)...)))
	if onlySpan(t, sr).Parent().IsValid() {
		t.Fatal("traceparent read by a propagator without TraceContext")
	}
}
