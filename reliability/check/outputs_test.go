package check

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/internal/ledger"
)

// outs returns an output of r<off> for each offset, in that order, in
// partition 0 of "out", with provenance t/0@<off> and key k.
func outs(offsets ...int64) []Output {
	var os []Output
	for i, off := range offsets {
		os = append(os, Output{RID: fmt.Sprintf("r%d", off), Source: Position{"t", 0, off}, HasSource: true,
			Key: []byte("k"), At: TopicPartition{"out", 0}, AtOffset: int64(i)})
	}
	return os
}

func TestOutputs(t *testing.T) {
	type want struct{ outputs, lost, dups, bound, unexpected, unknown, mismatched, order, deadDups, problems int }
	clean := []*ledger.File{led(0, "A H0 H1 H2 C3 R E")}
	poison := append(produced(2), Produced{RID: "r2", Topic: "t", Offset: 2, Key: []byte("k"), Acked: true, Expect: ExpectDeadLetter})
	tests := []struct {
		name string
		give Input
		want want
	}{
		{
			name: "exactly once",
			give: Input{Mode: ExactlyOnce, Produced: produced(3), Ledgers: clean, Outputs: outs(0, 1, 2)},
			want: want{outputs: 3},
		},
		{
			name: "exactly once: a duplicate output",
			give: Input{Mode: ExactlyOnce, Produced: produced(3), Ledgers: clean, Outputs: outs(0, 1, 1, 2)},
			want: want{outputs: 4, dups: 1, problems: 1},
		},
		{
			name: "a lost output",
			give: Input{Mode: ExactlyOnce, Produced: produced(3), Ledgers: clean, Outputs: outs(0, 2)},
			want: want{outputs: 2, lost: 1, problems: 1},
		},
		{
			name: "outputs out of their key's order",
			give: Input{Mode: ExactlyOnce, Produced: produced(3), Ledgers: clean, Outputs: outs(0, 2, 1)},
			want: want{outputs: 3, order: 1, problems: 1},
		},
		{
			name: "a repeated output does not break order",
			give: Input{Mode: AtLeastOnce, Produced: produced(3), Ledgers: []*ledger.File{led(0, "A W0 H0 W1 H1"), led(100, "A W0 H0 W1 H1 W2 H2 C3 R E")},
				Outputs: outs(0, 1, 0, 1, 2)},
			want: want{outputs: 5, dups: 2, bound: 2},
		},
		{
			name: "an output of an unknown rid",
			give: Input{Mode: ExactlyOnce, Produced: produced(2), Ledgers: []*ledger.File{led(0, "A H0 H1 C2 R E")},
				Outputs: append(outs(0, 1), Output{RID: "nope", At: TopicPartition{"out", 1}})},
			want: want{outputs: 3, unknown: 1, problems: 1},
		},
		{
			name: "a poison record has a dead letter, once",
			give: Input{Mode: ExactlyOnce, Produced: poison, Ledgers: []*ledger.File{led(0, "A H0 H1 D2 C3 R E")}, Outputs: outs(0, 1),
				DeadLetters: []DeadLetter{{RID: "r2", Topic: "t", Offset: 2, Class: "permanent"}}},
			want: want{outputs: 2},
		},
		{
			name: "a poison record with an output and two dead letters",
			give: Input{Mode: ExactlyOnce, Produced: poison, Ledgers: []*ledger.File{led(0, "A H0 H1 D2 C3 R E")}, Outputs: outs(0, 1, 2),
				DeadLetters: []DeadLetter{{RID: "r2", Topic: "t", Offset: 2, Class: "permanent"}, {RID: "r2", Topic: "t", Offset: 2, Class: "permanent"}}},
			// The second dead letter is a duplicate delivery too.
			want: want{outputs: 3, unexpected: 1, deadDups: 1, problems: 3},
		},
		{
			name: "at least once: a retried write explains a duplicate",
			give: Input{Mode: AtLeastOnce, Produced: produced(1), Ledgers: []*ledger.File{led(0, "A W0 W0 H0 C1 R E")}, Outputs: outs(0, 0)},
			want: want{outputs: 2, dups: 1, bound: 1},
		},
		{
			name: "at least once: a duplicate nothing explains",
			give: Input{Mode: AtLeastOnce, Produced: produced(1), Ledgers: []*ledger.File{led(0, "A W0 H0 C1 R E")}, Outputs: outs(0, 0)},
			want: want{outputs: 2, dups: 1, problems: 1},
		},
		{
			name: "at least once: a write killed before its H event counts in the bound",
			give: Input{Mode: AtLeastOnce, Produced: produced(2), Ledgers: []*ledger.File{led(0, "A W0 H0 C1 W1"), led(100, "A W1 H1 C2 R E")},
				Outputs: outs(0, 1, 1)},
			want: want{outputs: 3, dups: 1, bound: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.give)
			ps := r.Problems(Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true})
			got := want{r.Outputs, r.OutputLost, r.OutputDuplicates, r.OutputDupBound, r.OutputUnexpected, r.OutputUnknown,
				r.OutputMismatched, r.OutputOrder, r.DeadLetterDups, len(ps)}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v\nproblems %q", got, tt.want, ps)
			}
		})
	}
}

func TestOutputMismatch(t *testing.T) {
	o := outs(0, 1)
	o[1].Source.Offset = 7
	r := Check(Input{Mode: ExactlyOnce, Produced: produced(2), Ledgers: []*ledger.File{led(0, "A H0 H1 C2 R E")}, Outputs: o})
	if r.OutputMismatched != 1 || len(r.Problems(Expectations{})) != 1 {
		t.Fatalf("mismatched %d, problems %q; want 1 and 1", r.OutputMismatched, r.Problems(Expectations{}))
	}
}

func TestAbortedCounts(t *testing.T) {
	r := Check(Input{Mode: ExactlyOnce, Produced: produced(2), Ledgers: []*ledger.File{led(0, "A H0 H1 C2 R E")}, Outputs: outs(0, 1),
		SeenUncommitted: map[string]int{"outputs": 5, "dead letters": 1}})
	if r.AbortedOutputs != 3 || r.AbortedDeadLetter != 1 {
		t.Fatalf("aborted outputs %d, dead letters %d; want 3 and 1", r.AbortedOutputs, r.AbortedDeadLetter)
	}
	if r = Check(Input{Mode: ExactlyOnce, Produced: produced(2), Outputs: outs(0, 1)}); r.AbortedOutputs != -1 {
		t.Fatalf("aborted outputs %d without a read_uncommitted reading, want -1", r.AbortedOutputs)
	}
}

// In exactly-once mode an aborted transaction (F) and a revocation (R)
// rewind: what was handled since the last commit is handled again, and
// the bound counts it. At least once, the same ledgers leave no bound.
func TestTransactionalDupBound(t *testing.T) {
	tests := []struct {
		name        string
		give        []*ledger.File
		dups        int
		eos, alo    int
		eosProblems int
	}{
		{
			name: "an aborted transaction rewinds",
			give: []*ledger.File{led(0, "A H0 H1 F2 H0 H1 C2 R E")},
			dups: 2, eos: 2, alo: 0,
		},
		{
			name: "two aborts in a row",
			give: []*ledger.File{led(0, "A H0 F1 H0 F1 H0 H1 C2 R E")},
			dups: 2, eos: 2, alo: 0,
		},
		{
			name: "a revocation aborts the transaction",
			give: []*ledger.File{led(0, "A H0 C1 H1 R E"), led(100, "A H1 C2 R E")},
			dups: 1, eos: 1, alo: 0,
		},
		{
			name: "handled again with no abort",
			give: []*ledger.File{led(0, "A H0 H1 C2 H1 C2 R E")},
			dups: 1, eos: 0, alo: 0, eosProblems: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eos := Check(Input{Mode: ExactlyOnce, Produced: produced(2), Ledgers: tt.give, Outputs: outs(0, 1)})
			alo := Check(Input{Produced: produced(2), Ledgers: tt.give})
			ps := eos.Problems(Expectations{AllowForcedDuplicates: true})
			if eos.Duplicates != tt.dups || eos.DupBound != tt.eos || alo.DupBound != tt.alo || len(ps) != tt.eosProblems {
				t.Errorf("duplicates %d, bound %d exactly once and %d at least once, problems %q; want %d, %d, %d, %d problems",
					eos.Duplicates, eos.DupBound, alo.DupBound, ps, tt.dups, tt.eos, tt.alo, tt.eosProblems)
			}
		})
	}
}

func TestParseProvenance(t *testing.T) {
	tests := []struct {
		give string
		want Position
		ok   bool
	}{
		{give: "orders/3@42", want: Position{"orders", 3, 42}, ok: true},
		{give: "a/b/0@1", want: Position{"a/b", 0, 1}, ok: true},
		{give: "orders/3", ok: false},
		{give: "orders@3", ok: false},
		{give: "orders/x@3", ok: false},
		{give: "@", ok: false},
		{give: "", ok: false},
	}
	for _, tt := range tests {
		got, ok := parseProvenance(tt.give)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseProvenance(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.ok)
		}
	}
}

// ReadThrough sees committed transactions and records outside them with
// read_committed, aborted ones too with read_uncommitted, and names the
// partition whose transaction is still open when it cannot pass it.
func TestReadThrough(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("out", 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txn := kc.Client(t, kgo.TransactionalID("check-test"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	write := func(commit kgo.TransactionEndTry, vals ...string) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "out", Partition: int32(i % 2), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	write(kgo.TryAbort, "a1", "a2")
	write(kgo.TryCommit, "c1", "c2")
	kc.Produce(t, &kgo.Record{Topic: "out", Partition: 1, Value: []byte("plain")})
	read := func(ctx context.Context, iso kgo.IsolationLevel) ([]string, error) {
		var vals []string
		err := ReadThrough(ctx, kc.Addrs, "out", iso, func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
		slices.Sort(vals)
		return vals, err
	}
	for _, tt := range []struct {
		iso  kgo.IsolationLevel
		want []string
	}{
		{kgo.ReadCommitted(), []string{"c1", "c2", "plain"}},
		{kgo.ReadUncommitted(), []string{"a1", "a2", "c1", "c2", "plain"}},
	} {
		got, err := read(ctx, tt.iso)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Fatalf("read %v: %q, %v; want %q", tt.iso, got, err, tt.want)
		}
	}

	// A transaction left open on partition 0 holds a read_committed
	// reader back until its deadline.
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "out", Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	_, err := read(short, kgo.ReadCommitted())
	if err == nil || !strings.Contains(err.Error(), "out/0") || !strings.Contains(err.Error(), "a transaction is still open") {
		t.Fatalf("read past an open transaction: %v; want an error naming out/0 and the open transaction", err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
}
