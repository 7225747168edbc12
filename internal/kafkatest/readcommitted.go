package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SentinelHeader marks the records ReadTopic writes to find the end of a
// partition.
const SentinelHeader = "kafkatest-sentinel"

// ReadCommitted reads every record of topic that a read_committed reader
// sees. See ReadTopic.
func (c *Cluster) ReadCommitted(t testing.TB, topic string, partitions int32) []*kgo.Record {
	t.Helper()
	return c.ReadTopic(t, topic, partitions, kgo.ReadCommitted())
}

// ReadTopic reads every record of topic with the given isolation: it writes
// a sentinel record to each partition, outside any transaction, and reads
// from the start until it has seen every sentinel. A read_committed reader
// cannot pass a transaction that is still open, so with it every
// transaction written before the call has ended (committed or aborted) when
// it returns. The sentinels are not returned.
func (c *Cluster) ReadTopic(t testing.TB, topic string, partitions int32, isolation kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sentinels := map[int32]int64{}
	cl := c.Client(t, kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range partitions {
		r := &kgo.Record{Topic: topic, Partition: p, Headers: []kgo.RecordHeader{{Key: SentinelHeader}}}
		res, err := cl.ProduceSync(ctx, r).First()
		if err != nil {
			t.Fatalf("kafkatest: sentinel for %s/%d: %v", topic, p, err)
		}
		sentinels[p] = res.Offset
	}
	reader := c.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(isolation),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	seen := map[int32]bool{}
	for len(seen) < int(partitions) {
		fs := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("kafkatest: reading %s: sentinels seen in %d of %d partitions: %v", topic, len(seen), partitions, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if n := len(r.Headers); n > 0 && r.Headers[n-1].Key == SentinelHeader {
				if r.Offset == sentinels[r.Partition] {
					seen[r.Partition] = true
				}
				return
			}
			out = append(out, r)
		})
	}
	return out
}
