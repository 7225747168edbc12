// Package check compares what was produced with what the consumers of a
// reliability run handled and dead-lettered, and counts what went wrong.
//
// # Definitions
//
// Records are identified by their rid (ledger.RIDHeader), unique per run.
//
//   - A delivery of a record is a handled event (H) in any ledger, or a
//     record in the dead-letter topic whose rid is the record's. Dead-letter
//     events (D) in ledgers are not counted again: the dead-letter topic is
//     the authority, and D events only time the dead-lettering.
//   - Lost: an acknowledged produced record with no delivery.
//   - Duplicates: deliveries beyond the first, summed over records.
//   - Duplicate bound: what forced endings could make a consumer redo. For
//     each assignment of a partition in a ledger (from its A event), the
//     records it handled or dead-lettered at or above the last watermark it
//     committed (C) are uncommitted work; when the assignment ends by loss (L)
//     or the process ends without its End event (killed), that work may be
//     redone by the next owner. A revoke (R) or a graceful end commits it,
//     unless the consumer reported that a commit failed (an F event, not
//     covered by a later successful commit): then its uncommitted work
//     below the offset the failed commit tried to commit counts too, as
//     CommitFailureBound. So does
//     the work of a revocation whose drain timed out (T: the consumer
//     reported it cancelled what had not settled, so what completed above
//     the first unsettled record is redone), as DrainTimeoutBound. The
//     bound is the sum over forced endings and reported failures. Every
//     duplicate must come from one, so Duplicates <= DupBound.
//   - Order violations: for each key of each partition (of each incarnation
//     of the topic), take the handled and dead-letter events of the key's
//     records, in time order across all ledgers. The first delivery of each
//     record must come in offset order: a record delivered for the first
//     time after a later record of its key was delivered is one violation.
//     A re-delivery (after a kill or a loss) is a duplicate, not a
//     violation. Records with a nil key carry no order and are skipped, and
//     so are dead letters of class decode: the pipeline's source
//     dead-letters a record it cannot decode before it reaches the
//     key-ordered fan-out, so such a dead letter may come before earlier
//     records of its key are handled. That is by design (an undecodable
//     record has no key order to keep), and the records that are handled
//     keep theirs.
//   - Unexpected outcome: a record expected to be handled that was only
//     dead-lettered, or one expected to be dead-lettered that never was.
//   - Recovery: for each disruption time T, the time from T until every
//     partition that has deliveries after T has had its first one; the
//     largest over disruptions.
//   - Skipped: acknowledged records never delivered that lie below the
//     group's final committed offset of their partition. A lost record that
//     is not skipped is stuck (never settled, so never committed past: the
//     next owner would still get it); a skipped one is gone for the group.
//     Only the latest incarnation of each topic counts.
//   - Commit lag: for each consumed partition (latest incarnation), its end
//     offset minus the group's final committed offset. After every record
//     was delivered and every consumer stopped gracefully it must be 0, or
//     a restart would handle records again.
//
// # Kafka sink outputs
//
// When the consumers write their outputs to Kafka (Input.Mode), the output
// topic is read back too, up to sentinels (ReadThrough), and each output is
// matched to its input by its rid header; its provenance header names the
// input's position.
//
//   - Output losses: acknowledged records expected to be handled with no
//     output. Output duplicates: outputs beyond the first, summed over
//     records. An output of a record that was expected to be dead-lettered
//     is unexpected; one of a rid never produced is unknown; one whose
//     provenance is not the record's position is mismatched.
//   - Output order: per output partition and key, the first output of each
//     record must come in the input's offset order (outputs of a key go to
//     one partition, written one at a time by the key-ordered fan-out).
//   - Exactly once (read with read_committed): zero output losses and zero
//     output duplicates, and each dead letter once: a record with two dead
//     letters in the dead-letter topic (read_committed) is a dead-letter
//     duplicate. Handling a record again is expected here: a transaction
//     that aborts (an F event in the ledger: the reference consumer writes
//     one for every partition of an aborted transaction) rewinds every
//     partition to its last commit, and a revocation (R) aborts the
//     transaction too, so in this mode F and R events end the uncommitted
//     work like a loss, and the duplicate bound of the handled events
//     counts it. Outputs and dead letters that a read_uncommitted reader
//     sees and a read_committed one does not are the aborted ones.
//   - At least once: output duplicates must not exceed the output
//     duplicate bound, computed from the W events (written before each
//     write, so every output has one) as the duplicate bound is from H
//     events: the W'd records at or above the last commit at every forced
//     ending, plus every W event beyond the first for a record within one
//     assignment (a write retried after a failure or a timeout, which may
//     have landed).
package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/pipeline"
)

// Outcome is what should become of a produced record.
type Outcome byte

// Expected outcomes.
const (
	// ExpectHandled: the sink should succeed (the default).
	ExpectHandled Outcome = iota
	// ExpectDeadLetter: the record should be dead-lettered.
	ExpectDeadLetter
	// ExpectEither: either is fine.
	ExpectEither
)

// Produced is a record the producer wrote.
type Produced struct {
	RID       string
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Gen is the incarnation of the topic (bumped when it is recreated).
	Gen int
	// Acked is true if the broker acknowledged the record; unacknowledged
	// records may or may not exist and are not required.
	Acked  bool
	Expect Outcome
}

// DeadLetter is a record read back from a dead-letter topic.
type DeadLetter struct {
	RID string
	// Source position, from the provenance headers.
	Topic     string
	Partition int32
	Offset    int64
	Class     string
}

// SinkMode says whether and how the consumers wrote outputs to Kafka.
type SinkMode byte

// Sink modes.
const (
	// NoOutputs: the sink writes nothing to Kafka.
	NoOutputs SinkMode = iota
	// AtLeastOnce: every handled record has an output, maybe several.
	AtLeastOnce
	// ExactlyOnce: outputs, dead letters and offsets commit in
	// transactions; a read_committed reader sees each output once.
	ExactlyOnce
)

func (m SinkMode) String() string {
	switch m {
	case AtLeastOnce:
		return "at least once"
	case ExactlyOnce:
		return "exactly once"
	}
	return "none"
}

// Position is a record's place in a topic.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Output is a record read back from an output topic.
type Output struct {
	RID string
	// Source is the input position from the provenance header, if the
	// output has one (HasSource).
	Source    Position
	HasSource bool
	Key       []byte
	// At and AtOffset are where the output is.
	At       TopicPartition
	AtOffset int64
}

// Input is one run's evidence.
type Input struct {
	// Mode says how the consumers wrote outputs; NoOutputs skips the
	// output checks. With ExactlyOnce, DeadLetters must be read with
	// read_committed.
	Mode SinkMode
	// Outputs are the output topic's records (read_committed with
	// ExactlyOnce).
	Outputs []Output
	// SeenUncommitted, if not nil, counts the records a read_uncommitted
	// reader saw in the output topic ("outputs") and the dead-letter topic
	// ("dead letters"), for the aborted counts.
	SeenUncommitted map[string]int
	Produced        []Produced
	Ledgers         []*ledger.File
	DeadLetters     []DeadLetter
	// Disruptions are the times faults ended (a process killed, a proxy
	// healed, a broker back, a sink back), for recovery times.
	Disruptions []time.Time
	// Committed and Ends are the group's final committed offsets and the
	// end offsets of the consumed partitions, read after the consumers
	// stopped; nil skips the commit checks.
	Committed, Ends map[TopicPartition]int64
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Report is what the checker found.
type Report struct {
	Produced     int // acknowledged records
	Handled      int // distinct records with a handled event
	DeadLettered int // distinct records in the dead-letter topic
	Lost         int
	Duplicates   int
	DupBound     int
	// OrderViolations is the total; MaxKeyViolations the most for one key.
	OrderViolations  int
	MaxKeyViolations int
	Unexpected       int
	// Unknown counts deliveries of rids that were never produced, and
	// Mismatched those whose position differs from where the record was
	// produced.
	Unknown    int
	Mismatched int
	// LostAssignments counts L events; Kills counts ledgers without End.
	LostAssignments int
	Kills           int
	// CommitFailures counts F events (commits the consumer reported as
	// failed); CommitFailureBound is the part of DupBound from graceful
	// endings whose commit failed.
	CommitFailures     int
	CommitFailureBound int
	// DrainTimeouts counts T events (revocations whose drain timed out);
	// DrainTimeoutBound is the part of DupBound from them.
	DrainTimeouts     int
	DrainTimeoutBound int
	// Stray counts H/D events of a partition the ledger did not hold.
	Stray int
	Torn  int
	// Skipped counts lost records below the final committed offset;
	// CommitLag sums end minus committed offsets (see the package doc).
	Skipped   int
	CommitLag int64
	// DeadLetterClasses counts dead letters by class.
	DeadLetterClasses map[string]int
	// Recovery is the largest recovery time and RecoveryMedian the median
	// over disruptions; -1 if there were no disruptions or nothing was
	// delivered after them.
	Recovery, RecoveryMedian time.Duration
	// Samples name a few of the records behind each non-zero count.
	Samples map[string][]string

	// Kafka sink outputs (see the package doc); zero with NoOutputs.
	Mode              SinkMode
	Outputs           int // output records read
	OutputLost        int
	OutputDuplicates  int
	OutputDupBound    int // at least once: from the W events
	OutputUnexpected  int
	OutputUnknown     int
	OutputMismatched  int
	OutputOrder       int // order violations
	DeadLetterDups    int // dead letters beyond the first per record
	AbortedOutputs    int // seen read_uncommitted only; -1 if not read
	AbortedDeadLetter int // likewise for dead letters
}

const maxSamples = 5

func (r *Report) sample(kind, s string) {
	if r.Samples == nil {
		r.Samples = map[string][]string{}
	}
	if len(r.Samples[kind]) < maxSamples {
		r.Samples[kind] = append(r.Samples[kind], s)
	}
}

// delivery is one H or D event with where it came from, for ordering.
type delivery struct {
	ledger.Event
	file, line int
}

type tpKey struct {
	topic string
	part  int32
}

// Check compares in's evidence.
func Check(in Input) Report {
	r := Report{DeadLetterClasses: map[string]int{}, Recovery: -1, RecoveryMedian: -1}
	byRID := make(map[string]*Produced, len(in.Produced))
	for i := range in.Produced {
		p := &in.Produced[i]
		byRID[p.RID] = p
		if p.Acked {
			r.Produced++
		}
	}
	count := map[string]int{}
	handled := map[string]bool{}
	dead := map[string]bool{}
	var deliveries []delivery
	for fi, f := range in.Ledgers {
		r.Torn += f.Torn
		if !f.Ended {
			r.Kills++
		}
		r.DupBound += dupBound(f, in.Mode, &r)
		for li, e := range f.Events {
			switch e.Kind {
			case ledger.Lost:
				r.LostAssignments++
			case ledger.Handled:
				count[e.RID]++
				handled[e.RID] = true
				deliveries = append(deliveries, delivery{e, fi, li})
			case ledger.DeadLettered:
				deliveries = append(deliveries, delivery{e, fi, li})
			}
		}
	}
	deadCount := map[string]int{}
	for _, d := range in.DeadLetters {
		count[d.RID]++
		deadCount[d.RID]++
		if deadCount[d.RID] > 1 {
			r.DeadLetterDups++
			r.sample("dead-letter duplicates", fmt.Sprintf("%s (%s/%d@%d) dead-lettered %d times", d.RID, d.Topic, d.Partition, d.Offset, deadCount[d.RID]))
		}
		dead[d.RID] = true
		r.DeadLetterClasses[d.Class]++
		if p := byRID[d.RID]; p != nil && (p.Topic != d.Topic || p.Partition != d.Partition || p.Offset != d.Offset) && p.Acked {
			r.Mismatched++
			r.sample("mismatched", fmt.Sprintf("dead letter of %s says %s/%d@%d, produced at %s/%d@%d", d.RID, d.Topic, d.Partition, d.Offset, p.Topic, p.Partition, p.Offset))
		}
	}
	r.DeadLettered = len(dead)
	for rid, n := range count {
		p := byRID[rid]
		if p == nil {
			r.Unknown += n
			r.sample("unknown", fmt.Sprintf("rid %q delivered %d times, never produced", rid, n))
			continue
		}
		if n > 1 {
			r.Duplicates += n - 1
			r.sample("duplicates", fmt.Sprintf("%s (%s/%d@%d) delivered %d times", rid, p.Topic, p.Partition, p.Offset, n))
		}
	}
	for _, p := range in.Produced {
		if handled[p.RID] {
			r.Handled++
		}
		if !p.Acked {
			continue
		}
		if count[p.RID] == 0 {
			r.Lost++
			r.sample("lost", fmt.Sprintf("%s %s/%d@%d", p.RID, p.Topic, p.Partition, p.Offset))
			continue
		}
		switch {
		case p.Expect == ExpectHandled && !handled[p.RID]:
			r.Unexpected++
			r.sample("unexpected", fmt.Sprintf("%s %s/%d@%d dead-lettered, expected handled", p.RID, p.Topic, p.Partition, p.Offset))
		case p.Expect == ExpectDeadLetter && !dead[p.RID]:
			r.Unexpected++
			r.sample("unexpected", fmt.Sprintf("%s %s/%d@%d handled, expected dead-lettered", p.RID, p.Topic, p.Partition, p.Offset))
		}
	}
	checkOrder(deliveries, byRID, &r)
	if rs := recoveries(deliveries, in.Disruptions); len(rs) > 0 {
		slices.Sort(rs)
		r.Recovery, r.RecoveryMedian = rs[len(rs)-1], rs[len(rs)/2]
	}
	checkCommits(in, count, &r)
	if in.Mode != NoOutputs {
		checkOutputs(in, byRID, dead, &r)
	}
	return r
}

// checkOutputs matches the outputs to the produced records (see "Kafka
// sink outputs" in the package doc).
func checkOutputs(in Input, byRID map[string]*Produced, dead map[string]bool, r *Report) {
	r.Mode = in.Mode
	r.Outputs = len(in.Outputs)
	r.AbortedOutputs, r.AbortedDeadLetter = -1, -1
	if in.SeenUncommitted != nil {
		r.AbortedOutputs = in.SeenUncommitted["outputs"] - len(in.Outputs)
		r.AbortedDeadLetter = in.SeenUncommitted["dead letters"] - len(in.DeadLetters)
	}
	outs := slices.Clone(in.Outputs)
	slices.SortFunc(outs, func(a, b Output) int {
		return cmp.Or(cmp.Compare(a.At.Topic, b.At.Topic), cmp.Compare(a.At.Partition, b.At.Partition), cmp.Compare(a.AtOffset, b.AtOffset))
	})
	type orderKey struct {
		at  TopicPartition
		key string
		src TopicPartition
		gen int
	}
	n := map[string]int{}
	maxFirst := map[orderKey]int64{}
	for _, o := range outs {
		p := byRID[o.RID]
		if p == nil {
			r.OutputUnknown++
			r.sample("output unknown", fmt.Sprintf("output %s/%d@%d has rid %q, never produced", o.At.Topic, o.At.Partition, o.AtOffset, o.RID))
			continue
		}
		n[o.RID]++
		if want := (Position{p.Topic, p.Partition, p.Offset}); p.Acked && (!o.HasSource || o.Source != want) {
			r.OutputMismatched++
			r.sample("output mismatched", fmt.Sprintf("output %s/%d@%d of %s names %v (provenance %v), produced at %v", o.At.Topic, o.At.Partition, o.AtOffset, o.RID, o.Source, o.HasSource, want))
		}
		if n[o.RID] > 1 || p.Key == nil {
			continue
		}
		k := orderKey{o.At, string(p.Key), TopicPartition{p.Topic, p.Partition}, p.Gen}
		if last, ok := maxFirst[k]; ok && p.Offset < last {
			r.OutputOrder++
			r.sample("output order", fmt.Sprintf("key %q in %s/%d: output of @%d first written after that of @%d", p.Key, o.At.Topic, o.At.Partition, p.Offset, last))
			continue
		}
		maxFirst[k] = p.Offset
	}
	for _, p := range in.Produced {
		if !p.Acked {
			continue
		}
		got := n[p.RID]
		switch {
		case p.Expect == ExpectDeadLetter && got > 0:
			r.OutputUnexpected++
			r.sample("output unexpected", fmt.Sprintf("%s %s/%d@%d has %d outputs, expected a dead letter", p.RID, p.Topic, p.Partition, p.Offset, got))
			continue
		case p.Expect == ExpectEither && dead[p.RID] && got > 0:
			r.OutputUnexpected++
			r.sample("output unexpected", fmt.Sprintf("%s %s/%d@%d has %d outputs and a dead letter", p.RID, p.Topic, p.Partition, p.Offset, got))
			continue
		case got == 0 && (p.Expect == ExpectHandled || p.Expect == ExpectEither && !dead[p.RID]):
			r.OutputLost++
			r.sample("output lost", fmt.Sprintf("%s %s/%d@%d", p.RID, p.Topic, p.Partition, p.Offset))
		case got > 1:
			r.OutputDuplicates += got - 1
			r.sample("output duplicates", fmt.Sprintf("%s (%s/%d@%d) has %d outputs", p.RID, p.Topic, p.Partition, p.Offset, got))
		}
	}
}

// checkCommits counts skipped records and the final commit lag.
func checkCommits(in Input, count map[string]int, r *Report) {
	if in.Committed == nil {
		return
	}
	latest := map[string]int{}
	for _, p := range in.Produced {
		latest[p.Topic] = max(latest[p.Topic], p.Gen)
	}
	for _, p := range in.Produced {
		tp := TopicPartition{p.Topic, p.Partition}
		if !p.Acked || count[p.RID] > 0 || p.Gen != latest[p.Topic] {
			continue
		}
		if c, ok := in.Committed[tp]; ok && c > p.Offset {
			r.Skipped++
			r.sample("skipped", fmt.Sprintf("%s %s/%d@%d, committed %d", p.RID, p.Topic, p.Partition, p.Offset, c))
		}
	}
	for tp, end := range in.Ends {
		c, ok := in.Committed[tp]
		if !ok {
			c = 0
		}
		if lag := end - c; lag > 0 {
			r.CommitLag += lag
			r.sample("lag", fmt.Sprintf("%s/%d committed %d of %d", tp.Topic, tp.Partition, c, end))
		}
	}
}

// dupBound adds up the uncommitted work of f's forced endings, and counts
// deliveries outside any assignment (stray), which are forced too. In
// exactly-once mode an aborted transaction (F) and a revocation (R) force
// the uncommitted work to be redone too. It adds the output duplicate
// bound of the W events to r.OutputDupBound.
func dupBound(f *ledger.File, mode SinkMode, r *Report) int {
	type seg struct {
		committed int64 // last committed watermark; -1 before any
		offsets   []int64
		failed    int64 // highest offset of a reported failed commit not since covered; -1 if none
		writes    []int64
		written   map[int64]bool
	}
	// forcedWrites adds the W'd records of s at or above its last commit
	// to the output bound.
	forcedWrites := func(s *seg) {
		seen := map[int64]bool{}
		for _, o := range s.writes {
			if o >= s.committed && !seen[o] {
				seen[o] = true
				r.OutputDupBound++
			}
		}
	}
	open := map[tpKey]*seg{}
	uncommitted := func(s *seg) int {
		n := 0
		for _, o := range s.offsets {
			if o >= s.committed {
				n++
			}
		}
		return n
	}
	// claimed is the uncommitted work that a reported failed commit
	// claimed: below the offset it tried to commit.
	claimed := func(s *seg) int {
		n := 0
		for _, o := range s.offsets {
			if o >= s.committed && o < s.failed {
				n++
			}
		}
		return n
	}
	bound := 0
	for _, e := range f.Events {
		k := tpKey{e.Topic, e.Partition}
		switch e.Kind {
		case ledger.Assigned:
			open[k] = &seg{committed: -1, failed: -1, written: map[int64]bool{}}
		case ledger.Writing:
			if s := open[k]; s != nil {
				if s.written[e.Offset] {
					r.OutputDupBound++ // a write retried
				}
				s.written[e.Offset] = true
				s.writes = append(s.writes, e.Offset)
			}
		case ledger.CommitFailed:
			r.CommitFailures++
			if s := open[k]; s != nil && mode == ExactlyOnce {
				// The transaction aborted: every partition starts
				// over from its last commit.
				bound += uncommitted(s)
				s.offsets = s.offsets[:0]
			}
			if s := open[k]; s != nil && mode != ExactlyOnce && e.Offset > s.committed {
				s.failed = max(s.failed, e.Offset)
			}
		case ledger.Committed:
			if s := open[k]; s != nil {
				s.committed = max(s.committed, e.Offset)
				if s.committed >= s.failed {
					s.failed = -1
				}
			}
		case ledger.Handled, ledger.DeadLettered:
			s := open[k]
			if s == nil {
				r.Stray++
				r.sample("stray", fmt.Sprintf("%s: %s %s/%d@%d outside an assignment", f.Path, e.Kind, e.Topic, e.Partition, e.Offset))
				bound++
				continue
			}
			s.offsets = append(s.offsets, e.Offset)
		case ledger.RevokedTimedOut:
			r.DrainTimeouts++
			if s := open[k]; s != nil {
				n := uncommitted(s)
				bound += n
				r.DrainTimeoutBound += n
				forcedWrites(s)
			}
			delete(open, k)
		case ledger.Revoked:
			switch s := open[k]; {
			case s != nil && mode == ExactlyOnce:
				bound += uncommitted(s) // the transaction aborts
			case s != nil && s.failed >= 0:
				n := claimed(s)
				bound += n
				r.CommitFailureBound += n
				forcedWrites(s)
			}
			delete(open, k)
		case ledger.Lost:
			if s := open[k]; s != nil {
				bound += uncommitted(s)
				forcedWrites(s)
			}
			delete(open, k)
		}
	}
	for _, s := range open {
		switch {
		case !f.Ended:
			bound += uncommitted(s)
			forcedWrites(s)
		case s.failed >= 0:
			forcedWrites(s)
			n := claimed(s)
			bound += n
			r.CommitFailureBound += n
		}
	}
	return bound
}

type orderKey struct {
	topic string
	gen   int
	part  int32
	key   string
}

func checkOrder(ds []delivery, byRID map[string]*Produced, r *Report) {
	slices.SortFunc(ds, func(a, b delivery) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.file, b.file), cmp.Compare(a.line, b.line))
	})
	type state struct {
		seen     map[string]bool
		maxFirst int64
		bad      int
	}
	keys := map[orderKey]*state{}
	for _, d := range ds {
		p := byRID[d.RID]
		if p == nil {
			continue
		}
		if d.Topic != p.Topic || d.Partition != p.Partition || d.Offset != p.Offset {
			r.Mismatched++
			r.sample("mismatched", fmt.Sprintf("%s %s/%d@%d, produced at %s/%d@%d", d.RID, d.Topic, d.Partition, d.Offset, p.Topic, p.Partition, p.Offset))
			continue
		}
		if p.Key == nil || d.Kind == ledger.DeadLettered && d.Class == pipeline.ClassDecode {
			continue
		}
		k := orderKey{p.Topic, p.Gen, p.Partition, string(p.Key)}
		s := keys[k]
		if s == nil {
			s = &state{seen: map[string]bool{}, maxFirst: -1}
			keys[k] = s
		}
		if s.seen[d.RID] {
			continue
		}
		s.seen[d.RID] = true
		if p.Offset < s.maxFirst {
			s.bad++
			r.OrderViolations++
			r.MaxKeyViolations = max(r.MaxKeyViolations, s.bad)
			r.sample("order", fmt.Sprintf("key %q of %s/%d: @%d first delivered after @%d", p.Key, p.Topic, p.Partition, p.Offset, s.maxFirst))
			continue
		}
		s.maxFirst = p.Offset
	}
}

// recoveries returns, for each disruption followed by deliveries, the time
// until every partition delivering after it had delivered once; ds is
// sorted by time.
func recoveries(ds []delivery, disruptions []time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range disruptions {
		at := t.UnixNano()
		i, _ := slices.BinarySearchFunc(ds, at, func(d delivery, at int64) int { return cmp.Compare(d.Time, at) })
		first := map[tpKey]int64{}
		for _, d := range ds[i:] {
			k := tpKey{d.Topic, d.Partition}
			if _, ok := first[k]; !ok {
				first[k] = d.Time
			}
		}
		if len(first) == 0 {
			continue
		}
		worst := time.Duration(0)
		for _, ft := range first {
			worst = max(worst, time.Duration(ft-at))
		}
		out = append(out, worst)
	}
	return out
}

// Expectations say what a scenario must show.
type Expectations struct {
	// AllowForcedDuplicates lets duplicates up to DupBound; without it
	// there must be none.
	AllowForcedDuplicates bool
	// AllowLostAssignments permits L events (a scenario that forces them).
	AllowLostAssignments bool
	// Share is a share group's run (KIP-932): the broker hands records to
	// members one by one and redelivers those not acknowledged, so a
	// record may be delivered more than once (duplicates are counted, not
	// bounded: share groups are at least once), no order is kept across
	// deliveries (order violations are counted, not a problem), and there
	// are no committed offsets (Skipped and CommitLag do not apply).
	// Nothing may be lost, and each record must end as expected: handled,
	// or in the dead-letter topic.
	Share bool
}

// Problems lists every way r breaks the promises, empty if none.
func (r Report) Problems(x Expectations) []string {
	var ps []string
	add := func(ok bool, kind, format string, args ...any) {
		if ok {
			return
		}
		msg := fmt.Sprintf(format, args...)
		if s := r.Samples[kind]; len(s) > 0 {
			msg += " (e.g. " + strings.Join(s, "; ") + ")"
		}
		ps = append(ps, msg)
	}
	add(r.Lost == 0, "lost", "%d records lost", r.Lost)
	add(x.Share || r.Skipped == 0, "skipped", "%d undelivered records below the group's committed offset", r.Skipped)
	add(x.Share || r.CommitLag == 0, "lag", "the group's final commits are %d records short of the partitions' ends", r.CommitLag)
	add(x.Share || r.OrderViolations == 0, "order", "%d per-key order violations (max %d for one key)", r.OrderViolations, r.MaxKeyViolations)
	add(r.Unexpected == 0, "unexpected", "%d records with an unexpected outcome", r.Unexpected)
	add(r.Unknown == 0, "unknown", "%d deliveries of records never produced", r.Unknown)
	add(r.Mismatched == 0, "mismatched", "%d deliveries at a position other than the record's", r.Mismatched)
	switch {
	case x.Share:
	case x.AllowForcedDuplicates:
		add(r.Duplicates <= r.DupBound, "duplicates", "%d duplicates above the bound of %d uncommitted records at forced endings", r.Duplicates, r.DupBound)
	default:
		add(r.Duplicates == 0, "duplicates", "%d duplicates where none may happen", r.Duplicates)
	}
	add(x.AllowLostAssignments || r.LostAssignments == 0, "", "%d partitions lost where every rebalance should be graceful", r.LostAssignments)
	if r.Mode == NoOutputs {
		return ps
	}
	add(r.OutputLost == 0, "output lost", "%d records without an output (%s)", r.OutputLost, r.Mode)
	add(r.OutputUnexpected == 0, "output unexpected", "%d outputs of records that were to be dead-lettered", r.OutputUnexpected)
	add(r.OutputUnknown == 0, "output unknown", "%d outputs of records never produced", r.OutputUnknown)
	add(r.OutputMismatched == 0, "output mismatched", "%d outputs whose provenance is not their record's position", r.OutputMismatched)
	add(r.OutputOrder == 0, "output order", "%d outputs first written out of their key's order", r.OutputOrder)
	if r.Mode == ExactlyOnce {
		add(r.OutputDuplicates == 0, "output duplicates", "%d duplicate outputs read with read_committed (exactly once)", r.OutputDuplicates)
		add(r.DeadLetterDups == 0, "dead-letter duplicates", "%d duplicate dead letters read with read_committed (exactly once)", r.DeadLetterDups)
	} else {
		add(r.OutputDuplicates <= r.OutputDupBound, "output duplicates", "%d duplicate outputs above the bound of %d writes redone at forced endings or retried", r.OutputDuplicates, r.OutputDupBound)
	}
	return ps
}
