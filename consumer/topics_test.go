package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// stringPipeline reads each topic as strings into sink.
func stringPipeline(sink func(context.Context, pipeline.Message[string]) error, topics ...string) *pipeline.Pipeline {
	p := pipeline.New(pipeline.Logger(quietLogger()))
	for _, t := range topics {
		pipeline.Sink(pipeline.Source(p, t, pipeline.String()), "sink-"+t, sink)
	}
	return p
}

// A topic is named once, in its Source: the consumer reads the pipeline's
// topics without a Topics option.
func TestTopicsComeFromThePipeline(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("a", 1), kafkatest.Topic("b", 1))
	kc.ProduceN(t, "a", 10, kafkatest.KeyedValue(2))
	kc.ProduceN(t, "b", 10, kafkatest.KeyedValue(2))
	p := stringPipeline(func(context.Context, pipeline.Message[string]) error { return nil }, "a", "b")
	c, stop := runConsumer(t, consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("topics"), consumer.Handle(p),
		consumer.CommitInterval(50*time.Millisecond), consumer.Logger(quietLogger()))
	if got := strings.Join(c.Topics(), ","); got != "a,b" {
		t.Fatalf("Topics() = %q, want a,b", got)
	}
	kc.WaitCommittedEnd(t, "topics", "a", 20*time.Second)
	kc.WaitCommittedEnd(t, "topics", "b", 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A topic is named only in a Source: a handler that lists no topics (a
// pipeline without Sources, or a handler without a Topics method) fails
// in New, naming Handle.
func TestHandlerWithoutTopicsFailsInNew(t *testing.T) {
	conn := consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}})
	for _, h := range []pipeline.Handler{
		stringPipeline(func(context.Context, pipeline.Message[string]) error { return nil }),
		&workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }},
	} {
		_, err := consumer.New(conn, consumer.Group("g"), consumer.Handle(h))
		var ce *sluice.ConfigError
		if !errors.As(err, &ce) || ce.Package != "consumer" || ce.Option != "Handle" {
			t.Fatalf("New with %T: %v, want a ConfigError naming Handle", h, err)
		}
	}
}
