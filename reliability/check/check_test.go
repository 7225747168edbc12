package check

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// produced returns n acknowledged records r0..r(n-1) on t/0 at offsets
// 0..n-1, all with key k.
func produced(n int) []Produced {
	ps := make([]Produced, n)
	for i := range ps {
		ps[i] = Produced{RID: fmt.Sprintf("r%d", i), Topic: "t", Offset: int64(i), Key: []byte("k"), Acked: true}
	}
	return ps
}

// led builds a ledger from a compact script: "A", "R", "L", "E", "C<off>",
// "F<off>" (a failed commit), "H<off>", "W<off>" (writing outputs), "D<off>" (class permanent) and "X<off>" (a dead letter of class
// decode) on partition 0 of topic t, with rid r<off>; time advances by one
// per event, from start.
func led(start int64, script string) *ledger.File {
	f := &ledger.File{Path: "test"}
	for i, w := range strings.Fields(script) {
		e := ledger.Event{Kind: ledger.Kind(w[0]), Time: start + int64(i), Topic: "t"}
		if len(w) > 1 {
			fmt.Sscan(w[1:], &e.Offset)
		}
		e.Class = "permanent"
		if w[0] == 'X' {
			e.Kind, e.Class = ledger.DeadLettered, "decode"
		}
		switch e.Kind {
		case ledger.Handled, ledger.DeadLettered, ledger.Writing:
			e.RID, e.Key = fmt.Sprintf("r%d", e.Offset), []byte("k")
		case ledger.End:
			f.Ended = true
		}
		f.Events = append(f.Events, e)
	}
	return f
}

func TestCheck(t *testing.T) {
	type want struct {
		lost, handled, dups, bound, order, unexpected, unknown, lostAssign, kills, dead, stray int
	}
	tests := []struct {
		name string
		give Input
		want want
	}{
		{
			name: "clean",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H1 H2 C3 R E")}},
			want: want{handled: 3},
		},
		{
			name: "lost",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H2 R E")}},
			want: want{lost: 1, handled: 2},
		},
		{
			name: "unacknowledged records are not required",
			give: Input{Produced: append(produced(2), Produced{RID: "r2", Topic: "t", Offset: 2, Key: []byte("k")}),
				Ledgers: []*ledger.File{led(0, "A H0 H1 R E")}},
			want: want{handled: 2},
		},
		{
			name: "kill: redelivery within the bound",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{
				led(0, "A H0 C1 H1 H2"),
				led(100, "A H1 H2 C3 R E"),
			}},
			want: want{handled: 3, dups: 2, bound: 2, kills: 1},
		},
		{
			name: "kill with nothing committed: every delivery is uncommitted",
			give: Input{Produced: produced(2), Ledgers: []*ledger.File{
				led(0, "A H0 H1"),
				led(100, "A H0 H1 R E"),
			}},
			want: want{handled: 2, dups: 2, bound: 2, kills: 1},
		},
		{
			name: "loss: uncommitted work of the lost assignment",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{
				led(0, "A H0 H1 C2 H2 L E"),
				led(100, "A H2 R E"),
			}},
			want: want{handled: 3, dups: 1, bound: 1, lostAssign: 1},
		},
		{
			name: "graceful revoke leaves no bound",
			give: Input{Produced: produced(2), Ledgers: []*ledger.File{
				led(0, "A H0 C1 R E"),
				led(100, "A H1 H0 R E"),
			}},
			want: want{handled: 2, dups: 1, order: 0},
		},
		{
			name: "order violation: a later record first",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H2 H1 R E")}},
			want: want{handled: 3, order: 1},
		},
		{
			name: "order across ledgers by time",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{
				led(0, "A H0 H2 R E"),
				led(1, "A H1 R E"),
			}},
			want: want{handled: 3, order: 1},
		},
		{
			name: "dead letters count as deliveries",
			give: Input{
				Produced:    append(produced(1), Produced{RID: "r1", Topic: "t", Offset: 1, Key: []byte("k"), Acked: true, Expect: ExpectDeadLetter}),
				Ledgers:     []*ledger.File{led(0, "A H0 D1 R E")},
				DeadLetters: []DeadLetter{{RID: "r1", Topic: "t", Offset: 1, Class: "decode"}},
			},
			want: want{handled: 1, dead: 1},
		},
		{
			name: "a sink dead letter keeps key order",
			give: Input{
				Produced:    append(produced(1), Produced{RID: "r1", Topic: "t", Offset: 1, Key: []byte("k"), Acked: true, Expect: ExpectDeadLetter}),
				Ledgers:     []*ledger.File{led(0, "A D1 H0 R E")},
				DeadLetters: []DeadLetter{{RID: "r1", Topic: "t", Offset: 1, Class: "permanent"}},
			},
			want: want{handled: 1, dead: 1, order: 1},
		},
		{
			name: "a decode dead letter may come ahead of its key",
			give: Input{
				Produced:    append(produced(1), Produced{RID: "r1", Topic: "t", Offset: 1, Key: []byte("k"), Acked: true, Expect: ExpectDeadLetter}),
				Ledgers:     []*ledger.File{led(0, "A X1 H0 R E")},
				DeadLetters: []DeadLetter{{RID: "r1", Topic: "t", Offset: 1, Class: "decode"}},
			},
			want: want{handled: 1, dead: 1},
		},
		{
			name: "unexpected dead letter and missing dead letter",
			give: Input{
				Produced: []Produced{
					{RID: "r0", Topic: "t", Offset: 0, Key: []byte("k"), Acked: true},
					{RID: "r1", Topic: "t", Offset: 1, Key: []byte("k"), Acked: true, Expect: ExpectDeadLetter},
				},
				Ledgers:     []*ledger.File{led(0, "A D0 H1 R E")},
				DeadLetters: []DeadLetter{{RID: "r0", Topic: "t", Offset: 0, Class: "error"}},
			},
			want: want{handled: 1, dead: 1, unexpected: 2},
		},
		{
			name: "unknown and stray deliveries",
			give: Input{Produced: produced(1), Ledgers: []*ledger.File{led(0, "H0 A H0 H7 R E")}},
			want: want{handled: 1, dups: 1, bound: 1, unknown: 1, stray: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.give)
			got := want{r.Lost, r.Handled, r.Duplicates, r.DupBound, r.OrderViolations, r.Unexpected, r.Unknown, r.LostAssignments, r.Kills, r.DeadLettered, r.Stray}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v\nsamples %v", got, tt.want, r.Samples)
			}
		})
	}
}

func TestCommitFailureBound(t *testing.T) {
	tests := []struct {
		name                    string
		give                    []*ledger.File
		dups, bound, fails, why int
	}{
		{
			name: "a revoke whose commit failed: its uncommitted work may be redone",
			give: []*ledger.File{led(0, "A H0 H1 C1 F2 R E"), led(100, "A H1 R E")},
			dups: 1, bound: 1, fails: 1, why: 1,
		},
		{
			name: "a later commit that landed covers the failure",
			give: []*ledger.File{led(0, "A H0 H1 F2 C2 R E"), led(100, "A H1 R E")},
			dups: 1, bound: 0, fails: 1, why: 0,
		},
		{
			name: "a graceful end whose final commit failed",
			give: []*ledger.File{led(0, "A H0 H1 F2 E"), led(100, "A H0 H1 R E")},
			dups: 2, bound: 2, fails: 1, why: 2,
		},
		{
			name: "a revoke whose drain timed out: what completed above its watermark may be redone",
			give: []*ledger.File{led(0, "A H1 C0 T E"), led(100, "A H0 H1 R E")},
			dups: 1, bound: 1, fails: 0, why: 0,
		},
		{
			name: "a failed commit explains only the work below the offset it tried to commit",
			give: []*ledger.File{led(0, "A H0 F1 H1 E"), led(100, "A H0 H1 R E")},
			dups: 2, bound: 1, fails: 1, why: 1,
		},
		{
			name: "a failed commit below the committed watermark explains nothing",
			give: []*ledger.File{led(0, "A H0 C1 F1 H1 C2 R E")},
			dups: 0, bound: 0, fails: 1, why: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(Input{Produced: produced(2), Ledgers: tt.give})
			if r.Duplicates != tt.dups || r.DupBound != tt.bound || r.CommitFailures != tt.fails || r.CommitFailureBound != tt.why {
				t.Errorf("duplicates %d, bound %d, commit failures %d explaining %d; want %d, %d, %d, %d",
					r.Duplicates, r.DupBound, r.CommitFailures, r.CommitFailureBound, tt.dups, tt.bound, tt.fails, tt.why)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	f := &ledger.File{Ended: true, Events: []ledger.Event{
		{Kind: ledger.Handled, Time: 5, Topic: "t", Partition: 0, RID: "a"},
		{Kind: ledger.Handled, Time: 12, Topic: "t", Partition: 0, RID: "b", Offset: 1},
		{Kind: ledger.Handled, Time: 15, Topic: "t", Partition: 1, RID: "c"},
		{Kind: ledger.Handled, Time: 16, Topic: "t", Partition: 0, RID: "d", Offset: 2},
	}}
	ps := []Produced{
		{RID: "a", Topic: "t", Acked: true}, {RID: "b", Topic: "t", Offset: 1, Acked: true},
		{RID: "c", Topic: "t", Partition: 1, Acked: true}, {RID: "d", Topic: "t", Offset: 2, Acked: true},
	}
	tests := []struct {
		give             []time.Time
		wantMax, wantMed time.Duration
	}{
		{give: nil, wantMax: -1, wantMed: -1},
		{give: []time.Time{time.Unix(0, 10)}, wantMax: 5, wantMed: 5},
		{give: []time.Time{time.Unix(0, 1), time.Unix(0, 14)}, wantMax: 14, wantMed: 14},
		{give: []time.Time{time.Unix(0, 1), time.Unix(0, 10), time.Unix(0, 14)}, wantMax: 14, wantMed: 5},
		{give: []time.Time{time.Unix(0, 20)}, wantMax: -1, wantMed: -1},
	}
	for _, tt := range tests {
		r := Check(Input{Produced: ps, Ledgers: []*ledger.File{f}, Disruptions: tt.give})
		if r.Recovery != tt.wantMax || r.RecoveryMedian != tt.wantMed {
			t.Errorf("disruptions %v: recovery max %v median %v, want %v and %v", tt.give, r.Recovery, r.RecoveryMedian, tt.wantMax, tt.wantMed)
		}
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		give Report
		x    Expectations
		want []string
	}{
		{name: "clean", give: Report{}, want: nil},
		{name: "graceful duplicates", give: Report{Duplicates: 2, DupBound: 5}, want: []string{"2 duplicates where none may happen"}},
		{name: "forced duplicates in bound", give: Report{Duplicates: 2, DupBound: 5}, x: Expectations{AllowForcedDuplicates: true}, want: nil},
		{name: "forced duplicates over bound", give: Report{Duplicates: 6, DupBound: 5}, x: Expectations{AllowForcedDuplicates: true},
			want: []string{"6 duplicates above the bound of 5 uncommitted records at forced endings"}},
		{name: "lost with samples", give: Report{Lost: 1, Samples: map[string][]string{"lost": {"r1 t/0@1"}}},
			want: []string{"1 records lost (e.g. r1 t/0@1)"}},
		{name: "unexpected loss of partitions", give: Report{LostAssignments: 1}, want: []string{"1 partitions lost where every rebalance should be graceful"}},
		{name: "share: duplicates, disorder and no commits are no problem", give: Report{Duplicates: 40, DupBound: 0, OrderViolations: 3, Skipped: 2, CommitLag: 100},
			x: Expectations{Share: true}, want: nil},
		{name: "share: losses and unexpected outcomes are", give: Report{Lost: 1, Unexpected: 2}, x: Expectations{Share: true},
			want: []string{"1 records lost", "2 records with an unexpected outcome"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.give.Problems(tt.x)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("Problems = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCommitChecks(t *testing.T) {
	tp := TopicPartition{"t", 0}
	old := Produced{RID: "old", Topic: "t", Offset: 9, Key: []byte("k"), Acked: true}
	regen := func(ps []Produced) []Produced {
		for i := range ps {
			ps[i].Gen = 1
		}
		return append(ps, old)
	}
	tests := []struct {
		name                string
		give                Input
		wantSkipped         int
		wantLag             int64
		wantLost, wantProbs int
	}{
		{
			name: "everything delivered and committed",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H1 H2 C3 R E")},
				Committed: map[TopicPartition]int64{tp: 3}, Ends: map[TopicPartition]int64{tp: 3}},
		},
		{
			name: "stuck record: undelivered, never committed past",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H1 C2 R E")},
				Committed: map[TopicPartition]int64{tp: 2}, Ends: map[TopicPartition]int64{tp: 3}},
			wantLag: 1, wantLost: 1, wantProbs: 2,
		},
		{
			name: "skipped record: committed past without a delivery",
			give: Input{Produced: produced(3), Ledgers: []*ledger.File{led(0, "A H0 H2 C3 R E")},
				Committed: map[TopicPartition]int64{tp: 3}, Ends: map[TopicPartition]int64{tp: 3}},
			wantSkipped: 1, wantLost: 1, wantProbs: 2,
		},
		{
			name: "nothing committed",
			give: Input{Produced: produced(2), Ledgers: []*ledger.File{led(0, "A H0 H1 R E")},
				Committed: map[TopicPartition]int64{}, Ends: map[TopicPartition]int64{tp: 2}},
			wantLag: 2, wantProbs: 1,
		},
		{
			name: "records of an earlier incarnation of the topic are not checked against its commits",
			give: Input{Produced: regen(produced(1)), Ledgers: []*ledger.File{led(0, "A H0 C1 R E")},
				Committed: map[TopicPartition]int64{tp: 1}, Ends: map[TopicPartition]int64{tp: 1}},
			wantLost: 1, wantProbs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.give)
			probs := r.Problems(Expectations{})
			if r.Skipped != tt.wantSkipped || r.CommitLag != tt.wantLag || r.Lost != tt.wantLost || len(probs) != tt.wantProbs {
				t.Errorf("skipped %d, lag %d, lost %d, problems %q; want %d, %d, %d and %d problems",
					r.Skipped, r.CommitLag, r.Lost, probs, tt.wantSkipped, tt.wantLag, tt.wantLost, tt.wantProbs)
			}
		})
	}
}
