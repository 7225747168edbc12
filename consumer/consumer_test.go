package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// settledSet follows which offsets a handler settled and checks every commit
// against it: a commit may never pass a record that was not settled.
type settledSet struct {
	mu         sync.Mutex
	settled    map[pipeline.TopicPartition]map[int64]bool
	prefix     map[pipeline.TopicPartition]int64 // every offset below is settled
	violations []string
	commits    int
}

func newSettledSet() *settledSet {
	return &settledSet{settled: map[pipeline.TopicPartition]map[int64]bool{}, prefix: map[pipeline.TopicPartition]int64{}}
}

// settle notes r as settled; call it before r.Settle().
func (s *settledSet) settle(r *pipeline.Record) {
	tp := pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settled[tp] == nil {
		s.settled[tp] = map[int64]bool{}
	}
	s.settled[tp][r.Offset] = true
	for s.settled[tp][s.prefix[tp]] {
		delete(s.settled[tp], s.prefix[tp])
		s.prefix[tp]++
	}
}

func (s *settledSet) OnCommitted(tp pipeline.TopicPartition, offset int64, err error) {
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	if offset > s.prefix[tp] {
		s.violations = append(s.violations, fmt.Sprintf("%s committed %d with %d unsettled", tp, offset, s.prefix[tp]))
	}
}

var _ consumer.HookCommitted = (*settledSet)(nil)

// TestOutOfOrderCompletionNeverCommitsPastUnsettled is a property test over
// many seeds: records complete in random order (random worker counts and
// handling times); every commit must be at or below the lowest unsettled
// offset, and once everything settled the commit must equal the end offset.
func TestOutOfOrderCompletionNeverCommitsPastUnsettled(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("ooo", 4))
	kc.ProduceN(t, "ooo", 400, kafkatest.KeyedValue(50))
	seeds := 20
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 42))
		var rngMu sync.Mutex
		delay := func() time.Duration {
			rngMu.Lock()
			defer rngMu.Unlock()
			if rng.IntN(4) == 0 {
				return 0
			}
			return time.Duration(rng.IntN(800)) * time.Microsecond
		}
		set := newSettledSet()
		h := &workHandler{workers: 1 + rng.IntN(8), fn: func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(delay()) // the workload: uneven handling times
			set.settle(r)
			return nil
		}}
		group := fmt.Sprintf("ooo-%d", seed)
		opts := append(baseOpts(kc, group, h, "ooo"), consumer.Hooks(set),
			consumer.CommitInterval(time.Duration(1+rng.IntN(20))*time.Millisecond))
		_, stop := runConsumer(t, opts...)
		kc.WaitCommittedEnd(t, group, "ooo", 20*time.Second)
		if err := stop(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		set.mu.Lock()
		if len(set.violations) > 0 {
			t.Fatalf("seed %d: %d commits passed unsettled records, first: %s", seed, len(set.violations), set.violations[0])
		}
		if set.commits == 0 {
			t.Fatalf("seed %d: no commits observed", seed)
		}
		set.mu.Unlock()
	}
}

// TestMembersJoinAndLeaveUnderLoad runs three members that join and leave,
// gracefully, while records are produced and a handler sleeps a few ms per
// record: nothing is lost and nothing is handled twice.
func TestMembersJoinAndLeaveUnderLoad(t *testing.T) {
	const (
		topic = "churn"
		total = 3000
	)
	kc := kafkatest.New(t, kafkatest.Topic(topic, 6))
	l := newLedger()
	member := func(name string) func() error {
		h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(time.Duration(1+r.Offset%3) * time.Millisecond) // the workload
			l.add(r)
			return nil
		}}
		_, stop := runConsumer(t, append(baseOpts(kc, "churn", h, topic), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: name}))...)
		return stop
	}

	// Produce in the background, paced, so that membership changes happen
	// under load.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		cl := kc.Client(t, kgo.ProducerLinger(0))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i += 25 {
			<-tick.C
			var recs []*kgo.Record
			for j := i; j < i+25; j++ {
				recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", j%97), Value: fmt.Appendf(nil, "v%d", j)})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()

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
	ends := kc.WaitCommittedEnd(t, "churn", topic, 30*time.Second)
	for _, stop := range []func() error{stopC, stopA2} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	lost, dups := l.check(ends, topic)
	if lost != 0 || dups != 0 {
		t.Fatalf("graceful cooperative join/leave: lost %d, duplicates %d (want 0 and 0)", lost, dups)
	}
}

// TestShutdownMidStreamFinishesInFlightAndResumes stops a consumer halfway:
// records already started finish and are committed, and a new consumer of
// the group resumes exactly there.
func TestShutdownMidStreamFinishesInFlightAndResumes(t *testing.T) {
	const topic = "shutdown"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 3))
	kc.ProduceN(t, topic, 900, kafkatest.KeyedValue(30))
	l := newLedger()
	var started, finished atomic.Int64
	h := &workHandler{workers: 3, fn: func(ctx context.Context, r *pipeline.Record) error {
		started.Add(1)
		defer finished.Add(1)
		time.Sleep(2 * time.Millisecond) // the workload; it does not watch ctx
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, baseOpts(kc, "sd", h, topic)...)
	l.waitTotal(t, 200, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s, f := started.Load(), finished.Load(); s != f {
		t.Fatalf("after shutdown: %d records started, %d finished", s, f)
	}
	// What was handled is exactly what was committed: a contiguous prefix.
	committed := kc.Committed(t, "sd", topic)
	l.mu.Lock()
	for p, offs := range l.handled {
		for o := range offs {
			if o >= committed[p.Partition] {
				t.Errorf("%s offset %d handled but committed offset is %d", p, o, committed[p.Partition])
			}
		}
		if int64(len(offs)) != committed[p.Partition] {
			t.Errorf("%s: handled %d records, committed offset %d", p, len(offs), committed[p.Partition])
		}
	}
	l.mu.Unlock()

	h2 := &workHandler{workers: 3, fn: h.fn}
	_, stop2 := runConsumer(t, baseOpts(kc, "sd", h2, topic)...)
	ends := kc.WaitCommittedEnd(t, "sd", topic, 30*time.Second)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if lost, dups := l.check(ends, topic); lost != 0 || dups != 0 {
		t.Fatalf("shutdown and restart: lost %d, duplicates %d (want 0 and 0)", lost, dups)
	}
}

// TestStalledHandlerBoundsUnsettledAndPauses stalls the handler with a large
// backlog: unsettled records never exceed the high-water marks, fetching
// pauses, buffered records stay bounded, and releasing the handler drains
// everything.
func TestStalledHandlerBoundsUnsettledAndPauses(t *testing.T) {
	const (
		topic    = "stall"
		parts    = 4
		backlog  = 20_000
		partHigh = 50
		total    = 120
		pBytes   = 64 << 10
	)
	kc := kafkatest.New(t, kafkatest.Topic(topic, parts))
	// A fetch returns at least one whole batch as the producer wrote it,
	// and fetch sizes count compressed bytes: keep batches small and
	// uncompressed so that the bound below is exact.
	recs := make([]*kgo.Record, backlog)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%100), Value: make([]byte, 100)}
	}
	kc.ProduceWith(t, []kgo.Opt{kgo.ProducerBatchMaxBytes(16 << 10), kgo.ProducerBatchCompression(kgo.NoCompression())}, recs...)
	release := make(chan struct{})
	var (
		mu          sync.Mutex
		handed      = map[int32]int{}
		handedTotal int
		worst       string
		c           *consumer.Consumer
		done        atomic.Int64
	)
	h := &workHandler{workers: 64, fn: func(ctx context.Context, r *pipeline.Record) error {
		mu.Lock()
		handed[r.Partition]++
		handedTotal++
		out, _ := c.Unsettled()
		if handed[r.Partition] > partHigh || handedTotal > total || out > total {
			worst = fmt.Sprintf("partition %d has %d, total %d, consumer reports %d", r.Partition, handed[r.Partition], handedTotal, out)
		}
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		handed[r.Partition]--
		handedTotal--
		mu.Unlock()
		done.Add(1)
		return nil
	}}
	opts := append(baseOpts(kc, "stall", h, topic),
		consumer.MaxUnsettled(consumer.Water{Records: partHigh, Bytes: pBytes}, consumer.Water{Records: total, Bytes: 4 * pBytes}))
	var err error
	c, err = consumer.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()

	kafkatest.Eventually(t, 20*time.Second, func() bool {
		return len(c.Assigned()) == parts && len(c.Paused()) == parts
	}, "fetching of all %d partitions never paused (paused: %v)", parts, kafkatest.Lazy(func() any { return c.Paused() }))
	// One fetch per partition may arrive beyond the marks (fetches are
	// capped at the per-partition byte mark, or one batch); no more.
	perFetch := max(pBytes, 16<<10)/(100+3) + 1
	bound := int64(total + parts*perFetch)
	for range 20 { // watch the stall for a while: nothing grows
		handedNow, buffered := c.Unsettled()
		if handedNow > total || buffered > bound {
			t.Fatalf("stalled: %d unsettled (mark %d), %d buffered (bound %d)", handedNow, total, buffered, bound)
		}
		time.Sleep(10 * time.Millisecond) // sampling the steady state, not synchronising
	}
	mu.Lock()
	if worst != "" {
		t.Fatalf("handed more than the high-water marks: %s", worst)
	}
	mu.Unlock()
	if done.Load() != 0 {
		t.Fatalf("%d records finished while the handler was stalled", done.Load())
	}

	close(release)
	kc.WaitCommittedEnd(t, "stall", topic, 60*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := done.Load(); got < backlog {
		t.Fatalf("handled %d of %d records after release", got, backlog)
	}
	if worst != "" {
		t.Fatalf("handed more than the high-water marks: %s", worst)
	}
}

type lostWatch struct {
	settledSet
	lost chan []pipeline.TopicPartition
}

func (w *lostWatch) OnLost(tps []pipeline.TopicPartition) { w.lost <- tps }

// TestLostPartitionsCancelInFlightAndCommitNothing makes the broker forget
// the member: its partition is lost, in-flight contexts are cancelled, and
// nothing of the lost assignment is committed, even a record that settles
// after the loss. The partition comes back and is handled from the last
// commit.
func TestLostPartitionsCancelInFlightAndCommitNothing(t *testing.T) {
	const topic = "lost"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1))
	checkLostCommitsNothing(t, kc, topic, kmsg.Heartbeat, func(h pipeline.Handler, w consumer.Hook) []consumer.Opt {
		return append(baseOpts(kc, topic, h, topic), consumer.Hooks(w),
			consumer.ClientOpts(kgo.HeartbeatInterval(50*time.Millisecond)))
	})
}

// checkLostCommitsNothing is the lost-partition check of both group
// protocols, on topic (one partition) of kc, consumed by group topic with
// the options opts builds from the handler and the watch hook. The broker
// forgets the member by answering UNKNOWN_MEMBER_ID to its next heartbeat
// request (of key heartbeat) while records past the first 10 are in flight.
func checkLostCommitsNothing(t *testing.T, kc *kafkatest.Cluster, topic string, heartbeat kmsg.Key, opts func(pipeline.Handler, consumer.Hook) []consumer.Opt) {
	t.Helper()
	kc.ProduceN(t, topic, 100, kafkatest.KeyedValue(10))
	w := &lostWatch{settledSet: *newSettledSet(), lost: make(chan []pipeline.TopicPartition, 1)}
	var (
		blocking  atomic.Bool
		blocked   = make(chan struct{}, 100)
		cancelled atomic.Int64
	)
	blocking.Store(true)
	l := newLedger()
	h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset >= 10 && blocking.Load() {
			blocked <- struct{}{}
			<-ctx.Done()
			cancelled.Add(1)
			if r.Offset == 10 {
				// A handler that settles after its context was
				// cancelled: the lost assignment must not commit it.
				w.settle(r)
				return nil
			}
			return ctx.Err()
		}
		w.settle(r)
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, opts(h, w)...)

	kafkatest.Eventually(t, 20*time.Second, func() bool { return kc.Committed(t, topic, topic)[0] == 10 },
		"the first 10 records were never committed")
	<-blocked // a record past the settled prefix is in flight
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{heartbeat}, Err: kerr.UnknownMemberID})
	defer fault.Remove()
	select {
	case tps := <-w.lost:
		if len(tps) != 1 || tps[0].Topic != topic {
			t.Fatalf("lost %v, want %s/0", tps, topic)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the partition was never reported lost")
	}
	if cancelled.Load() == 0 {
		t.Fatal("no in-flight record saw its context cancelled")
	}
	if got := kc.Committed(t, topic, topic)[0]; got != 10 {
		t.Fatalf("committed %d after the loss, want 10: the lost assignment committed", got)
	}
	blocking.Store(false)
	kc.WaitCommittedEnd(t, topic, topic, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Offset 10 was settled by the lost assignment after the loss; the
	// prefix check cannot see that as a violation, so check the ledger: it
	// must have been handled again by the new assignment.
	if len(w.violations) > 0 {
		t.Fatalf("commit passed unsettled records: %v", w.violations[0])
	}
	if lost, _ := l.check(map[int32]int64{0: 100}, topic); lost != 0 {
		t.Fatalf("%d records never handled after the partition came back", lost)
	}
}

// TestConfigErrorsNameTheField checks that bad configuration fails in New
// with an error naming the option.
func TestConfigErrorsNameTheField(t *testing.T) {
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	ok := []consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}}), consumer.Group("g"), consumer.Handle(listed(h, "t"))}
	tests := []struct {
		name string
		give []consumer.Opt
		want string
	}{
		{"no connection", []consumer.Opt{consumer.Group("g"), consumer.Handle(listed(h, "t"))}, "Connection"},
		{"empty broker", append(ok[1:], consumer.Connection(sluice.Connection{Brokers: []string{""}})), "Connection"},
		{"no group", []consumer.Opt{ok[0], ok[2]}, "Group"},
		{"handler lists no topics", []consumer.Opt{ok[0], ok[1], consumer.Handle(h)}, "Handle"},
		{"empty topic", []consumer.Opt{ok[0], ok[1], consumer.Handle(listed(h, ""))}, "Handle"},
		{"hook that hooks nothing", append(ok, consumer.Hooks(struct{}{})), "Hooks"},
		{"no handler", ok[:2], "Handle"},
		{"negative drain", append(ok, consumer.DrainTimeout(-time.Second)), "DrainTimeout"},
		{"drain past rebalance", append(ok, consumer.DrainTimeout(time.Minute), consumer.RebalanceTimeout(time.Second)), "DrainTimeout"},
		{"zero commit interval", append(ok, consumer.CommitInterval(0)), "CommitInterval"},
		{"negative budget", append(ok, consumer.RecordBudget(-1)), "RecordBudget"},
		{"bad water", append(ok, consumer.MaxUnsettled(consumer.Water{Records: -1}, consumer.Water{})), "MaxUnsettled"},
		{"total below partition", append(ok, consumer.MaxUnsettled(consumer.Water{Records: 500}, consumer.Water{Records: 100})), "MaxUnsettled"},
		{"low water out of range", append(ok, consumer.LowWater(1.5)), "LowWater"},
		{"handler with build errors", append(ok[:2:2], consumer.Handle(brokenHandler{h})), "Handle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if verr := consumer.Validate(tt.give...); verr == nil {
				t.Fatal("Validate accepted a bad config")
			}
			c, err := consumer.New(tt.give...)
			if err == nil {
				c.Close()
				t.Fatal("New accepted a bad config")
			}
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Package != "consumer" || ce.Option != tt.want || !errors.Is(err, sluice.ErrConfig) {
				t.Fatalf("error %q: want a ConfigError naming %s", err, tt.want)
			}
		})
	}
}

// TestSASLPassesThrough consumes from a broker that requires SASL, with
// SCRAM-SHA-256 and PLAIN.
func TestSASLPassesThrough(t *testing.T) {
	for _, tt := range []struct {
		name string
		give sasl.Mechanism
	}{
		{"scram-sha-256", scram.Auth{User: "scram-user", Pass: "scram-pass"}.AsSha256Mechanism()},
		{"plain", plain.Auth{User: "plain-user", Pass: "plain-pass"}.AsMechanism()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kc := kafkatest.New(t, kafkatest.Topic("sasl", 1), kafkatest.Kfake(
				kfake.EnableSASL(),
				kfake.Superuser("SCRAM-SHA-256", "scram-user", "scram-pass"),
				kfake.Superuser("PLAIN", "plain-user", "plain-pass"),
			))
			kc.ProduceWith(t, []kgo.Opt{kgo.SASL(scramAuth())}, &kgo.Record{Topic: "sasl", Value: []byte("secret")})
			got := make(chan string, 1)
			h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error {
				select {
				case got <- string(r.Value):
				default:
				}
				return nil
			}}
			_, stop := runConsumer(t, append(baseOpts(kc, "sasl", h, "sasl"), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, SASL: tt.give}))...)
			select {
			case v := <-got:
				if v != "secret" {
					t.Fatalf("got %q", v)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("nothing consumed over SASL")
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStatusReportsJoinedAndStalled checks the health snapshot: joined once
// assigned, a partition stalled while a record is stuck past StallAfter, and
// healthy again once it settles.
func TestStatusReportsJoinedAndStalled(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("status", 2))
	kc.ProduceN(t, "status", 20, kafkatest.KeyedValue(2))
	release := make(chan struct{})
	h := &workHandler{workers: 2, fn: func(ctx context.Context, r *pipeline.Record) error {
		if r.Partition == 1 && r.Offset == 3 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	c, stop := runConsumer(t, append(baseOpts(kc, "status", h, "status"), consumer.StallAfter(100*time.Millisecond))...)
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		st := c.Status()
		return st.Running && st.Joined && len(st.Assigned) == 2
	}, "never joined with 2 partitions: %+v", kafkatest.Lazy(func() any { return c.Status() }))
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		st := c.Status()
		return len(st.Stalled) == 1 && st.Stalled[0] == pipeline.TopicPartition{Topic: "status", Partition: 1}
	}, "partition 1 never reported stalled: %+v", kafkatest.Lazy(func() any { return c.Status() }))
	close(release)
	kafkatest.Eventually(t, 20*time.Second, func() bool { return len(c.Status().Stalled) == 0 },
		"still stalled after the record settled: %+v", kafkatest.Lazy(func() any { return c.Status() }))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Running || st.Joined {
		t.Fatalf("after Run returned: %+v", st)
	}
}

// brokenHandler reports a build error, as a pipeline with mistakes does.
type brokenHandler struct{ *workHandler }

func (brokenHandler) Err() error { return errors.New(`stage "ship": nil sink function`) }

// pauseLedger tracks HookPaused: which partitions a metrics gauge would show
// as paused.
type pauseLedger struct {
	mu     sync.Mutex
	paused map[pipeline.TopicPartition]bool
	events int
}

func (l *pauseLedger) OnPaused(tp pipeline.TopicPartition, paused bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused[tp] = paused
	l.events++
}

func (l *pauseLedger) count() (paused, events int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.paused {
		if p {
			paused++
		}
	}
	return paused, l.events
}

// TestRevokedWhilePausedReportsResumed stops a consumer whose partitions are
// paused behind a stalled handler: the hook must hear that they are no
// longer paused, or a paused-partitions gauge would stay up forever.
func TestRevokedWhilePausedReportsResumed(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("pr", 2))
	recs := make([]*kgo.Record, 400)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "pr", Key: fmt.Appendf(nil, "k%d", i%5), Value: []byte("v")}
	}
	kc.ProduceWith(t, []kgo.Opt{kgo.ProducerBatchMaxBytes(1 << 10)}, recs...)
	l := &pauseLedger{paused: map[pipeline.TopicPartition]bool{}}
	h := &workHandler{workers: 2, fn: func(ctx context.Context, r *pipeline.Record) error {
		<-ctx.Done() // stalled until the drain gives up
		return ctx.Err()
	}}
	opts := append(baseOpts(kc, "pr", h, "pr"), consumer.Hooks(l), consumer.DrainTimeout(100*time.Millisecond),
		consumer.MaxUnsettled(consumer.Water{Records: 10}, consumer.Water{Records: 1000}))
	_, stop := runConsumer(t, opts...)
	kafkatest.Eventually(t, 20*time.Second, func() bool { p, _ := l.count(); return p == 2 },
		"both partitions never reported paused")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if p, events := l.count(); p != 0 {
		t.Fatalf("after shutdown %d partitions still reported paused (%d events)", p, events)
	}
}

// TestRecreatedTopicIsConsumed is the regression test for a topic that is
// deleted and recreated: franz-go refuses the new topic ID until the topic
// is purged, and the group's commits for the old log could skip the new
// log's first records. Every record of the recreated topic must be handled.
// (Found by the reliability suite's topic-recreated scenario.)
func TestRecreatedTopicIsConsumed(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("events", 1))
	l := newLedger()
	var mu sync.Mutex
	seen := map[string]bool{}
	h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error {
		mu.Lock()
		seen[string(r.Value)] = true
		mu.Unlock()
		l.add(r)
		return nil
	}}
	// franz-go reports UNKNOWN_TOPIC_ID only after several failed fetches
	// in a row, spaced by its retry backoff and metadata refreshes (about
	// 10s by default): shorten both so that the test is quick.
	_, stop := runConsumer(t, append(baseOpts(kc, "recreate", h, "events"),
		consumer.ClientOpts(kgo.MetadataMinAge(50*time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })))...)
	has := func(vals ...string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, v := range vals {
				if !seen[v] {
					return false
				}
			}
			return true
		}
	}
	kc.Produce(t, &kgo.Record{Topic: "events", Value: []byte("old-0")}, &kgo.Record{Topic: "events", Value: []byte("old-1")},
		&kgo.Record{Topic: "events", Value: []byte("old-2")})
	kafkatest.Eventually(t, 20*time.Second, has("old-0", "old-1", "old-2"), "the first records were not consumed")
	kafkatest.Eventually(t, 20*time.Second, func() bool { return kc.Committed(t, "recreate", "events")[0] == 3 },
		"the first records were not committed")

	adm := kadm.NewClient(kc.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		resp, err := adm.CreateTopic(ctx, 1, 1, nil, "events")
		if err == nil {
			err = resp.Err
		}
		return !errors.Is(err, kerr.TopicAlreadyExists)
	}, "could not recreate the topic")
	// As many records as the old log had, so that the old commit (3) lies
	// inside the new log and would skip all of them.
	kc.Produce(t, &kgo.Record{Topic: "events", Value: []byte("new-0")}, &kgo.Record{Topic: "events", Value: []byte("new-1")},
		&kgo.Record{Topic: "events", Value: []byte("new-2")})
	kafkatest.Eventually(t, 20*time.Second, has("new-0", "new-1", "new-2"), "records of the recreated topic were not consumed")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownDoesNotWaitForAPendingJoin stops a consumer while its
// JoinGroup hangs at the broker (a rebalance that does not complete):
// shutdown drains and commits, then stops without waiting for the join,
// which franz-go would wait out for the rebalance timeout and more.
func TestShutdownDoesNotWaitForAPendingJoin(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("pj", 2), kafkatest.Kfake(kfake.SleepOutOfOrder()))
	kc.ProduceN(t, "pj", 50, kafkatest.KeyedValue(5))
	l := newLedger()
	h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error { l.add(r); return nil }}
	c, stop := runConsumer(t, append(baseOpts(kc, "pj", h, "pj"), consumer.CloseGrace(300*time.Millisecond),
		consumer.ClientOpts(kgo.HeartbeatInterval(50*time.Millisecond)))...)
	l.waitTotal(t, 50, 20*time.Second)
	kc.WaitCommittedEnd(t, "pj", "pj", 20*time.Second)

	// From now on the first member's JoinGroup hangs until the test ends;
	// a second member makes it rejoin.
	first, _ := c.Client().GroupMetadata()
	release := make(chan struct{})
	hanging := make(chan struct{}, 16)
	kc.KeepControl()
	kc.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.JoinGroupRequest).MemberID == first {
			hanging <- struct{}{}
			kc.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	other := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	_, stopOther := runConsumer(t, baseOpts(kc, "pj", other, "pj")...)
	select {
	case <-hanging:
	case <-time.After(20 * time.Second):
		t.Fatal("the first member never rejoined")
	}

	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second): // the join would hang until the test ends
		t.Fatal("shutdown waited for the pending JoinGroup")
	}
	select {
	case <-c.Done():
		t.Fatal("Done closed while leaving the group still waited for the join")
	default:
	}
	close(release)
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the client never finished closing after the join was let through")
	}
	if err := stopOther(); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachableBrokerIsReported runs a consumer against an address where
// no broker listens: it does not join, and Status says why, naming the
// address.
func TestUnreachableBrokerIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	c, stop := runConsumer(t, consumer.Connection(sluice.Connection{Brokers: []string{addr}}), consumer.Group("g"), consumer.Handle(listed(h, "t")),
		consumer.Logger(quietLogger()), consumer.CloseGrace(100*time.Millisecond))
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		st := c.Status()
		return st.ConnectErr != nil && strings.Contains(st.ConnectErr.Error(), addr)
	}, "Status never reported the connection error: %+v", kafkatest.Lazy(func() any { return c.Status() }))
	if c.Status().Joined {
		t.Fatal("reported joined without a broker")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// assignGate holds OnAssigned until released, reporting when it was called.
type assignGate struct {
	called  chan []pipeline.TopicPartition
	release chan struct{}
}

func (g *assignGate) OnAssigned(tps []pipeline.TopicPartition) {
	g.called <- tps
	<-g.release
}

// TestJoinedOnlyOnceAssignedPartitionsStarted checks that Status reports the
// consumer joined only after its assigned partitions are started and the
// assignment hooks have run: a readiness probe that sees "joined" also sees
// the partitions, and the metrics that count them.
func TestJoinedOnlyOnceAssignedPartitionsStarted(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("joined", 2))
	g := &assignGate{called: make(chan []pipeline.TopicPartition, 1), release: make(chan struct{})}
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	c, stop := runConsumer(t, append(baseOpts(kc, "joined", h, "joined"), consumer.Hooks(g))...)
	select {
	case tps := <-g.called:
		if len(tps) != 2 {
			t.Fatalf("assigned %v, want 2 partitions", tps)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("never assigned")
	}
	if st := c.Status(); st.Joined {
		t.Errorf("joined while the assignment hooks still run: %+v", st)
	}
	close(g.release)
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		st := c.Status()
		return st.Joined && len(st.Assigned) == 2
	}, "never joined with 2 partitions: %+v", kafkatest.Lazy(func() any { return c.Status() }))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
