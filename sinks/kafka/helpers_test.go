package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/kafkatest"
)

func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

const sentinelHeader = "test-sentinel"

// readCommitted reads every record of topic that a read_committed reader
// sees: it writes a sentinel to each partition, outside any transaction,
// and reads from the start until it has seen every sentinel (a reader
// cannot pass an open transaction, so every transaction before it has
// ended by then).
func readCommitted(t *testing.T, kc *kafkatest.Cluster, topic string, partitions int32) []*kgo.Record {
	t.Helper()
	return readTopic(t, kc, topic, partitions, kgo.ReadCommitted())
}

// readTopic reads topic as readCommitted does, with the given isolation.
func readTopic(t *testing.T, kc *kafkatest.Cluster, topic string, partitions int32, isolation kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	sentinels := map[int32]int64{}
	cl := kc.Client(t, kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for p := range partitions {
		r := &kgo.Record{Topic: topic, Partition: p, Headers: []kgo.RecordHeader{{Key: sentinelHeader}}}
		res, err := cl.ProduceSync(ctx, r).First()
		if err != nil {
			t.Fatalf("sentinel for %s/%d: %v", topic, p, err)
		}
		sentinels[p] = res.Offset
	}
	reader := kc.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(isolation),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	seen := map[int32]bool{}
	for len(seen) < int(partitions) {
		fs := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: sentinels seen in %d of %d partitions: %v", topic, len(seen), partitions, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Headers) > 0 && r.Headers[len(r.Headers)-1].Key == sentinelHeader {
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

// countByValue counts records by value.
func countByValue(recs []*kgo.Record) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		n[string(r.Value)]++
	}
	return n
}

// exactlyOnce checks that every value of want appears exactly once.
func exactlyOnce(want []string, got map[string]int) (lost, dups int, example string) {
	for _, v := range want {
		switch n := got[v]; {
		case n == 0:
			lost++
			example = fmt.Sprintf("%q lost", v)
		case n > 1:
			dups += n - 1
			example = fmt.Sprintf("%q written %d times", v, n)
		}
	}
	return lost, dups, example
}
