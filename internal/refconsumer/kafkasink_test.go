package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
)

// TestReferenceConsumerKafkaSink runs the reference consumer in each Kafka
// sink mode against kfake with good and poison records, reads the outputs
// and dead letters back (read_committed in exactly-once mode) and checks
// them: every good record's output once, every poison record's dead letter
// once.
func TestReferenceConsumerKafkaSink(t *testing.T) {
	tests := []struct {
		name string
		mode check.SinkMode
		flag []string
		iso  kgo.IsolationLevel
	}{
		{name: "exactly once", mode: check.ExactlyOnce, flag: []string{"--eos", "smoke-1"}, iso: kgo.ReadCommitted()},
		{name: "at least once", mode: check.AtLeastOnce, flag: []string{"--kafka-sink"}, iso: kgo.ReadUncommitted()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2), kafkatest.Topic("orders.out", 2))
			in := &inputs{}
			in.mix(60)
			recs, expect := in.recs, in.expect
			kc.Produce(t, recs...)
			f := runUntilDelivered(t, len(recs), append([]string{"--brokers", kc.Addrs[0], "--topics", "orders", "--group", "smoke",
				"--ledger", filepath.Join(t.TempDir(), "c1.ledger"), "--latency", "1ms", "--session-timeout", "3s",
				"--rebalance-timeout", "2s", "--drain-timeout", "1s", "--commit-interval", "100ms", "--log-level", "error"}, tt.flag...)...)
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer rcancel()
			dead, err := check.ReadDeadLettersThrough(rctx, kc.Addrs, "orders.dlq", tt.iso)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := check.ReadOutputs(rctx, kc.Addrs, "orders.out", tt.iso)
			if err != nil {
				t.Fatal(err)
			}
			rep := check.Check(check.Input{Mode: tt.mode, Produced: producedOf(recs, expect), Ledgers: []*ledger.File{f}, DeadLetters: dead, Outputs: outs,
				Committed: toCheck(kc.Committed(t, "smoke", "orders")), Ends: toCheck(kc.EndOffsets(t, "orders"))})
			if ps := rep.Problems(check.Expectations{AllowForcedDuplicates: true}); len(ps) > 0 {
				t.Fatalf("problems: %v", ps)
			}
			if rep.Outputs != len(recs)-3 || rep.OutputDuplicates != 0 || rep.DeadLettered != 3 {
				t.Fatalf("%d outputs (%d duplicates), %d dead letters; want %d, none, 3", rep.Outputs, rep.OutputDuplicates, rep.DeadLettered, len(recs)-3)
			}
			if tt.mode == check.AtLeastOnce && countKind(f, ledger.Writing) != len(recs)-3 {
				t.Fatalf("%d W events, want one per output (%d)", countKind(f, ledger.Writing), len(recs)-3)
			}
		})
	}
}

func toCheck(m map[int32]int64) map[check.TopicPartition]int64 {
	out := map[check.TopicPartition]int64{}
	for p, o := range m {
		out[check.TopicPartition{Topic: "orders", Partition: p}] = o
	}
	return out
}

func countKind(f *ledger.File, k ledger.Kind) int {
	n := 0
	for _, e := range f.Events {
		if e.Kind == k {
			n++
		}
	}
	return n
}
