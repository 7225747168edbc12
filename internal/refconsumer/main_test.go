package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/reliability/check"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRejectsMissingFlags(t *testing.T) {
	tests := []struct {
		give []string
		want string
	}{
		{give: nil, want: "--brokers is required"},
		{give: []string{"--brokers", "b:1"}, want: "--topics is required"},
		{give: []string{"--brokers", "b:1", "--topics", "t"}, want: "--group is required"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g"}, want: "--ledger is required"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--workers", "0"}, want: "--workers 0"},
		{give: []string{"--route", "nope"}, want: "want FROM=TO"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--eos", "x", "--kafka-sink"}, want: "choose one mode"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--output-topic", "o"}, want: "--output-topic needs"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--kafka-sink", "--transaction-timeout", "9s"}, want: "--transaction-timeout needs --eos"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--share-group", "--eos", "x"}, want: "--share-group excludes"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--share-group", "--group-protocol", "consumer"}, want: "--share-group excludes"},
		{give: []string{"--brokers", "b:1", "--topics", "t", "--group", "g", "--ledger", "l", "--share-renew-every", "1s"}, want: "--share-renew-every needs --share-group"},
	}
	for _, tt := range tests {
		_, err := parse(tt.give, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parse(%q) = %v, want %q", tt.give, err, tt.want)
		}
	}
}

// TestReferenceConsumerSmoke runs the reference consumer in-process against
// a kfake broker with good and bad records, and checks its ledger with the
// checker: the fast smoke of the reliability suite's tools.
func TestReferenceConsumerSmoke(t *testing.T) {
	cl := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	dir := t.TempDir()
	ledgerPath := filepath.Join(dir, "c1.ledger")
	controlPath := filepath.Join(dir, "control.json")
	if err := os.WriteFile(controlPath, []byte(`{"latency":"1ms"}`), 0o644); err != nil {
		t.Fatal(err)
	}

	in := &inputs{extra: []kgo.RecordHeader{{Key: "odd\x00", Value: []byte{0xff, 0}}}}
	in.mix(40)
	in.add(nil, `{"seq":41}`, check.ExpectHandled)
	recs, expect := in.recs, in.expect
	cl.Produce(t, recs...)

	f := runUntilDelivered(t, len(recs), "--brokers", cl.Addrs[0], "--topics", "orders", "--group", "smoke", "--ledger", ledgerPath,
		"--control", controlPath, "--session-timeout", "2s", "--commit-interval", "100ms", "--log-level", "error")
	if !f.Ended || f.Torn != 0 {
		t.Fatalf("ledger ended=%v torn=%d, want a clean end", f.Ended, f.Torn)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	dead, err := check.ReadDeadLetters(rctx, cl.Addrs, "orders.dlq")
	if err != nil {
		t.Fatal(err)
	}
	rep := check.Check(check.Input{Produced: producedOf(recs, expect), Ledgers: []*ledger.File{f}, DeadLetters: dead})
	if ps := rep.Problems(check.Expectations{}); len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	if rep.Handled != len(recs)-3 || rep.DeadLettered != 3 {
		t.Fatalf("handled %d, dead-lettered %d; want %d and 3", rep.Handled, rep.DeadLettered, len(recs)-3)
	}
	for _, class := range []string{"decode", "panic", "permanent"} {
		if rep.DeadLetterClasses[class] != 1 {
			t.Errorf("dead letters by class %v, want one decode, one panic, one permanent", rep.DeadLetterClasses)
		}
	}
}

// inputs are records for the reference consumer, each with a rid header
// (and extra headers), and what should become of them.
type inputs struct {
	recs   []*kgo.Record
	expect map[string]check.Outcome
	extra  []kgo.RecordHeader
}

func (in *inputs) add(key []byte, value string, want check.Outcome) {
	if in.expect == nil {
		in.expect = map[string]check.Outcome{}
	}
	rid := fmt.Sprintf("r%d", len(in.recs))
	in.recs = append(in.recs, &kgo.Record{Topic: "orders", Key: key, Value: []byte(value),
		Headers: append([]kgo.RecordHeader{{Key: ledger.RIDHeader, Value: []byte(rid)}}, in.extra...)})
	in.expect[rid] = want
}

// mix adds good records over 5 keys, then an undecodable one, a tombstone,
// a panicking and a rejected one.
func (in *inputs) mix(good int) {
	for i := range good {
		in.add(fmt.Appendf(nil, "k%d", i%5), fmt.Sprintf(`{"seq":%d}`, i), check.ExpectHandled)
	}
	in.add([]byte("k1"), "not json", check.ExpectDeadLetter)
	in.add([]byte("k2"), "", check.ExpectHandled)
	in.add([]byte("k3"), `{"seq":-1,"panic":true}`, check.ExpectDeadLetter)
	in.add([]byte("k4"), `{"seq":-2,"permanent":true}`, check.ExpectDeadLetter)
}

// runUntilDelivered runs the reference consumer in-process with args (which
// name its ledger) until its ledger has delivered (handled or
// dead-lettered) n distinct records, stops it gracefully and returns the
// ledger.
func runUntilDelivered(t *testing.T, n int, args ...string) *ledger.File {
	t.Helper()
	path := args[slices.Index(args, "--ledger")+1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, make(chan struct{}), args, io.Discard) }()
	tail := &ledger.Tail{Path: path}
	delivered := map[string]bool{}
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		if err := tail.Poll(); err != nil {
			t.Fatal(err)
		}
		for _, e := range tail.New {
			if e.Kind == ledger.Handled || e.Kind == ledger.DeadLettered {
				delivered[e.RID] = true
			}
		}
		return len(delivered) == n
	}, "the reference consumer delivered %d of %d records", kafkatest.Lazy(func() any { return len(delivered) }), n)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	f, err := ledger.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// producedOf describes recs, whose first header is their rid, for the
// checker.
func producedOf(recs []*kgo.Record, expect map[string]check.Outcome) []check.Produced {
	var produced []check.Produced
	for _, r := range recs {
		rid := string(r.Headers[0].Value)
		produced = append(produced, check.Produced{RID: rid, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Acked: true, Expect: expect[rid]})
	}
	return produced
}

func TestControlLatencyRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.json")
	tests := []struct {
		give     string
		min, max time.Duration
	}{
		{give: `{}`, min: 2 * time.Millisecond, max: 2 * time.Millisecond},
		{give: `{"latency":"1ms","latency_max":"5ms"}`, min: time.Millisecond, max: 5 * time.Millisecond},
		{give: `{"latency_max":"1s"}`, min: 2 * time.Millisecond, max: time.Second},
		{give: `{"latency":"20ms"}`, min: 20 * time.Millisecond, max: 20 * time.Millisecond},
	}
	for _, tt := range tests {
		if err := os.WriteFile(path, []byte(tt.give), 0o644); err != nil {
			t.Fatal(err)
		}
		c := newControl(path, 2*time.Millisecond, 0, quiet())
		for range 100 {
			if d := c.load().pick(); d < tt.min || d > tt.max {
				t.Fatalf("control %s: latency %v outside [%v, %v]", tt.give, d, tt.min, tt.max)
			}
		}
	}
}

func TestRecorderLedgersFailedCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l")
	w, err := ledger.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{led: w, log: quiet()}
	tp := pipeline.TopicPartition{Topic: "t", Partition: 1}
	r.OnCommitted(tp, 5, nil)
	r.OnCommitted(tp, 9, errors.New("ILLEGAL_GENERATION"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := ledger.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range f.Events {
		got = append(got, fmt.Sprintf("%s %d", e.Kind, e.Offset))
	}
	if want := []string{"C 5", "F 9"}; !slices.Equal(got, want) {
		t.Fatalf("ledger events %v, want %v", got, want)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
