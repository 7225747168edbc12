package consumer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

type nopHandler struct{}

func (nopHandler) Topics() []string { return []string{"t"} }

func (nopHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return nil, nil
}

// BenchmarkHandOff measures the consumer's own work per record, without a
// broker: enqueueing a fetched batch as the poll loop does, admitting it
// under the water marks, converting it to pipeline records, and settling
// each record.
func BenchmarkHandOff(b *testing.B) {
	c, err := New(Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}}), Group("g"), Handle(nopHandler{}), Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := newPartition(c, pipeline.TopicPartition{Topic: "t"})
	const batch = 4096
	value := make([]byte, 200)
	recs := make([]*kgo.Record, batch)
	now := time.Now()
	for j := range recs {
		recs[j] = &kgo.Record{Topic: "t", Key: []byte("key-1"), Value: value, Timestamp: now}
	}
	b.ReportAllocs()
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for _, r := range recs[:n] { // reused: they stand for franz-go's records
			r.Offset = off
			off++
		}
		p.enqueue(recs[:n], now)
		batch, _ := p.next()
		for len(batch.recs) > 0 {
			got := p.admit(batch)
			for _, r := range p.convert(batch, got) {
				r.Settle()
			}
			batch.advance(got)
		}
	}
}
