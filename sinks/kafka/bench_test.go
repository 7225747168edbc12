package kafka_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
	"github.com/sluice-go/sluice/stages"
)

// benchRoute routes each message to "out", one output, as bench/etl does.
func benchRoute(m pipeline.Message[[]byte], out *kafka.Outputs) error {
	out.Add("out", m.Key(), m.Value())
	return nil
}

// benchWriter is a Writer of its own on an in-process broker.
func benchWriter(b *testing.B) *kafka.Writer {
	b.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	w, err := kafka.NewWriter(kafka.Connection(sluice.Connection{Brokers: cluster.ListenAddrs()}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	return w
}

// BenchmarkBatchSink writes batches of 100 messages of one output each;
// allocs/op over 100 is the sink's and the producer's allocations per
// output.
func BenchmarkBatchSink(b *testing.B) {
	sink := kafka.BatchSink(benchWriter(b), benchRoute)
	batch := make(stages.Batch[[]byte], 100)
	for i := range batch {
		batch[i] = pipeline.NewMessage([]byte("value"), &pipeline.Record{Topic: "in", Offset: int64(i), Key: []byte("key")})
	}
	m := pipeline.NewMessage(batch, &pipeline.Record{Topic: "in"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := sink(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSink writes one message of one output per call, waiting for its
// acknowledgement.
func BenchmarkSink(b *testing.B) {
	sink := kafka.Sink(benchWriter(b), benchRoute)
	m := pipeline.NewMessage([]byte("value"), &pipeline.Record{Topic: "in", Key: []byte("key")})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := sink(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}
