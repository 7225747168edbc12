package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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
	c, stop := runConsumer(t, consumer.Brokers(kc.Addrs...), consumer.Group("topics"), consumer.Handle(p),
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

// A topic without a Source once passed New and failed at the first
// assignment (pipeline.ErrNoSource); New reports it, naming the field.
func TestTopicWithoutSourceFailsInNew(t *testing.T) {
	p := stringPipeline(func(context.Context, pipeline.Message[string]) error { return nil }, "a")
	_, err := consumer.New(consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("a", "b"), consumer.Handle(p))
	var ce *consumer.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Topics" || !strings.Contains(ce.Reason, `"b"`) {
		t.Fatalf("New: %v, want a ConfigError naming Topics and topic b", err)
	}
}
