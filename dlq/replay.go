package dlq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultMaxReplays is how many times a record may be replayed before
// Replay refuses it, unless forced.
const DefaultMaxReplays = 3

// ReplayGroupPrefix starts the name of Replay's default progress group.
const ReplayGroupPrefix = "sluice-dlq-replay."

// flushTimeout bounds the flush and commit that save progress when a replay
// is interrupted.
const flushTimeout = 30 * time.Second

// Waiter paces replayed records; *rate.Limiter from golang.org/x/time/rate
// is one.
type Waiter interface {
	Wait(ctx context.Context) error
}

// ReplayConfig says what to replay and how.
type ReplayConfig struct {
	// Topic is the dead-letter topic to replay. Required.
	Topic string
	// To, when set, is where every replayed record goes, by key hash. When
	// empty, each record goes back to the topic in its HeaderTopic, to the
	// partition in its HeaderPartition (modulo the topic's partitions), and a
	// record without provenance is an error (ErrNoTarget).
	To string
	// Filter selects the records to replay; nil selects all.
	Filter *Filter
	// Group is the consumer group in which Replay commits how far it got,
	// so that running it again continues where it stopped. Default
	// ReplayGroup(Topic, To, Filter.String()): the same replay continues, a
	// different one starts from the beginning.
	Group string
	// Reset ignores the group's progress and starts at the topic's start.
	Reset bool
	// MaxReplays refuses a record whose replay count has reached it. Zero
	// means DefaultMaxReplays; negative is invalid.
	MaxReplays int
	// Force replays refused records too.
	Force bool
	// DryRun reads, filters and counts without producing or committing.
	DryRun bool
	// Limiter, when set, is waited on before each record is produced.
	Limiter Waiter
	// Progress, when set, is called after each batch of records with the
	// counts so far, on Replay's goroutine.
	Progress func(ReplayStats)
	// Now is the clock for Elapsed. Default time.Now.
	Now func() time.Time
}

// ReplayStats counts what Replay did.
type ReplayStats struct {
	// Group is the progress group used.
	Group string
	// DryRun says nothing was produced or committed.
	DryRun bool
	// Total is how many records were to be examined when Replay started:
	// from the group's progress to the end offsets taken at the start.
	Total int64
	// Examined counts records read; Matched those the filter selected;
	// Replayed those produced (in a dry run: that would have been);
	// Refused those over MaxReplays; Incomplete those whose dead letter
	// had to leave the value out (HeaderValueDropped), which are never
	// replayed, not even forced.
	Examined, Matched, Replayed, Refused, Incomplete int64
	// ByTarget counts replayed records by target topic. Progress callbacks
	// get it nil.
	ByTarget map[string]int64
	// Elapsed is the time since Replay started.
	Elapsed time.Duration
}

// ReplayGroup names the default progress group of a replay of topic to to
// with a filter described by filter (Filter.String, or any text that is
// equal for equal replays, such as the command line's filter flags).
func ReplayGroup(topic, to, filter string) string {
	h := fnv.New32a()
	h.Write([]byte(to))
	h.Write([]byte{0})
	h.Write([]byte(filter))
	return fmt.Sprintf("%s%s.%08x", ReplayGroupPrefix, topic, h.Sum32())
}

func (c *ReplayConfig) validate() error {
	switch {
	case c.Topic == "":
		return &ConfigError{Field: "ReplayConfig.Topic", Reason: "required"}
	case c.To == c.Topic:
		return &ConfigError{Field: "ReplayConfig.To", Reason: "must differ from the topic being replayed"}
	case c.MaxReplays < 0:
		return &ConfigError{Field: "ReplayConfig.MaxReplays", Reason: fmt.Sprintf("negative (%d)", c.MaxReplays)}
	}
	return c.Filter.validate()
}

// replayer is the state of one Replay call.
type replayer struct {
	a       *Admin
	cfg     ReplayConfig
	cl      *kgo.Client
	stats   ReplayStats
	start   time.Time
	checked map[string]bool // target topics known to exist
	next    map[int32]int64 // next offset per partition, once handled
	saved   map[int32]int64 // next offsets committed
	mu      sync.Mutex      // guards prodErr
	prodErr error           // first produce error since the last flush
}

// Replay republishes the dead letters of cfg.Topic that cfg.Filter selects,
// up to the end offsets taken when it starts, and returns what it did. A
// replayed record keeps its key, value and original headers; its
// provenance headers are dropped except HeaderReplayCount, which is
// incremented. Records whose replay count has reached MaxReplays are
// refused unless Force.
//
// After each batch it waits for the brokers to acknowledge the batch's
// records and then commits, in cfg.Group, the offsets it has handled
// (replayed, filtered out or refused); running it again continues from
// there. A crash between acknowledgement and commit replays that batch
// again: replay is at-least-once. When ctx ends, it saves its progress the
// same way and returns ctx's error with the stats so far.
func (a *Admin) Replay(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	if err := cfg.validate(); err != nil {
		return ReplayStats{}, err
	}
	if cfg.MaxReplays == 0 {
		cfg.MaxReplays = DefaultMaxReplays
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Group == "" {
		cfg.Group = ReplayGroup(cfg.Topic, cfg.To, cfg.Filter.String())
	}
	r := &replayer{
		a: a, cfg: cfg, start: cfg.Now(),
		stats:   ReplayStats{Group: cfg.Group, DryRun: cfg.DryRun, ByTarget: make(map[string]int64)},
		checked: make(map[string]bool),
		next:    make(map[int32]int64),
		saved:   make(map[int32]int64),
	}
	err := r.run(ctx)
	r.stats.Elapsed = cfg.Now().Sub(r.start)
	return r.stats, err
}

func (r *replayer) run(ctx context.Context) error {
	if r.cfg.To != "" {
		if err := r.target(ctx, r.cfg.To); err != nil {
			return err
		}
	}
	spans, err := r.a.spans(ctx, r.cfg.Topic)
	if err != nil {
		return err
	}
	if !r.cfg.Reset {
		if err := r.resume(ctx, spans); err != nil {
			return err
		}
	}
	for _, s := range spans {
		r.stats.Total += max(0, s.end-s.from)
	}
	if r.stats.Total == 0 {
		return nil
	}
	r.cl, err = kgo.NewClient(r.a.opts(
		consumeFrom(r.cfg.Topic, spans),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(Partitioner(nil)),
	)...)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer r.cl.Close()
	err = scan(ctx, r.cl, r.cfg.Topic, spans, func(rec *kgo.Record) error { return r.handle(ctx, rec) }, func() error {
		err := r.save(ctx)
		if r.cfg.Progress != nil {
			p := r.stats
			p.ByTarget, p.Elapsed = nil, r.cfg.Now().Sub(r.start)
			r.cfg.Progress(p)
		}
		return err
	})
	if err != nil {
		// Save what was acknowledged, even though ctx may be done.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		return errors.Join(err, r.save(sctx))
	}
	return nil
}

// resume moves each span's start to the group's committed offset.
func (r *replayer) resume(ctx context.Context, spans map[int32]span) error {
	resp, err := r.a.adm.FetchOffsets(ctx, r.cfg.Group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil // a group that never committed: start at the start
	}
	if err != nil {
		return fmt.Errorf("progress of group %s: %w", r.cfg.Group, err)
	}
	for p, s := range spans {
		if o, ok := resp.Lookup(r.cfg.Topic, p); ok && o.At > s.from {
			spans[p] = span{from: min(o.At, s.end), end: s.end}
			r.saved[p] = o.At
		}
	}
	return nil
}

// target checks once that topic exists.
func (r *replayer) target(ctx context.Context, topic string) error {
	if r.checked[topic] {
		return nil
	}
	if err := r.a.exists(ctx, topic); err != nil {
		return fmt.Errorf("replay target: %w", err)
	}
	r.checked[topic] = true
	return nil
}

func (r *replayer) handle(ctx context.Context, rec *kgo.Record) error {
	r.stats.Examined++
	l := NewLetter(rec)
	if !r.cfg.Filter.Match(l) {
		r.next[rec.Partition] = rec.Offset + 1
		return nil
	}
	r.stats.Matched++
	to, partition := r.cfg.To, int32(-1)
	if to == "" {
		if l.ProvenanceErr != nil {
			return fmt.Errorf("%w for %s/%d@%d (%w): pass --to TOPIC to say where it goes", ErrNoTarget, rec.Topic, rec.Partition, rec.Offset, l.ProvenanceErr)
		}
		to, partition = l.Provenance.Topic, l.Provenance.Partition
	}
	if l.Provenance.ValueDropped > 0 {
		r.stats.Incomplete++
		r.next[rec.Partition] = rec.Offset + 1
		return nil
	}
	count := l.Provenance.ReplayCount
	if l.ProvenanceErr != nil {
		count = 0
		for _, h := range rec.Headers {
			if h.Key == HeaderReplayCount {
				count = parseReplayCount(h.Value)
			}
		}
	}
	if count >= r.cfg.MaxReplays && !r.cfg.Force {
		r.stats.Refused++
		r.next[rec.Partition] = rec.Offset + 1
		return nil
	}
	if err := r.target(ctx, to); err != nil {
		return err
	}
	if !r.cfg.DryRun {
		if r.cfg.Limiter != nil {
			if err := r.cfg.Limiter.Wait(ctx); err != nil {
				return err
			}
		}
		// Once produced, a record is let finish even if ctx ends, so that
		// the progress saved on the way out covers it.
		pctx := context.WithoutCancel(ctx)
		out := &kgo.Record{
			Topic:   to,
			Key:     rec.Key,
			Value:   rec.Value,
			Headers: append(StripProvenance(rec.Headers), kgo.RecordHeader{Key: HeaderReplayCount, Value: []byte(strconv.Itoa(count + 1))}),
			Context: pctx,
		}
		if partition >= 0 {
			out.Context = withPartition(pctx, partition)
		}
		r.cl.Produce(pctx, out, r.produced)
	}
	r.stats.Replayed++
	r.stats.ByTarget[to]++
	r.next[rec.Partition] = rec.Offset + 1
	return nil
}

func (r *replayer) produced(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prodErr == nil {
		r.prodErr = err
	}
}

// save waits for what was produced to be acknowledged and then commits the
// handled offsets. After a produce error it commits nothing more.
func (r *replayer) save(ctx context.Context) error {
	if r.cfg.DryRun {
		return nil
	}
	if err := r.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush replayed records: %w", err)
	}
	r.mu.Lock()
	perr := r.prodErr
	r.mu.Unlock()
	if perr != nil {
		return fmt.Errorf("produce replayed record: %w", perr)
	}
	os := make(kadm.Offsets)
	for p, next := range r.next {
		if next > r.saved[p] {
			os.Add(kadm.Offset{Topic: r.cfg.Topic, Partition: p, At: next, LeaderEpoch: -1})
		}
	}
	if len(os) == 0 {
		return nil
	}
	if err := r.a.adm.CommitAllOffsets(ctx, r.cfg.Group, os); err != nil {
		return fmt.Errorf("commit progress in group %s: %w", r.cfg.Group, err)
	}
	os.Each(func(o kadm.Offset) { r.saved[o.Partition] = o.At })
	return nil
}
