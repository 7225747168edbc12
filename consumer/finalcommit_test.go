package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// revokeWatch signals each revoke and records commit errors.
type revokeWatch struct {
	revoked chan []pipeline.TopicPartition
	mu      sync.Mutex
	errs    map[pipeline.TopicPartition]error
}

func newRevokeWatch() *revokeWatch {
	return &revokeWatch{revoked: make(chan []pipeline.TopicPartition, 8), errs: map[pipeline.TopicPartition]error{}}
}

func (w *revokeWatch) OnRevoked(tps []pipeline.TopicPartition, _ time.Duration, _ bool) {
	select {
	case w.revoked <- tps:
	default:
	}
}

func (w *revokeWatch) OnCommitted(tp pipeline.TopicPartition, _ int64, err error) {
	if err != nil {
		w.mu.Lock()
		w.errs[tp] = err
		w.mu.Unlock()
	}
}

func (w *revokeWatch) commitErrors() map[pipeline.TopicPartition]error {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[pipeline.TopicPartition]error{}
	for tp, err := range w.errs {
		out[tp] = err
	}
	return out
}

// A member stopped while a rebalance waits for a slow member used to give
// its final commit a fixed 10s, which the pending JoinGroup outlasted
// (franz-go holds commits during JoinGroup and SyncGroup): the commit
// failed, Run reported a clean stop, and the next owners handled the
// member's records again. The final commit now lands.
func TestShutdownWhileRebalanceWaitsForSlowMemberCommits(t *testing.T) {
	const topic = "slowrev"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 6))
	slowOpts := func(group string, h *workHandler, extra ...consumer.Opt) []consumer.Opt {
		// kfake, unlike Kafka, expires a member whose JoinGroup waits
		// longer than its session timeout (see internal/kafkatest): give
		// every member a session longer than the slow member's drain.
		return append(append(baseOpts(kc, group, h, topic),
			consumer.SessionTimeout(20*time.Second), consumer.RebalanceTimeout(30*time.Second)), extra...)
	}

	// The slow member: its records never finish, so revoking its
	// partitions takes its whole drain timeout (12s, beyond the old 10s).
	slowH := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	slow, err := consumer.New(slowOpts("slowrev", slowH, consumer.DrainTimeout(12*time.Second), clientID(kc, "slow"))...)
	if err != nil {
		t.Fatal(err)
	}
	slowErr := make(chan error, 1)
	go func() { slowErr <- slow.Run(context.Background()) }()
	t.Cleanup(func() { slow.Stop(); <-slowErr; <-slow.Done() })
	kafkatest.Eventually(t, 20*time.Second, func() bool { return len(slow.Assigned()) == 6 }, "the slow member never got the partitions")

	// The fast member commits only when partitions move or at shutdown.
	l := newLedger()
	fastH := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error { l.add(r); return nil }}
	w := newRevokeWatch()
	fast, err := consumer.New(slowOpts("slowrev", fastH, consumer.CommitInterval(time.Hour), consumer.Hooks(w), clientID(kc, "fast"))...)
	if err != nil {
		t.Fatal(err)
	}
	fastCtx, stopFast := context.WithCancel(context.Background())
	fastErr := make(chan error, 1)
	go func() { fastErr <- fast.Run(fastCtx) }()
	// Leaving the group waits for the pending rebalance past CloseGrace;
	// the client finishes closing once the slow member is gone.
	t.Cleanup(func() { stopFast(); fast.Close(); <-fast.Done() })
	kafkatest.Eventually(t, 20*time.Second, func() bool { return len(fast.Assigned()) == 3 && len(slow.Assigned()) == 3 },
		"the partitions were never shared (fast %v, slow %v)", kafkatest.Lazy(func() any { return fast.Assigned() }), kafkatest.Lazy(func() any { return slow.Assigned() }))

	kc.ProduceN(t, topic, 600, kafkatest.KeyedValue(60))
	ends := kc.EndOffsets(t, topic)
	fastOwned := fast.Assigned()
	want := 0
	for _, tp := range fastOwned {
		want += int(ends[tp.Partition])
	}
	l.waitTotal(t, want, 20*time.Second)

	// A third member joins: both give up a partition. The slow member's
	// revoke drains for 12s, and the group's next JoinGroup waits for it.
	for len(w.revoked) > 0 { // forget revokes of the first rebalance
		<-w.revoked
	}
	fastJoins := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Observe: true, Count: -1, When: func(req kmsg.Request) bool {
		return strings.HasPrefix(req.(*kmsg.JoinGroupRequest).MemberID, "fast-")
	}})
	defer fastJoins.Remove()
	joinH := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error { return nil }}
	_, stopJoin := runConsumer(t, slowOpts("slowrev", joinH, clientID(kc, "join"))...)
	select {
	case <-w.revoked:
	case <-time.After(20 * time.Second):
		t.Fatal("the fast member never gave up a partition to the new member")
	}
	// It rejoined when the new member arrived, and rejoins again after its
	// revoke: stop it while that JoinGroup waits for the slow member.
	kafkatest.Eventually(t, 20*time.Second, func() bool { return fastJoins.Hits() >= 2 }, "the fast member never rejoined after its revoke")
	kept := fast.Assigned()
	stopFast()
	select {
	case err := <-fastErr:
		if err != nil {
			t.Fatalf("the fast member's Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the fast member's Run did not return")
	}
	committed := kc.Committed(t, "slowrev", topic)
	for _, tp := range kept {
		if committed[tp.Partition] != ends[tp.Partition] {
			t.Errorf("%s: committed %d at shutdown, want %d: its next owner handles those records again (commit errors %v)",
				tp, committed[tp.Partition], ends[tp.Partition], w.commitErrors())
		}
	}
	if err := stopJoin(); err != nil {
		t.Fatal(err)
	}
}

// A final commit the broker rejects was logged as a clean stop; now Run
// returns a *CommitError naming the partitions, and HookCommitted sees each
// failure (the metrics count them).
func TestRejectedFinalCommitIsReported(t *testing.T) {
	const topic = "reject"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 2))
	kc.ProduceN(t, topic, 100, kafkatest.KeyedValue(10))
	l := newLedger()
	h := &workHandler{workers: 2, fn: func(ctx context.Context, r *pipeline.Record) error { l.add(r); return nil }}
	w := newRevokeWatch()
	c, err := consumer.New(append(baseOpts(kc, "reject", h, topic), consumer.CommitInterval(time.Hour), consumer.Hooks(w))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	l.waitTotal(t, 100, 20*time.Second)
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.IllegalGeneration, Count: -1})
	defer fault.Remove()
	cancel()
	var runErr error
	select {
	case runErr = <-errc:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return")
	}
	var ce *consumer.CommitError
	if !errors.Is(runErr, consumer.ErrNotCommitted) || !errors.As(runErr, &ce) {
		t.Fatalf("Run: %v, want a *CommitError", runErr)
	}
	if len(ce.Offsets) != 2 || !errors.Is(ce.Err, kerr.IllegalGeneration) {
		t.Fatalf("CommitError offsets %v, err %v: want both partitions and ILLEGAL_GENERATION", ce.Offsets, ce.Err)
	}
	if errs := w.commitErrors(); len(errs) != 2 {
		t.Fatalf("HookCommitted saw failures for %v, want both partitions", errs)
	}
}
