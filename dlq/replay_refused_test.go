package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// deadLetterReplayed writes dead letters from..to-1 of orders (partitions
// 0 and 1 alternating), record i having been replayed count(i) times
// before.
func deadLetterReplayed(t *testing.T, pub *dlq.Publisher, from, to int, count func(i int) int) {
	t.Helper()
	for i := from; i < to; i++ {
		rec := &pipeline.Record{Topic: "orders", Partition: int32(i % 2), Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
		if n := count(i); n > 0 {
			rec.Headers = []pipeline.Header{{Key: dlq.HeaderReplayCount, Value: []byte(strconv.Itoa(n))}}
		}
		if err := pub.DeadLetter(ctxT(t), pipeline.DeadLetter{Record: rec, Stage: "sink", Err: errors.New("bad"), Class: pipeline.ClassPermanent}); err != nil {
			t.Fatal(err)
		}
	}
}

// replayedKeys counts the records of orders by key.
func replayedKeys(t *testing.T, a *dlq.Admin) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, l := range readAll(t, a, "orders", nil) {
		out[string(l.Record.Key)]++
	}
	return out
}

// TestReplayRefusedWaitForForce: records over --max-replays are refused,
// the group remembers them, a run without Force leaves them waiting, and a
// run with Force replays exactly them (and what is new), once.
func TestReplayRefusedWaitForForce(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	often := func(i int) int { // records 0, 3, 6, 9 were replayed 3 times
		if i%3 == 0 {
			return 3
		}
		return 0
	}
	deadLetterReplayed(t, pub, 0, 10, often)
	a := newAdmin(t, c)
	cfg := dlq.ReplayConfig{Topic: "orders.dlq", Group: "replay"}

	first, err := a.Replay(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed != 6 || first.Refused != 4 || !first.RefusedWaiting {
		t.Fatalf("first run %+v, want 6 replayed, 4 refused and waiting", first)
	}
	if got := c.Committed(t, "replay", "orders.dlq"); got[0] != 5 || got[1] != 5 {
		t.Fatalf("committed %v, want past every record examined", got)
	}

	again, err := a.Replay(ctxT(t), cfg)
	if err != nil || again.Examined != 0 || !again.RefusedWaiting {
		t.Fatalf("second run %+v, %v: want nothing examined, refused records still waiting", again, err)
	}

	deadLetterReplayed(t, pub, 10, 12, func(int) int { return 0 })
	cfg.Force = true
	forced, err := a.Replay(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if forced.Replayed != 6 || forced.Forced != 4 || forced.RefusedWaiting {
		t.Fatalf("forced run %+v, want the 4 refused and the 2 new replayed, nothing waiting", forced)
	}
	keys := replayedKeys(t, a)
	for i := range 12 {
		if k := fmt.Sprint("k", i); keys[k] != 1 {
			t.Errorf("%s replayed %d times, want once", k, keys[k])
		}
	}
	last, err := a.Replay(ctxT(t), cfg)
	if err != nil || last.Examined != 0 || last.Replayed != 0 || last.RefusedWaiting {
		t.Fatalf("run after the forced one %+v, %v: want nothing to do", last, err)
	}
}

// TestReplayForcedRunInterrupted: a forced run stopped half-way keeps the
// refused records it did not reach waiting, and the next forced run
// replays those only.
func TestReplayForcedRunInterrupted(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deadLetterReplayed(t, pub, 0, 20, func(i int) int { return 5 * (i % 2) }) // the odd ones, in partition 1, are refused
	a := newAdmin(t, c)
	cfg := dlq.ReplayConfig{Topic: "orders.dlq", Group: "replay"}
	if s, err := a.Replay(ctxT(t), cfg); err != nil || s.Refused != 10 || s.Replayed != 10 {
		t.Fatalf("first run %+v, %v", s, err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	cfg.Force, cfg.Limiter = true, &cancelAfter{n: 4, cancel: cancel}
	s, err := a.Replay(ctx, cfg)
	if !errors.Is(err, context.Canceled) || s.Forced != 4 || !s.RefusedWaiting {
		t.Fatalf("interrupted forced run %+v, %v: want 4 forced, the rest waiting", s, err)
	}
	cfg.Limiter = nil
	s, err = a.Replay(ctxT(t), cfg)
	if err != nil || s.Forced != 6 || s.Replayed != 6 || s.RefusedWaiting {
		t.Fatalf("second forced run %+v, %v: want the 6 left", s, err)
	}
	keys := replayedKeys(t, a)
	for i := range 20 {
		if k := fmt.Sprint("k", i); keys[k] != 1 {
			t.Errorf("%s replayed %d times, want once", k, keys[k])
		}
	}
}

// TestReplayRefusesForeignGroup: a --group whose commits carry metadata no
// replay wrote is refused rather than reinterpreted.
func TestReplayRefusesForeignGroup(t *testing.T) {
	c, a := replayFixture(t)
	os := make(kadm.Offsets)
	os.Add(kadm.Offset{Topic: "orders.dlq", Partition: 0, At: 3, LeaderEpoch: -1, Metadata: "some consumer's note"})
	if err := kadm.NewClient(c.Client(t)).CommitAllOffsets(ctxT(t), "billing", os); err != nil {
		t.Fatal(err)
	}
	_, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Group: "billing"})
	if err == nil || !strings.Contains(err.Error(), `unknown commit metadata "some consumer's note": is the group a replay's?`) {
		t.Fatalf("err = %v", err)
	}
}
