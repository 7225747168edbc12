package tracing_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/tracing"
)

func ExampleSink() {
	sr := tracetest.NewSpanRecorder()
	tr := tracing.New(tracing.TracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))))

	store := func(ctx context.Context, m pipeline.Message[string]) error { return nil }
	traced := tracing.Sink[string](tr, "store")(store) // pipeline.Sink(orders, "store", traced)

	rec := &pipeline.Record{Topic: "orders", Headers: []pipeline.Header{
		{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
	}}
	_ = traced(context.Background(), pipeline.NewMessage("order", rec))

	span := sr.Ended()[0]
	fmt.Println(span.Name())
	fmt.Println(span.Parent().TraceID(), span.Parent().SpanID())
	// Output:
	// process orders
	// 0af7651916cd43dd8448eb211c80319c b7ad6b7169203331
}
