package dlq

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

type partitionKey struct{}

// withPartition marks a record's context with the partition it should go
// to, modulo the target topic's partition count.
func withPartition(ctx context.Context, p int32) context.Context {
	return context.WithValue(ctx, partitionKey{}, p)
}

// Partitioner returns a kgo.Partitioner that puts each dead letter written
// by a Publisher (and each record replay sends back to its original topic)
// on partition (source partition mod partitions of the target topic). A
// dead-letter topic with at least as many partitions as its source so keeps
// each source partition's dead letters in their own partition, in the order
// they were written. Records not marked by this package go to fallback; nil
// means kgo.StickyKeyPartitioner(nil), kgo's default. The fallback's
// optional kgo.TopicBackupPartitioner is not used.
//
// Give it to a client that a Publisher shares with a consumer:
//
//	kgo.RecordPartitioner(dlq.Partitioner(nil))
func Partitioner(fallback kgo.Partitioner) kgo.Partitioner {
	if fallback == nil {
		fallback = kgo.StickyKeyPartitioner(nil)
	}
	return partitioner{fallback}
}

type partitioner struct{ fallback kgo.Partitioner }

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &topicPartitioner{fallback: p.fallback.ForTopic(topic)}
}

type topicPartitioner struct{ fallback kgo.TopicPartitioner }

var _ kgo.TopicPartitionerOnNewBatch = (*topicPartitioner)(nil)

func marked(r *kgo.Record) (int32, bool) {
	if r.Context == nil {
		return 0, false
	}
	p, ok := r.Context.Value(partitionKey{}).(int32)
	return p, ok && p >= 0
}

func (t *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	if _, ok := marked(r); ok {
		return true
	}
	return t.fallback.RequiresConsistency(r)
}

func (t *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if p, ok := marked(r); ok {
		return int(p) % n
	}
	return t.fallback.Partition(r, n)
}

// OnNewBatch forwards to the fallback so that kgo's sticky partitioning of
// records without a key still moves on between batches.
func (t *topicPartitioner) OnNewBatch() {
	if nb, ok := t.fallback.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}
