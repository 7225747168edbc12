package dlq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultMaxReplays is how many times a record may be replayed before
// Replay refuses it, unless forced.
const DefaultMaxReplays = 3

// DefaultProduceTimeout is how long Replay waits by default for Kafka to
// acknowledge a replayed record (and for any other answer) before it stops.
const DefaultProduceTimeout = 30 * time.Second

// ReplayGroupPrefix starts the name of Replay's default progress group.
const ReplayGroupPrefix = "sluice-dlq-replay."

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
	// Force replays records over MaxReplays too, including those that
	// earlier runs in Group refused (see Replay).
	Force bool
	// DryRun reads, filters and counts without producing or committing.
	DryRun bool
	// Limiter, when set, is waited on before each record is produced.
	Limiter Waiter
	// ProduceTimeout bounds each wait of Replay on the brokers: for a
	// replayed record's acknowledgement, for a fetch while records are
	// left, and for the commit of its progress. When it passes, Replay
	// stops with a *StallError. Zero means DefaultProduceTimeout.
	ProduceTimeout time.Duration
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
	// from the group's progress to the end offsets taken at the start
	// (with Force, from the first record an earlier run refused).
	Total int64
	// Examined counts records read; Matched those the filter selected;
	// Refused those over MaxReplays; Incomplete those whose dead letter
	// had to leave the value out (HeaderValueDropped), which are never
	// replayed, not even forced.
	Examined, Matched, Refused, Incomplete int64
	// Replayed counts records that Kafka acknowledged (in a dry run: that
	// would have been produced). Forced counts those of them that an
	// earlier run had refused.
	Replayed, Forced int64
	// NotAcknowledged counts records handed to the producer that Kafka did
	// not acknowledge (refused, or no answer within ProduceTimeout); they
	// may still have been written (replay is at-least-once). Progress
	// stops before the first of them in each partition.
	NotAcknowledged int64
	// ByTarget counts replayed (acknowledged) records by target topic.
	// Progress callbacks get it nil.
	ByTarget map[string]int64
	// Saved is, per partition of Topic, the offset at which the group's
	// committed progress continues, as Kafka acknowledged it: from an
	// earlier run or this one. Partitions without progress are absent.
	// Progress callbacks get it nil.
	Saved map[int32]int64
	// SaveErr is why saving the progress failed at the end; Saved is
	// then what an earlier save committed.
	SaveErr error
	// Unsaved counts replayed records beyond Saved (behind a record that
	// was not acknowledged, or not saved for SaveErr): running the same
	// replay again replays them again.
	Unsaved int64
	// RefusedWaiting says that records refused by this run or an earlier
	// one in Group wait for a run with Force.
	RefusedWaiting bool
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
		return &sluice.ConfigError{Package: "dlq", Option: "ReplayConfig", Field: "Topic", Reason: "required"}
	case c.To == c.Topic:
		return &sluice.ConfigError{Package: "dlq", Option: "ReplayConfig", Field: "To", Reason: "must differ from the topic being replayed"}
	case c.MaxReplays < 0:
		return &sluice.ConfigError{Package: "dlq", Option: "ReplayConfig", Field: "MaxReplays", Value: c.MaxReplays, Reason: "must not be negative"}
	case c.ProduceTimeout < 0:
		return &sluice.ConfigError{Package: "dlq", Option: "ReplayConfig", Field: "ProduceTimeout", Value: c.ProduceTimeout, Reason: "must not be negative"}
	}
	return c.Filter.validate()
}

// replayer is the state of one Replay call.
type replayer struct {
	a       *Admin
	cfg     ReplayConfig
	cl      *kgo.Client
	closeCl sync.Once
	start   time.Time
	checked map[string]bool // target topics known to exist
	parts   map[int32]*replayPart

	mu      sync.Mutex // guards the fields below, which produce callbacks change
	stats   ReplayStats
	sent    []*sentRecord // records produced and not yet answered, oldest first (answered ones are dropped lazily)
	pending int           // records produced and not yet answered
	answers chan struct{} // signalled on every answer; capacity one
	prodErr error         // the first failed produce
}

// replayPart is the progress of one partition of the dead-letter topic.
type replayPart struct {
	next  int64          // offset after the last record examined; -1 before any
	queue []*sentRecord  // records produced since the last save, in offset order
	saved int64          // the group's committed offset; -1 none
	meta  string         // the metadata committed with it
	segs  []refusedRange // refused records of earlier runs (the metadata)
	// rescanEnd: with Force, records below it were examined by earlier
	// runs; only those they refused are replayed. -1 when not rescanning.
	rescanEnd int64
	// refusedFirst and refusedLast bound this run's refusals; -1 none.
	refusedFirst, refusedLast int64
}

// sentRecord is a replayed record on its way; its fields are guarded by
// replayer.mu.
type sentRecord struct {
	offset int64 // in the dead-letter topic
	at     time.Time
	state  sendState
}

type sendState uint8

const (
	sendPending sendState = iota
	sendAcked
	sendFailed
)

// Replay republishes the dead letters of cfg.Topic that cfg.Filter selects,
// up to the end offsets taken when it starts, and returns what it did. A
// replayed record keeps its key, value and original headers; its
// provenance headers are dropped except HeaderReplayCount, which is
// incremented.
//
// Only records that Kafka acknowledged count as replayed. After each batch
// Replay waits for the acknowledgements and commits, in cfg.Group, how far
// it got in each partition: up to the first record that was not
// acknowledged (records filtered out, refused or without their value are
// passed over). Running it again continues from there. A crash between an
// acknowledgement and its commit replays that record again: replay is
// at-least-once. When a record is not acknowledged (a produce error, or no
// answer within ProduceTimeout), Replay stops producing, saves its progress
// and returns the error; when ctx ends, it waits for the records in flight
// (at most ProduceTimeout), saves its progress and returns ctx's error. The
// stats say what was saved (Saved, SaveErr, Unsaved).
//
// Records whose replay count has reached MaxReplays are refused unless
// Force. The commit remembers where refused records lie (offset ranges and
// the MaxReplays that refused them, in the commit's metadata), so that a
// later run in the same group with Force replays exactly those, and then
// continues where the group left off; a run without Force leaves them
// waiting (RefusedWaiting).
func (a *Admin) Replay(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	if err := cfg.validate(); err != nil {
		return ReplayStats{}, err
	}
	if cfg.MaxReplays == 0 {
		cfg.MaxReplays = DefaultMaxReplays
	}
	if cfg.ProduceTimeout == 0 {
		cfg.ProduceTimeout = DefaultProduceTimeout
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
		parts:   make(map[int32]*replayPart),
		answers: make(chan struct{}, 1),
	}
	err := r.run(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Elapsed = cfg.Now().Sub(r.start)
	s.Saved = make(map[int32]int64)
	for p, rp := range r.parts {
		if rp.saved >= 0 {
			s.Saved[p] = rp.saved
		}
		for _, sr := range rp.queue {
			if sr.state == sendAcked && sr.offset >= rp.saved {
				s.Unsaved++
			}
		}
		s.RefusedWaiting = s.RefusedWaiting || rp.refusedFirst >= 0 || len(rp.segs) > 0
	}
	if cfg.DryRun {
		s.Saved = nil
	}
	return s, err
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
	for p := range spans {
		r.parts[p] = &replayPart{next: -1, saved: -1, rescanEnd: -1, refusedFirst: -1, refusedLast: -1}
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
	defer r.closeClient()
	err = scan(ctx, r.cl, r.cfg.Topic, spans, r.cfg.ProduceTimeout, func(rec *kgo.Record) error { return r.handle(ctx, rec) }, func() error {
		if err := r.settle(ctx); err != nil {
			return err
		}
		err := r.save(ctx)
		if r.cfg.Progress != nil {
			r.mu.Lock()
			p := r.stats
			r.mu.Unlock()
			p.ByTarget, p.Elapsed = nil, r.cfg.Now().Sub(r.start)
			r.cfg.Progress(p)
		}
		return err
	})
	if err == nil {
		return nil
	}
	// Let what is in flight be answered (unless the brokers stalled
	// already), then save what was acknowledged, even though ctx may be
	// done. The error is err; a failed save is in the stats.
	wctx := context.WithoutCancel(ctx)
	if !errors.Is(err, ErrStalled) {
		if serr := r.settle(wctx); serr != nil && errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w; then %w", err, serr)
		}
	}
	r.abandon(wctx)
	if serr := r.save(wctx); serr == nil && errors.As(err, new(*saveError)) {
		return nil // a failed save, retried: everything is saved after all
	}
	return err
}

// saveError is a failed commit of the progress.
type saveError struct{ err error }

func (e *saveError) Error() string { return e.err.Error() }
func (e *saveError) Unwrap() error { return e.err }

// resume moves each span's start to the group's committed offset (with
// Force, to the first record an earlier run refused).
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
		o, ok := resp.Lookup(r.cfg.Topic, p)
		if !ok || o.At < 0 {
			continue
		}
		rp := r.parts[p]
		segs, err := parseRefused(o.Metadata)
		if err != nil {
			return fmt.Errorf("progress of group %s in %s/%d: %w: is the group a replay's?", r.cfg.Group, r.cfg.Topic, p, err)
		}
		rp.saved, rp.meta, rp.segs = o.At, o.Metadata, segs
		from := o.At
		if r.cfg.Force && len(segs) > 0 {
			rp.rescanEnd = o.At
			for _, s := range segs {
				from = min(from, s.first)
			}
		}
		if from > s.from {
			spans[p] = span{from: min(from, s.end), end: s.end}
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
	if err := r.check(); err != nil {
		return err
	}
	rp := r.parts[rec.Partition]
	r.add(func(s *ReplayStats) { s.Examined++ })
	pass := func() error { rp.next = rec.Offset + 1; return nil }
	l := NewLetter(rec)
	if !r.cfg.Filter.Match(l) {
		return pass()
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
	forced := false
	if rec.Offset < rp.rescanEnd {
		// Examined by an earlier run: replay it only if that run refused it.
		if !refusedBefore(rp.segs, rec.Offset, count) {
			return pass()
		}
		forced = true
	}
	r.add(func(s *ReplayStats) { s.Matched++ })
	to, partition := r.cfg.To, int32(-1)
	if to == "" {
		if l.ProvenanceErr != nil {
			return fmt.Errorf("%w for %s/%d@%d (%w): pass --to TOPIC to say where it goes", ErrNoTarget, rec.Topic, rec.Partition, rec.Offset, l.ProvenanceErr)
		}
		to, partition = l.Provenance.Topic, l.Provenance.Partition
	}
	if l.Provenance.ValueDropped > 0 {
		r.add(func(s *ReplayStats) { s.Incomplete++ })
		return pass()
	}
	if count >= r.cfg.MaxReplays && !r.cfg.Force {
		r.add(func(s *ReplayStats) { s.Refused++ })
		if rp.refusedFirst < 0 {
			rp.refusedFirst = rec.Offset
		}
		rp.refusedLast = rec.Offset
		return pass()
	}
	if err := r.target(ctx, to); err != nil {
		return err
	}
	if r.cfg.DryRun {
		r.mu.Lock()
		r.countReplayedLocked(to, forced)
		r.mu.Unlock()
		return pass()
	}
	if r.cfg.Limiter != nil {
		if err := r.cfg.Limiter.Wait(ctx); err != nil {
			return err
		}
		if err := r.check(); err != nil {
			return err
		}
	}
	// Once produced, a record is let finish even if ctx ends, so that the
	// progress saved on the way out covers it.
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
	sr := &sentRecord{offset: rec.Offset, at: time.Now()}
	r.mu.Lock()
	rp.queue = append(rp.queue, sr)
	r.sent = append(r.sent, sr)
	r.pending++
	r.mu.Unlock()
	r.cl.Produce(pctx, out, func(_ *kgo.Record, err error) { r.answered(sr, to, forced, err) })
	return pass()
}

// answered records Kafka's answer for sr.
func (r *replayer) answered(sr *sentRecord, to string, forced bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	if err != nil {
		sr.state = sendFailed
		r.stats.NotAcknowledged++
		if r.prodErr == nil {
			r.prodErr = fmt.Errorf("produce replayed record to %s: %w", to, err)
		}
	} else {
		sr.state = sendAcked
		r.countReplayedLocked(to, forced)
	}
	select {
	case r.answers <- struct{}{}:
	default:
	}
}

// add changes the stats.
func (r *replayer) add(f func(*ReplayStats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

func (r *replayer) countReplayedLocked(to string, forced bool) {
	r.stats.Replayed++
	r.stats.ByTarget[to]++
	if forced {
		r.stats.Forced++
	}
}

// check returns the first produce error, or a *StallError when a record
// has waited longer than ProduceTimeout for its answer.
func (r *replayer) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prodErr != nil {
		return r.prodErr
	}
	if oldest := r.oldestLocked(); oldest != nil && time.Since(oldest.at) > r.cfg.ProduceTimeout {
		return r.stallLocked()
	}
	return nil
}

// oldestLocked returns the oldest record still waiting for its answer.
func (r *replayer) oldestLocked() *sentRecord {
	for len(r.sent) > 0 && r.sent[0].state != sendPending {
		r.sent = r.sent[1:]
	}
	if len(r.sent) == 0 {
		return nil
	}
	return r.sent[0]
}

func (r *replayer) stallLocked() error {
	return &StallError{What: fmt.Sprintf("%d replayed %s not acknowledged", r.pending, plural(r.pending, "record", "records")), After: r.cfg.ProduceTimeout}
}

// settle waits until every record produced has its answer, or one has
// waited ProduceTimeout (a *StallError), or ctx ends; it returns the first
// produce error.
func (r *replayer) settle(ctx context.Context) error {
	for {
		r.mu.Lock()
		oldest, perr := r.oldestLocked(), r.prodErr
		var stall error
		if oldest != nil && time.Since(oldest.at) > r.cfg.ProduceTimeout {
			stall = r.stallLocked()
		}
		r.mu.Unlock()
		switch {
		case perr != nil && oldest == nil:
			return perr
		case oldest == nil:
			return nil
		case stall != nil:
			return stall
		}
		t := time.NewTimer(time.Until(oldest.at.Add(r.cfg.ProduceTimeout)) + time.Millisecond)
		select {
		case <-r.answers:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

func (r *replayer) closeClient() { r.closeCl.Do(r.cl.Close) }

// abandon gives up on the records still waiting for an answer: it closes
// the client, which fails them, and waits (at most ProduceTimeout) for
// their callbacks, so that the stats and the progress are final.
func (r *replayer) abandon(ctx context.Context) {
	if r.cl == nil || r.cfg.DryRun {
		return
	}
	r.closeClient()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ProduceTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		n := r.pending
		r.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-r.answers:
		case <-ctx.Done():
			return
		}
	}
}

// save commits, for each partition whose progress moved, the offset of its
// first record not acknowledged (or after its last examined record), with
// the refused ranges in the metadata. A failure is kept in the stats.
func (r *replayer) save(ctx context.Context) error {
	if r.cfg.DryRun {
		return nil
	}
	os := make(kadm.Offsets)
	r.mu.Lock()
	for p, rp := range r.parts {
		at, meta, ok := r.progressLocked(rp)
		if ok && (at != rp.saved || meta != rp.meta) {
			os.Add(kadm.Offset{Topic: r.cfg.Topic, Partition: p, At: at, LeaderEpoch: -1, Metadata: meta})
		}
	}
	r.mu.Unlock()
	if len(os) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ProduceTimeout)
	defer cancel()
	err := r.a.adm.CommitAllOffsets(cctx, r.cfg.Group, os)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = &StallError{What: "progress not committed", After: r.cfg.ProduceTimeout}
		}
		err = &saveError{fmt.Errorf("commit progress in group %s: %w", r.cfg.Group, err)}
		r.mu.Lock()
		r.stats.SaveErr = err
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.SaveErr = nil
	os.Each(func(o kadm.Offset) {
		rp := r.parts[o.Partition]
		rp.saved, rp.meta = o.At, o.Metadata
		if rp.rescanEnd >= 0 && o.Metadata == "" {
			rp.segs = nil // every refused record of earlier runs is replayed
		}
		for len(rp.queue) > 0 && rp.queue[0].offset < o.At {
			rp.queue = rp.queue[1:]
		}
	})
	return nil
}

// progressLocked returns the offset and metadata to commit for rp, and
// whether there is any.
func (r *replayer) progressLocked(rp *replayPart) (int64, string, bool) {
	if rp.next < 0 {
		return 0, "", false
	}
	at := rp.next
	for _, sr := range rp.queue {
		if sr.state != sendAcked {
			at = sr.offset
			break
		}
	}
	segs := rp.segs
	if rp.rescanEnd >= 0 {
		// A forced run: the refused records below at are replayed.
		segs = trimRefused(segs, at)
		at = max(at, rp.saved)
	}
	if rp.refusedFirst >= 0 && rp.refusedFirst < at {
		segs = append(slices.Clip(segs), refusedRange{first: rp.refusedFirst, last: min(rp.refusedLast, at-1), max: r.cfg.MaxReplays})
	}
	return at, formatRefused(segs), true
}

// refusedRange is where records refused by a run lie: offsets first to
// last (inclusive) of a partition, where every record whose replay count
// had reached max was refused.
type refusedRange struct {
	first, last int64
	max         int
}

// refusedPrefix starts the commit metadata of a partition with refused
// records: "sluice.dlq.refused=FIRST-LAST@MAX,...".
const refusedPrefix = "sluice.dlq.refused="

func formatRefused(segs []refusedRange) string {
	if len(segs) == 0 {
		return ""
	}
	b := []byte(refusedPrefix)
	for i, s := range segs {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d-%d@%d", s.first, s.last, s.max)
	}
	return string(b)
}

func parseRefused(meta string) ([]refusedRange, error) {
	if meta == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(meta, refusedPrefix)
	if !ok {
		return nil, fmt.Errorf("unknown commit metadata %q", meta)
	}
	var segs []refusedRange
	for item := range strings.SplitSeq(rest, ",") {
		var s refusedRange
		if _, err := fmt.Sscanf(item, "%d-%d@%d", &s.first, &s.last, &s.max); err != nil || s.first < 0 || s.last < s.first || s.max < 1 {
			return nil, fmt.Errorf("bad refused range %q in commit metadata", item)
		}
		segs = append(segs, s)
	}
	return segs, nil
}

// trimRefused drops the parts of segs below from.
func trimRefused(segs []refusedRange, from int64) []refusedRange {
	var out []refusedRange
	for _, s := range segs {
		if s.last < from {
			continue
		}
		s.first = max(s.first, from)
		out = append(out, s)
	}
	return out
}

// refusedBefore reports whether a record at off with replay count count
// was refused by an earlier run.
func refusedBefore(segs []refusedRange, off int64, count int) bool {
	for _, s := range segs {
		if off >= s.first && off <= s.last && count >= s.max {
			return true
		}
	}
	return false
}
