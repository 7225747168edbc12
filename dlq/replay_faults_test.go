package dlq_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
)

// replayFixture is a cluster with 20 dead letters of orders (one
// partition each) and an Admin on it.
func replayFixture(t *testing.T, opts ...kafkatest.Opt) (*kafkatest.Cluster, *dlq.Admin) {
	t.Helper()
	c := kafkatest.New(t, append([]kafkatest.Opt{kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1)}, opts...)...)
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	deadLetter(t, pub, "orders", 20)
	pub.Close()
	return c, newAdmin(t, c)
}

// afterProduces makes the cluster's Produce requests after the first n go
// to fn (with KeepControl); the earlier ones are handled as usual.
func afterProduces(c *kafkatest.Cluster, n int, fn func() (kmsg.Response, error)) {
	var mu sync.Mutex
	seen := 0
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		seen++
		handle := seen > n
		mu.Unlock()
		if !handle {
			return nil, nil, false
		}
		resp, err := fn()
		return resp, err, true
	})
}

// replayPaced replays orders.dlq at 100 records a second, so that the
// records go out in many Produce requests, with a short produce timeout.
func replayPaced(t *testing.T, a *dlq.Admin) (dlq.ReplayStats, error) {
	t.Helper()
	return a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Group: "replay", Limiter: rate.NewLimiter(100, 1), ProduceTimeout: time.Second})
}

// checkReported checks that what the stats say was replayed and saved is
// what a reader of the target topic and of the group's committed offsets
// sees.
func checkReported(t *testing.T, s dlq.ReplayStats, c *kafkatest.Cluster) {
	t.Helper()
	written := c.EndOffsets(t, "orders")[0]
	committed := c.Committed(t, "replay", "orders.dlq")
	t.Logf("stats %+v; orders holds %d, group committed %v", s, written, committed)
	if s.Replayed != written || s.ByTarget["orders"] != written {
		t.Errorf("replayed %d (to orders %d), but orders holds %d records", s.Replayed, s.ByTarget["orders"], written)
	}
	if s.Saved[0] != committed[0] || len(s.Saved) != len(committed) {
		t.Errorf("saved %v, but the group committed %v", s.Saved, committed)
	}
	if s.Replayed+s.NotAcknowledged > s.Examined || s.Examined > 20 {
		t.Errorf("replayed %d + not acknowledged %d > examined %d", s.Replayed, s.NotAcknowledged, s.Examined)
	}
	if s.Replayed == 0 || s.NotAcknowledged == 0 {
		t.Errorf("want some records acknowledged and some not: %+v", s)
	}
}

// TestReplayBrokerRejectsWrites: after three Produce requests the broker
// refuses every write. Only acknowledged records count, the progress stops
// before the first refused one, and the error says why.
func TestReplayBrokerRejectsWrites(t *testing.T) {
	c, a := replayFixture(t)
	var mu sync.Mutex
	seen := map[kmsg.Request]bool{}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "orders", Err: kerr.InvalidRecord, Count: -1, When: func(req kmsg.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		seen[req] = true
		return len(seen) > 3
	}})
	s, err := replayPaced(t, a)
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("err = %v, want INVALID_RECORD", err)
	}
	checkReported(t, s, c)
	if s.SaveErr != nil || s.Saved[0] != s.Replayed {
		t.Errorf("saved %v (%v), want the %d acknowledged records saved", s.Saved, s.SaveErr, s.Replayed)
	}
}

// TestReplayBrokerNeverAnswers: after three Produce requests the broker
// reads writes and never answers. Replay stops after ProduceTimeout with a
// StallError, and saves what was acknowledged.
func TestReplayBrokerNeverAnswers(t *testing.T) {
	c, a := replayFixture(t)
	afterProduces(c, 3, func() (kmsg.Response, error) { return nil, nil })
	start := time.Now()
	s, err := replayPaced(t, a)
	var se *dlq.StallError
	if !errors.As(err, &se) || !errors.Is(err, dlq.ErrStalled) {
		t.Fatalf("err = %v, want a StallError", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("replay took %v to give up with a 1s produce timeout", d)
	}
	checkReported(t, s, c)
	if s.SaveErr != nil || s.Saved[0] != s.Replayed {
		t.Errorf("saved %v (%v), want the %d acknowledged records saved", s.Saved, s.SaveErr, s.Replayed)
	}
}

// TestReplayBrokerDiesMidReplay: the broker dies (its data kept) while
// records are in flight. Replay stops after ProduceTimeout; what it says
// it replayed and saved is what the restarted broker holds.
func TestReplayBrokerDiesMidReplay(t *testing.T) {
	dir := t.TempDir()
	c, a := replayFixture(t, kafkatest.Kfake(kfake.DataDir(dir)))
	died := make(chan struct{})
	var once sync.Once
	afterProduces(c, 3, func() (kmsg.Response, error) {
		once.Do(func() { close(died) })
		return nil, errors.New("broker dying") // closes the connection unanswered
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-died
		c.Close()
	}()
	s, err := replayPaced(t, a)
	<-done
	if !errors.Is(err, dlq.ErrStalled) {
		t.Fatalf("err = %v, want a StallError", err)
	}
	if s.SaveErr == nil {
		t.Errorf("saving the progress on a dead broker worked?")
	}
	if s.Unsaved != s.Replayed-s.Saved[0] {
		t.Errorf("unsaved %d, want the %d replayed beyond the saved %v", s.Unsaved, s.Replayed-s.Saved[0], s.Saved)
	}
	checkReported(t, s, kafkatest.New(t, kafkatest.Kfake(kfake.DataDir(dir))))
}

// TestReplayCommitFailsOnce: a commit of the progress that fails once is
// retried on the way out; when the retry lands, the replay reports success
// and the saved progress.
func TestReplayCommitFailsOnce(t *testing.T) {
	c, a := replayFixture(t)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: "replay", Err: kerr.GroupAuthorizationFailed, Count: 1})
	s, err := a.Replay(ctxT(t), dlq.ReplayConfig{Topic: "orders.dlq", Group: "replay", ProduceTimeout: time.Second})
	if err != nil || s.SaveErr != nil || s.Replayed != 20 || s.Saved[0] != 20 || s.Unsaved != 0 {
		t.Fatalf("%+v, %v: want all 20 replayed and saved", s, err)
	}
	if got := c.Committed(t, "replay", "orders.dlq"); got[0] != 20 {
		t.Fatalf("committed %v", got)
	}
}
