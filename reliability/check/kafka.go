package check

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/reliability/ledger"
)

// ReadTopic calls fn for every record of topic from the start of each
// partition to its end offset as of the call, using a direct (group-less)
// consumer seeded with brokers. A missing topic reads as empty.
func ReadTopic(ctx context.Context, brokers []string, topic string, fn func(*kgo.Record)) error {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	admCl.Close()
	if err != nil {
		return fmt.Errorf("read %s: end offsets: %w", topic, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %d partitions unfinished: %w", topic, len(want), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			fn(r)
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// ReadDeadLetters reads the dead-letter topic topic into DeadLetters: the
// rid from the original headers, the source position and class from the
// provenance headers.
func ReadDeadLetters(ctx context.Context, brokers []string, topic string) ([]DeadLetter, error) {
	var out []DeadLetter
	err := ReadTopic(ctx, brokers, topic, func(r *kgo.Record) {
		var d DeadLetter
		for _, h := range r.Headers {
			v := string(h.Value)
			switch h.Key {
			case ledger.RIDHeader:
				d.RID = v
			case dlq.HeaderTopic:
				d.Topic = v
			case dlq.HeaderPartition:
				p, _ := strconv.ParseInt(v, 10, 32)
				d.Partition = int32(p)
			case dlq.HeaderOffset:
				d.Offset, _ = strconv.ParseInt(v, 10, 64)
			case dlq.HeaderClass:
				d.Class = v
			}
		}
		out = append(out, d)
	})
	return out, err
}
