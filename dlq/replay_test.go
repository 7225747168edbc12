package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// deadLetter writes n hand-made dead letters of topic's partitions 0 and 1,
// record i failing with class decode when i is even and permanent when odd.
func deadLetter(t *testing.T, pub *dlq.Publisher, topic string, n int) {
	t.Helper()
	for i := range n {
		class := pipeline.ClassDecode
		if i%2 == 1 {
			class = pipeline.ClassPermanent
		}
		rec := &pipeline.Record{
			Topic: topic, Partition: int32(i % 2), Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i),
			Headers: []pipeline.Header{{Key: "traceparent", Value: []byte("tp" + strconv.Itoa(i))}},
		}
		if err := pub.DeadLetter(ctxT(t), pipeline.DeadLetter{Record: rec, Stage: "sink", Err: fmt.Errorf("bad record %d", i), Class: class, Attempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// redeadLetter dead-letters again every record of topic, as a consumer
// whose sink still fails would.
func redeadLetter(t *testing.T, a *dlq.Admin, pub *dlq.Publisher, topic string, from map[int32]int64) int {
	t.Helper()
	n := 0
	for _, l := range readAll(t, a, topic, nil) {
		r := l.Record
		if r.Offset < from[r.Partition] {
			continue
		}
		rec := &pipeline.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, pipeline.Header{Key: h.Key, Value: h.Value})
		}
		if err := pub.DeadLetter(ctxT(t), pipeline.DeadLetter{Record: rec, Stage: "sink", Err: errors.New("still bad"), Class: pipeline.ClassPermanent}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// committed returns group's committed offsets in orders.dlq; a group that
// never committed has none.
func committed(t *testing.T, c *kafkatest.Cluster, group string) map[int32]int64 {
	t.Helper()
	resp, err := kadm.NewClient(c.Client(t)).FetchOffsets(ctxT(t), group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "orders.dlq" {
			out[o.Partition] = o.At
		}
	})
	return out
}

func TestReplay(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deadLetter(t, pub, "orders", 10)
	a := newAdmin(t, c)
	decode := &dlq.Filter{Classes: []string{pipeline.ClassDecode}}

	var progress []dlq.ReplayStats
	dry, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Filter: decode, DryRun: true, Progress: func(s dlq.ReplayStats) { progress = append(progress, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Total != 10 || dry.Examined != 10 || dry.Matched != 5 || dry.Replayed != 5 || dry.Refused != 0 || !dry.DryRun {
		t.Fatalf("dry run stats %+v", dry)
	}
	if len(progress) == 0 || progress[len(progress)-1].Examined != 10 {
		t.Fatalf("progress %+v", progress)
	}
	if ends := c.EndOffsets(t, "orders"); ends[0]+ends[1] != 0 {
		t.Fatalf("dry run produced: %v", ends)
	}
	if got := committed(t, c, dry.Group); len(got) != 0 {
		t.Fatalf("dry run committed %v", got)
	}

	first, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Filter: decode})
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed != 5 || first.ByTarget["orders"] != 5 || first.Group != dry.Group {
		t.Fatalf("first replay %+v", first)
	}
	replayed := readAll(t, a, "orders", nil)
	if len(replayed) != 5 {
		t.Fatalf("orders holds %d records, want 5", len(replayed))
	}
	for _, l := range replayed {
		r := l.Record
		i, _ := strconv.Atoi(string(r.Key[1:]))
		if i%2 != 0 || string(r.Value) != fmt.Sprint("v", i) || r.Partition != int32(i%2) {
			t.Errorf("replayed %s=%s to partition %d", r.Key, r.Value, r.Partition)
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != "traceparent" || r.Headers[1].Key != dlq.HeaderReplayCount || string(r.Headers[1].Value) != "1" {
			t.Errorf("replayed headers %v", r.Headers)
		}
	}
	if got := committed(t, c, first.Group); got[0] != 5 || got[1] != 5 {
		t.Fatalf("committed %v, want 5 and 5", got)
	}

	second, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Filter: decode})
	if err != nil {
		t.Fatal(err)
	}
	if second.Total != 0 || second.Replayed != 0 {
		t.Fatalf("second replay %+v", second)
	}
	if n := len(readAll(t, a, "orders", nil)); n != 5 {
		t.Fatalf("orders holds %d records after the second replay, want 5", n)
	}
}

func TestReplayCountGuardStopsLoop(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deadLetter(t, pub, "orders", 2)
	a := newAdmin(t, c)
	// Replay, fail again, replay... until the guard refuses the records.
	var rounds []dlq.ReplayStats
	for range 6 {
		before := c.EndOffsets(t, "orders")
		s, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", MaxReplays: 2})
		if err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, s)
		if s.Replayed == 0 {
			break
		}
		redeadLetter(t, a, pub, "orders", before)
	}
	if len(rounds) != 3 || rounds[0].Replayed != 2 || rounds[1].Replayed != 2 || rounds[2].Refused != 2 {
		t.Fatalf("rounds %+v, want two replays of 2 records and then 2 refused", rounds)
	}
	if n := len(readAll(t, a, "orders", nil)); n != 4 {
		t.Fatalf("orders holds %d records, want 4", n)
	}
	// --force lets them through once more, under a fresh group.
	still, _ := dlq.ParseErrorPattern("still bad")
	refused := &dlq.Filter{Error: still, Offsets: &dlq.OffsetRange{From: 1, To: 1}}
	forced, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Force: true, Reset: true, Group: "forced", Filter: refused})
	if err != nil {
		t.Fatal(err)
	}
	if forced.Replayed != 2 {
		t.Fatalf("forced %+v", forced)
	}
	got := readAll(t, a, "orders", nil)
	if h := got[len(got)-1].Record.Headers; string(h[len(h)-1].Value) != "3" {
		t.Fatalf("forced replay count %v, want 3", h)
	}
}

func TestReplayErrors(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1), kafkatest.Topic("bare", 1))
	c.Produce(t, &kgo.Record{Topic: "bare", Value: []byte("no provenance")})
	a := newAdmin(t, c)
	tests := []struct {
		name string
		give dlq.ReplayConfig
		want error
	}{
		{"unknown topic", dlq.ReplayConfig{Topic: "nope.dlq"}, dlq.ErrUnknownTopic},
		{"unknown target", dlq.ReplayConfig{Topic: "orders.dlq", To: "nope"}, dlq.ErrUnknownTopic},
		{"self target", dlq.ReplayConfig{Topic: "orders.dlq", To: "orders.dlq"}, sluice.ErrConfig},
		{"negative max", dlq.ReplayConfig{Topic: "orders.dlq", MaxReplays: -1}, sluice.ErrConfig},
		{"bad filter", dlq.ReplayConfig{Topic: "orders.dlq", Filter: &dlq.Filter{Classes: []string{"oops"}}}, dlq.ErrBadFilter},
		{"no provenance, no --to", dlq.ReplayConfig{Topic: "bare"}, dlq.ErrNoTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Replay(ctxT(t), tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	s, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "bare", To: "orders"})
	if err != nil || s.Replayed != 1 {
		t.Fatalf("replay with --to: %+v, %v", s, err)
	}
}

func TestAdminUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dlq.NewAdmin(ctx, dlq.Conn{Connection: sluice.Connection{Brokers: []string{"127.0.0.1:1"}}, Timeout: time.Second})
	var ue *dlq.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, dlq.ErrUnreachable) || ue.Brokers[0] != "127.0.0.1:1" {
		t.Fatalf("err = %v, want UnreachableError naming 127.0.0.1:1", err)
	}
}

// cancelAfter is a Waiter that cancels the replay's context when asked
// for its n+1st record.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Wait(ctx context.Context) error {
	if c.n == 0 {
		c.cancel()
		return ctx.Err()
	}
	c.n--
	return nil
}

func TestReplayInterruptedThenResumed(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deadLetter(t, pub, "orders", 20)
	a := newAdmin(t, c)

	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	first, err := a.Replay(ctx, dlq.ReplayConfig{Topic: "orders.dlq", Limiter: &cancelAfter{n: 7, cancel: cancel}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if first.Replayed != 7 {
		t.Fatalf("interrupted run replayed %d, want 7", first.Replayed)
	}
	second, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Replayed != 13 || second.Total != 13 {
		t.Fatalf("resumed run %+v, want the 13 left", second)
	}
	// Every dead letter was replayed exactly once.
	seen := map[string]int{}
	for _, l := range readAll(t, a, "orders", nil) {
		seen[string(l.Record.Key)]++
	}
	for i := range 20 {
		if k := fmt.Sprint("k", i); seen[k] != 1 {
			t.Errorf("%s replayed %d times", k, seen[k])
		}
	}
}
