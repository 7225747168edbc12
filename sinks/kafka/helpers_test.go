package kafka_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/kafkatest"
)

func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// readCommitted reads what a read_committed reader of topic sees.
func readCommitted(t *testing.T, kc *kafkatest.Cluster, topic string, partitions int32) []*kgo.Record {
	t.Helper()
	return kc.ReadCommitted(t, topic, partitions)
}

// readTopic reads topic with the given isolation.
func readTopic(t *testing.T, kc *kafkatest.Cluster, topic string, partitions int32, isolation kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	return kc.ReadTopic(t, topic, partitions, isolation)
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
