package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// The tests of this file run the consumer's promises under KIP-848
// (consumer.ProtocolConsumer) on kfake, which implements
// ConsumerGroupHeartbeat with the uniform and range assignors and, beyond
// Kafka 4.0-4.2, KIP-1251's assignment epochs: it accepts a commit whose
// member epoch is older than the member's current one as long as the
// partition was assigned at or before it. It therefore never produces the
// STALE_MEMBER_EPOCH refusals a Kafka 4.0-4.2 broker gives commits that
// race with an assignment change; TestKIP848StaleCommit* inject them with a
// kfake fault instead.

// kip848Cluster starts a cluster whose KIP-848 groups expire a silent
// member after 2s and ask for a heartbeat every 100ms (the broker's
// group.consumer.* settings; SessionTimeout does not apply under KIP-848).
// It fails the test at the end if a group member ever sent JoinGroup: the
// members must have spoken KIP-848, not fallen back to the classic
// protocol.
func kip848Cluster(t *testing.T, topic string, partitions int32) *kafkatest.Cluster {
	t.Helper()
	kc := kafkatest.New(t, kafkatest.Topic(topic, partitions), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.consumer.session.timeout.ms":    "2000",
		"group.consumer.heartbeat.interval.ms": "100",
	})))
	joins := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Observe: true, Count: -1})
	heartbeats := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ConsumerGroupHeartbeat}, Observe: true, Count: -1})
	t.Cleanup(func() {
		if n := joins.Hits(); n > 0 {
			t.Errorf("%d JoinGroup requests: a member fell back to the classic protocol", n)
		}
		if heartbeats.Hits() == 0 {
			t.Error("no ConsumerGroupHeartbeat request: the group did not use KIP-848")
		}
	})
	return kc
}

// opts848 are baseOpts with the KIP-848 protocol.
func opts848(kc *kafkatest.Cluster, group string, h pipeline.Handler, topic string, more ...consumer.Opt) []consumer.Opt {
	opts := append(baseOpts(kc, group, h, topic), consumer.GroupProtocol(consumer.ProtocolConsumer))
	return append(opts, more...)
}

// pacedProducer produces total records to topic in the background, 25 at a
// time every 5ms, so that membership changes happen under load.
func pacedProducer(t *testing.T, kc *kafkatest.Cluster, topic string, total int) <-chan struct{} {
	done := make(chan struct{})
	cl := kc.Client(t, kgo.ProducerLinger(0))
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i += 25 {
			<-tick.C
			var recs []*kgo.Record
			for j := i; j < min(i+25, total); j++ {
				recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", j%97), Value: fmt.Appendf(nil, "v%d", j)})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	return done
}

// revokeLog notes every revoke a member reports, and checks commits
// against what was settled.
type revokeLog struct {
	*settledSet
	mu       sync.Mutex
	revokes  int
	timedOut int
}

func (r *revokeLog) OnRevoked(_ []pipeline.TopicPartition, _ time.Duration, timedOut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokes++
	if timedOut {
		r.timedOut++
	}
}

// TestKIP848MembersJoinAndLeaveUnderLoad is TestMembersJoinAndLeaveUnderLoad
// under KIP-848: members join and leave gracefully while records are
// produced; every revoke drains within its timeout and commits before the
// partition moves, so nothing is lost and nothing is handled twice, and no
// commit passes an unsettled record.
func TestKIP848MembersJoinAndLeaveUnderLoad(t *testing.T) {
	const (
		topic = "churn848"
		total = 3000
	)
	kc := kip848Cluster(t, topic, 6)
	l := newLedger()
	rl := &revokeLog{settledSet: newSettledSet()}
	cancelled := atomic.Int64{}
	member := func(name string) func() error {
		h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(time.Duration(1+r.Offset%3) * time.Millisecond) // the workload
			if ctx.Err() != nil {
				cancelled.Add(1)
				return ctx.Err()
			}
			l.add(r)
			rl.settle(r)
			return nil
		}}
		_, stop := runConsumer(t, opts848(kc, topic, h, topic, clientID(kc, name), consumer.Hooks(rl))...)
		return stop
	}
	produced := pacedProducer(t, kc, topic, total)

	stopA := member("a")
	l.waitTotal(t, 400, 30*time.Second)
	stopB := member("b")
	l.waitTotal(t, 1000, 30*time.Second)
	stopC := member("c")
	l.waitTotal(t, 1600, 30*time.Second)
	if err := stopA(); err != nil {
		t.Fatalf("member a: %v", err)
	}
	l.waitTotal(t, 2200, 30*time.Second)
	if err := stopB(); err != nil {
		t.Fatalf("member b: %v", err)
	}
	stopA2 := member("a2")
	<-produced
	l.waitTotal(t, total, 60*time.Second)
	ends := kc.WaitCommittedEnd(t, topic, topic, 30*time.Second)
	for _, stop := range []func() error{stopC, stopA2} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	lost, dups := l.check(ends, topic)
	if lost != 0 || dups != 0 {
		t.Fatalf("graceful KIP-848 join/leave: lost %d, duplicates %d (want 0 and 0)", lost, dups)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.revokes == 0 {
		t.Fatal("no revoke happened: the test did not move partitions")
	}
	if rl.timedOut > 0 || cancelled.Load() > 0 {
		t.Fatalf("%d revokes timed out, %d records cancelled: a graceful move must drain", rl.timedOut, cancelled.Load())
	}
	rl.settledSet.mu.Lock()
	defer rl.settledSet.mu.Unlock()
	if len(rl.violations) > 0 {
		t.Fatalf("a commit passed unsettled records: %s", rl.violations[0])
	}
}

// TestKIP848DrainOnRevokeFinishesInFlightRecords holds records in flight
// on the first member when a second one joins: the revoke waits for them
// (they finish, nobody cancels them), commits after them, and the new
// owner starts exactly at that commit.
func TestKIP848DrainOnRevokeFinishesInFlightRecords(t *testing.T) {
	const topic = "drain848"
	kc := kip848Cluster(t, topic, 2)
	kc.ProduceN(t, topic, 400, kafkatest.KeyedValue(20))
	var (
		mu      sync.Mutex
		handled = map[string]map[int32][]int64{} // member -> partition -> offsets
		slow    atomic.Bool
		inSlow  = make(chan struct{}, 64)
	)
	slow.Store(true)
	rl := &revokeLog{settledSet: newSettledSet()}
	var cancelled atomic.Int64
	member := func(name string) func() error {
		h := &workHandler{workers: 2, fn: func(ctx context.Context, r *pipeline.Record) error {
			if name == "a" && slow.Load() && r.Offset >= 20 {
				select {
				case inSlow <- struct{}{}:
				default:
				}
				time.Sleep(20 * time.Millisecond) // the workload: slow records in flight during the revoke
			}
			if ctx.Err() != nil {
				cancelled.Add(1)
				return ctx.Err()
			}
			mu.Lock()
			if handled[name] == nil {
				handled[name] = map[int32][]int64{}
			}
			handled[name][r.Partition] = append(handled[name][r.Partition], r.Offset)
			mu.Unlock()
			rl.settle(r)
			return nil
		}}
		opts := opts848(kc, topic, h, topic, clientID(kc, name), consumer.Hooks(rl),
			consumer.MaxUnsettled(consumer.Water{Records: 8}, consumer.Water{Records: 16}))
		_, stop := runConsumer(t, opts...)
		return stop
	}
	stopA := member("a")
	<-inSlow // a has slow records in flight
	stopB := member("b")
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled["b"]) > 0
	}, "the second member never handled a record")
	slow.Store(false)
	kc.WaitCommittedEnd(t, topic, topic, 30*time.Second)
	for _, stop := range []func() error{stopA, stopB} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if cancelled.Load() > 0 {
		t.Fatalf("%d in-flight records were cancelled: the revoke did not drain", cancelled.Load())
	}
	ends := kc.EndOffsets(t, topic)
	mu.Lock()
	defer mu.Unlock()
	for p, bOffs := range handled["b"] {
		first := bOffs[0]
		for _, o := range bOffs {
			first = min(first, o)
		}
		seen := map[int64]bool{}
		for _, o := range handled["a"][p] {
			seen[o] = true
		}
		for _, o := range bOffs {
			if seen[o] {
				t.Fatalf("partition %d offset %d handled by both members", p, o)
			}
			seen[o] = true
		}
		for o := int64(0); o < ends[p]; o++ {
			if !seen[o] {
				t.Fatalf("partition %d offset %d never handled (b started at %d)", p, o, first)
			}
		}
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.revokes == 0 || rl.timedOut > 0 {
		t.Fatalf("revokes %d, timed out %d: want a revoke that drained in time", rl.revokes, rl.timedOut)
	}
}

// TestKIP848LostPartitionsCommitNothing makes the broker forget the member
// (UNKNOWN_MEMBER_ID on its heartbeat): its partition is lost, in-flight
// contexts are cancelled, nothing of the lost assignment is committed (not
// even a record that settles after the loss), and the member rejoins and
// handles the partition from the last commit.
func TestKIP848LostPartitionsCommitNothing(t *testing.T) {
	const topic = "lost848"
	kc := kip848Cluster(t, topic, 1)
	checkLostCommitsNothing(t, kc, topic, kmsg.ConsumerGroupHeartbeat, func(h pipeline.Handler, w consumer.Hook) []consumer.Opt {
		return opts848(kc, topic, h, topic, consumer.Hooks(w))
	})
}

// staleCommits makes the broker refuse the next n offset commits of group
// with STALE_MEMBER_EPOCH, as a Kafka 4.0-4.2 broker does with a commit
// that races with an assignment change.
func staleCommits(kc *kafkatest.Cluster, group string, n int) *kfake.FaultHandle {
	return kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group, Err: kerr.StaleMemberEpoch, Count: n})
}

// TestKIP848StaleCommitOnRevokeIsCommittedAgain refuses the revoke's final
// commit with STALE_MEMBER_EPOCH (three times: franz-go's own retry gives
// up when its epoch did not move): the consumer commits again with the
// current epoch before it lets the revoke finish, so the partition's next
// owner starts after what was handled and nothing is handled twice.
// Without the retry the next owner would handle again everything since
// the member's last commit, which with a long CommitInterval is
// everything.
func TestKIP848StaleCommitOnRevokeIsCommittedAgain(t *testing.T) {
	const topic = "stale848"
	kc := kip848Cluster(t, topic, 4)
	kc.ProduceN(t, topic, 400, kafkatest.KeyedValue(40))
	l := newLedger()
	commits := &commitLog{}
	member := func(name string) func() error {
		h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
			l.add(r)
			return nil
		}}
		// No periodic commits: the only commits are the final ones.
		_, stop := runConsumer(t, opts848(kc, topic, h, topic, clientID(kc, name),
			consumer.CommitInterval(time.Hour), consumer.Hooks(commits))...)
		return stop
	}
	stopA := member("a")
	l.waitTotal(t, 400, 30*time.Second)
	fault := staleCommits(kc, topic, 3)
	defer fault.Remove()
	stopB := member("b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fault.Wait(ctx, 3); err != nil {
		t.Fatalf("the revoke's commit was not refused three times: %v", err)
	}
	kafkatest.Eventually(t, 30*time.Second, func() bool { return commits.ok() > 0 },
		"the revoke's commit never landed")
	for _, stop := range []func() error{stopB, stopA} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if stale := commits.failedWith(kerr.StaleMemberEpoch); stale == 0 {
		t.Fatal("no commit was refused with STALE_MEMBER_EPOCH: the fault did not reach the consumer")
	}
	ends := kc.EndOffsets(t, topic)
	if _, dups := l.check(ends, topic); dups != 0 {
		t.Fatalf("%d records handled twice after the revoke's commit was refused as stale", dups)
	}
	if got := kc.Committed(t, topic, topic); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("committed %v, want the end offsets %v", got, ends)
	}
}

// TestKIP848StaleCommitAtShutdownIsCommittedAgain refuses the shutdown's
// final commit with STALE_MEMBER_EPOCH: it is committed again before the
// member leaves, and Run reports no error.
func TestKIP848StaleCommitAtShutdownIsCommittedAgain(t *testing.T) {
	const topic = "stale848shut"
	kc := kip848Cluster(t, topic, 2)
	kc.ProduceN(t, topic, 200, kafkatest.KeyedValue(20))
	l := newLedger()
	h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, opts848(kc, topic, h, topic, consumer.CommitInterval(time.Hour))...)
	l.waitTotal(t, 200, 30*time.Second)
	fault := staleCommits(kc, topic, 3)
	defer fault.Remove()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v (want nil: the stale commit must be committed again)", err)
	}
	if fault.Hits() != 3 {
		t.Fatalf("the fault refused %d commits, want 3", fault.Hits())
	}
	if got, ends := kc.Committed(t, topic, topic), kc.EndOffsets(t, topic); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("committed %v, want the end offsets %v", got, ends)
	}
}

// TestKIP848StalePeriodicCommitIsRetriedNextInterval refuses periodic
// commits as stale: the partition is still owned, so the next interval
// commits it and the group catches up.
func TestKIP848StalePeriodicCommitIsRetriedNextInterval(t *testing.T) {
	const topic = "stale848tick"
	kc := kip848Cluster(t, topic, 2)
	fault := staleCommits(kc, topic, 5)
	defer fault.Remove()
	kc.ProduceN(t, topic, 200, kafkatest.KeyedValue(20))
	h := &workHandler{workers: 4, fn: func(context.Context, *pipeline.Record) error { return nil }}
	_, stop := runConsumer(t, opts848(kc, topic, h, topic)...)
	kc.WaitCommittedEnd(t, topic, topic, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fault.Hits() != 5 {
		t.Fatalf("the fault refused %d commits, want 5", fault.Hits())
	}
}

// commitLog counts commit results.
type commitLog struct {
	mu     sync.Mutex
	oks    int
	errors []error
}

func (c *commitLog) OnCommitted(_ pipeline.TopicPartition, _ int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.oks++
	} else {
		c.errors = append(c.errors, err)
	}
}

func (c *commitLog) ok() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.oks
}

func (c *commitLog) failedWith(target error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, err := range c.errors {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// cutDialer dials brokers until kill, which closes every connection it
// made and refuses new ones: for the broker, the member died.
type cutDialer struct {
	mu    sync.Mutex
	dead  bool
	conns []net.Conn
}

func (d *cutDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// TestKIP848KillsAndChurnLoseNothing runs members that join, leave
// gracefully and die (their connections cut, so the broker expires them
// after the 2s session) under load: every record is handled at least once,
// and the group's commits reach the end.
func TestKIP848KillsAndChurnLoseNothing(t *testing.T) {
	const (
		topic = "kill848"
		total = 3000
	)
	kc := kip848Cluster(t, topic, 6)
	l := newLedger()
	type handle struct {
		stop func() error
		d    *cutDialer
	}
	member := func(name string) handle {
		d := &cutDialer{}
		h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(time.Millisecond) // the workload
			l.add(r)
			return nil
		}}
		_, stop := runConsumer(t, opts848(kc, topic, h, topic, clientID(kc, name),
			consumer.RebalanceTimeout(3*time.Second), consumer.DrainTimeout(2*time.Second), consumer.CloseGrace(time.Second),
			consumer.ClientOpts(kgo.Dialer(d.dial), kgo.RequestRetries(2)))...)
		return handle{stop, d}
	}
	produced := pacedProducer(t, kc, topic, total)
	a, b, c := member("a"), member("b"), member("c")
	l.waitTotal(t, 500, 30*time.Second)
	b.d.kill() // dies with its partitions' work since the last commit
	l.waitTotal(t, 1000, 30*time.Second)
	d := member("d")
	l.waitTotal(t, 1500, 30*time.Second)
	if err := a.stop(); err != nil {
		t.Fatalf("member a: %v", err)
	}
	c.d.kill()
	e := member("e")
	<-produced
	l.waitTotal(t, total, 60*time.Second)
	ends := kc.WaitCommittedEnd(t, topic, topic, 60*time.Second)
	for _, m := range []handle{d, e} {
		if err := m.stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []handle{b, c} {
		_ = m.stop() // dead members: their final commits cannot land
	}
	if lost, _ := l.check(ends, topic); lost != 0 {
		t.Fatalf("%d records never handled after two kills and churn under KIP-848", lost)
	}
}

// TestGroupProtocolConfigErrors: an unknown protocol, and KIP-848 with
// modes it does not support, fail in New naming GroupProtocol.
func TestGroupProtocolConfigErrors(t *testing.T) {
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	base := []consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}}), consumer.Handle(listed(h, "t")), consumer.Logger(quietLogger())}
	for name, opts := range map[string][]consumer.Opt{
		"unknown":     {consumer.Group("g"), consumer.GroupProtocol(consumer.Protocol(7))},
		"exactlyOnce": {consumer.Group("g"), consumer.GroupProtocol(consumer.ProtocolConsumer), consumer.ExactlyOnce("tx", nopTxnWriter{})},
		"shareGroup":  {consumer.ShareGroup("g"), consumer.GroupProtocol(consumer.ProtocolConsumer)},
	} {
		_, err := consumer.New(append(base, opts...)...)
		var ce *sluice.ConfigError
		if !errors.As(err, &ce) || ce.Option != "GroupProtocol" {
			t.Errorf("%s: got %v, want a ConfigError naming GroupProtocol", name, err)
		}
	}
	c, err := consumer.New(append(base, consumer.Group("g"), consumer.GroupProtocol(consumer.ProtocolConsumer))...)
	if err != nil {
		t.Fatalf("a plain KIP-848 consumer: %v", err)
	}
	c.Close()
}

type nopTxnWriter struct{}

func (nopTxnWriter) InTransactions(*kgo.Client) error { return nil }
