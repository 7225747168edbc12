package ledger

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAppendParseRoundTrip(t *testing.T) {
	tests := []struct {
		give Event
		want string
	}{
		{give: Event{Kind: Handled, Time: 7, Topic: "orders", Partition: 3, Offset: 42, Key: []byte("k1"), RID: "r9"},
			want: "H\t7\torders\t3\t42\t\"k1\"\t\"r9\"\n"},
		{give: Event{Kind: Handled, Time: 7, Topic: "orders", Partition: 0, Offset: 0},
			want: "H\t7\torders\t0\t0\t-\t-\n"},
		{give: Event{Kind: Handled, Time: 7, Topic: "t", Key: []byte{}, RID: "x"},
			want: "H\t7\tt\t0\t0\t\"\"\t\"x\"\n"},
		{give: Event{Kind: DeadLettered, Time: 8, Topic: "t", Partition: 1, Offset: 5, Key: []byte("a\tb\n\xff\x00"), RID: "r1", Class: "decode"},
			want: "D\t8\tt\t1\t5\t\"a\\tb\\n\\xff\\x00\"\t\"r1\"\tdecode\n"},
		{give: Event{Kind: Writing, Time: 9, Topic: "t", Partition: 1, Offset: 5, Key: []byte("k"), RID: "r1"},
			want: "W\t9\tt\t1\t5\t\"k\"\t\"r1\"\n"},
		{give: Event{Kind: Assigned, Time: 1, Topic: "t", Partition: 2}, want: "A\t1\tt\t2\n"},
		{give: Event{Kind: Revoked, Time: 1, Topic: "t", Partition: 2}, want: "R\t1\tt\t2\n"},
		{give: Event{Kind: RevokedTimedOut, Time: 1, Topic: "t", Partition: 2}, want: "T\t1\tt\t2\n"},
		{give: Event{Kind: Lost, Time: 1, Topic: "t", Partition: 2}, want: "L\t1\tt\t2\n"},
		{give: Event{Kind: Committed, Time: 1, Topic: "t", Partition: 2, Offset: 99}, want: "C\t1\tt\t2\t99\n"},
		{give: Event{Kind: CommitFailed, Time: 1, Topic: "t", Partition: 2, Offset: 99}, want: "F\t1\tt\t2\t99\n"},
		{give: Event{Kind: End, Time: 3}, want: "E\t3\n"},
	}
	for _, tt := range tests {
		got := string(Append(nil, tt.give))
		if got != tt.want {
			t.Errorf("Append(%+v) = %q, want %q", tt.give, got, tt.want)
			continue
		}
		back, err := Parse(got[:len(got)-1])
		if err != nil {
			t.Errorf("Parse(%q): %v", got, err)
			continue
		}
		if !reflect.DeepEqual(back, tt.give) {
			t.Errorf("Parse(%q) = %+v, want %+v", got, back, tt.give)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, give := range []string{"", "Q\t1", "H\t1\tt\t0", "H\tx\tt\t0\t0\t-\t-", "C\t1\tt\tp\t0", "H\t1\tt\t0\t0\tnoquote\t-"} {
		if _, err := Parse(give); err == nil {
			t.Errorf("Parse(%q) succeeded", give)
		}
	}
}

func TestWriterTailAndTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c1.ledger")
	w, err := Create(path, "member=c1")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(0, 100)
	w.now = func() time.Time { clock = clock.Add(1); return clock }
	tail := &Tail{Path: path}
	if err := w.Write(Event{Kind: Assigned, Topic: "t", Partition: 0}); err != nil {
		t.Fatal(err)
	}
	if err := tail.Poll(); err != nil {
		t.Fatal(err)
	}
	if len(tail.New) != 1 || tail.New[0].Kind != Assigned || tail.New[0].Time != 101 {
		t.Fatalf("first poll: %+v", tail.New)
	}
	if err := w.Write(Event{Kind: Handled, Topic: "t", Offset: 1, RID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Event{Kind: End}); err == nil {
		t.Fatal("write after close succeeded")
	}
	// A kill in the middle of a line leaves it without its newline.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("H\t5\tt\t0\t2"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := tail.Poll(); err != nil {
		t.Fatal(err)
	}
	if len(tail.New) != 1 || tail.New[0].RID != "r1" {
		t.Fatalf("second poll: %+v", tail.New)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header != "# sluice-ledger v1 member=c1" || len(got.Events) != 2 || got.Torn != 1 || got.Ended {
		t.Fatalf("Read = %+v", got)
	}
}

func TestTailMissingFile(t *testing.T) {
	tail := &Tail{Path: filepath.Join(t.TempDir(), "none")}
	if err := tail.Poll(); err != nil || len(tail.New) != 0 {
		t.Fatalf("Poll of a missing file: %v, %v", tail.New, err)
	}
}
