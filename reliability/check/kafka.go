package check

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/ledger"
	kafkasink "github.com/sluice-go/sluice/sinks/kafka"
)

// ProvenanceHeader is the header in which the Kafka sink names an output's
// input record (its Provenance option).
const ProvenanceHeader = kafkasink.DefaultProvenanceHeader

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
	err := ReadTopic(ctx, brokers, topic, func(r *kgo.Record) { out = append(out, deadLetter(r)) })
	return out, err
}

// deadLetter reads a dead letter's rid and provenance.
func deadLetter(r *kgo.Record) DeadLetter {
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
	return d
}

// SentinelHeader marks the records ReadThrough writes to find the end of a
// partition; readers skip them.
const SentinelHeader = "sluice.check.sentinel"

// ReadThrough calls fn for every record of topic that a reader with the
// given isolation sees, from the start of each partition to a sentinel
// record it first writes at the end of each partition, outside any
// transaction. A read_committed reader cannot pass a transaction that is
// still open, nor can it tell where a partition ends by offsets (the last
// offsets may be transaction markers, which are never returned), so the
// sentinels mark the end: once a reader has seen every sentinel, every
// transaction before them has ended and been read. Records with
// SentinelHeader (this call's and earlier calls') are skipped. If ctx ends
// first, the error names the partitions whose sentinel was not reached,
// with their last stable and end offsets: a last stable offset below the
// end is a transaction still open.
func ReadThrough(ctx context.Context, brokers []string, topic string, isolation kgo.IsolationLevel, fn func(*kgo.Record)) error {
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("read %s: end offsets: %w", topic, err)
	}
	var recs []*kgo.Record
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: o.Partition,
				Headers: []kgo.RecordHeader{{Key: SentinelHeader}}})
		}
	})
	if len(recs) == 0 {
		return fmt.Errorf("read %s: no partitions", topic)
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("read %s: write sentinels: %w", topic, err)
	}
	sentinel := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	for _, r := range recs {
		sentinel[r.Partition] = r.Offset
		from[r.Partition] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.FetchIsolationLevel(isolation),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	last := map[int32]int64{}
	for len(sentinel) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return notReached(adm, topic, sentinel, last, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			last[r.Partition] = r.Offset
			if isSentinel(r) {
				if off, ok := sentinel[r.Partition]; ok && r.Offset >= off {
					delete(sentinel, r.Partition)
				}
				return
			}
			if _, ok := sentinel[r.Partition]; ok {
				fn(r)
			}
		})
	}
	return nil
}

func isSentinel(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == SentinelHeader {
			return true
		}
	}
	return false
}

// notReached explains which sentinels a reader did not reach.
func notReached(adm *kadm.Client, topic string, sentinel, last map[int32]int64, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stable, _ := adm.ListCommittedOffsets(ctx, topic)
	ends, _ := adm.ListEndOffsets(ctx, topic)
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(sentinel)) {
		s := fmt.Sprintf("%s/%d: sentinel at %d, last record read", topic, p, sentinel[p])
		if l, ok := last[p]; ok {
			s += fmt.Sprintf(" %d", l)
		} else {
			s += " none"
		}
		if lso, ok := stable.Lookup(topic, p); ok {
			if end, ok := ends.Lookup(topic, p); ok {
				s += fmt.Sprintf(", last stable offset %d of end %d", lso.Offset, end.Offset)
				if lso.Offset < end.Offset {
					s += " (a transaction is still open)"
				}
			}
		}
		parts = append(parts, s)
	}
	return fmt.Errorf("read %s: %d partitions not read to their end: %s: %w", topic, len(sentinel), strings.Join(parts, "; "), err)
}

// ReadOutputs reads an output topic of the Kafka sink modes with the given
// isolation, up to sentinels (ReadThrough): the rid header, the source
// position from the provenance header, the key and where each output is.
func ReadOutputs(ctx context.Context, brokers []string, topic string, isolation kgo.IsolationLevel) ([]Output, error) {
	var out []Output
	err := ReadThrough(ctx, brokers, topic, isolation, func(r *kgo.Record) {
		o := Output{Key: r.Key, At: TopicPartition{r.Topic, r.Partition}, AtOffset: r.Offset}
		for _, h := range r.Headers {
			switch h.Key {
			case ledger.RIDHeader:
				o.RID = string(h.Value)
			case ProvenanceHeader:
				o.Source, o.HasSource = parseProvenance(string(h.Value))
			}
		}
		out = append(out, o)
	})
	return out, err
}

// ReadDeadLettersThrough is ReadDeadLetters with the given isolation, up
// to sentinels (ReadThrough): for dead letters written in transactions.
func ReadDeadLettersThrough(ctx context.Context, brokers []string, topic string, isolation kgo.IsolationLevel) ([]DeadLetter, error) {
	var out []DeadLetter
	err := ReadThrough(ctx, brokers, topic, isolation, func(r *kgo.Record) { out = append(out, deadLetter(r)) })
	return out, err
}

// parseProvenance parses "topic/partition@offset".
func parseProvenance(v string) (Position, bool) {
	at := strings.LastIndexByte(v, '@')
	slash := strings.LastIndexByte(v[:max(at, 0)], '/')
	if at < 0 || slash < 0 {
		return Position{}, false
	}
	p, err1 := strconv.ParseInt(v[slash+1:at], 10, 32)
	o, err2 := strconv.ParseInt(v[at+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, false
	}
	return Position{Topic: v[:slash], Partition: int32(p), Offset: o}, true
}
