package kafka_test

import (
	"strings"
	"sync"
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
	"github.com/sluice-go/sluice/sinks/kafka"
)

// commits records a member's commit results.
type commits struct {
	mu      sync.Mutex
	ok      int
	aborted int
	okAt    []time.Time
}

func (c *commits) OnCommitted(_ pipeline.TopicPartition, _ int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.aborted++
		return
	}
	c.ok++
	c.okAt = append(c.okAt, time.Now())
}

func (c *commits) counts() (ok, aborted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok, c.aborted
}

func eosWriter(t *testing.T) *kafka.Writer {
	t.Helper()
	w, err := kafka.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// An aborted transaction (the group coordinator refuses its offsets once)
// discards its outputs and rewinds: a read_committed reader still sees every
// output exactly once.
func TestExactlyOnceAfterAnAbortedTransaction(t *testing.T) {
	const n = 400
	kc := kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3))
	kc.ProduceN(t, "in", n, kafkatest.KeyedValue(20))
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.IllegalGeneration, Count: 2})
	defer fault.Remove()
	w := eosWriter(t)
	cm := &commits{}
	_, stop := member(t, kc, w, consumer.ExactlyOnce("etl-1", w), consumer.Hooks(cm))
	kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, aborted := cm.counts(); aborted == 0 || fault.Hits() == 0 {
		t.Fatalf("no transaction aborted (fault hits %d): the test did not test an abort", fault.Hits())
	}
	got := readCommitted(t, kc, "out", 3)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(got)); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// Members join and leave while the inputs are produced: revokes abort
// transactions, and the outputs are still exactly once.
func TestExactlyOnceAcrossRebalances(t *testing.T) {
	const n = 1500
	kc := kafkatest.New(t, kafkatest.Topic("in", 6), kafkatest.Topic("out", 6))
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < n; i += 100 {
			produceRange(t, kc, i, i+100, 50)
			time.Sleep(20 * time.Millisecond) // pacing the load, not synchronising
		}
	}()
	w1, w2, w3 := eosWriter(t), eosWriter(t), eosWriter(t)
	_, stop1 := member(t, kc, w1, consumer.ExactlyOnce("etl-1", w1), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: "m1"}))
	_, stop2 := member(t, kc, w2, consumer.ExactlyOnce("etl-2", w2), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: "m2"}))
	_, stop3 := member(t, kc, w3, consumer.ExactlyOnce("etl-3", w3), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: "m3"}))
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	<-produced
	kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	for _, stop := range []func() error{stop1, stop3} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	got := readCommitted(t, kc, "out", 6)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(got)); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// A member whose session expired while its heartbeats did not reach the
// broker (a paused process) is a zombie until it notices: it must not
// commit a transaction after another member took its partitions.
func TestFencedMemberCannotCommit(t *testing.T) {
	const n = 300
	kc := kafkatest.New(t, kafkatest.Topic("in", 2), kafkatest.Topic("out", 2))
	kc.ProduceN(t, "in", n/2, kafkatest.KeyedValue(10))
	zw := eosWriter(t)
	zc := &commits{}
	zombie, stopZombie := member(t, kc, zw, consumer.ExactlyOnce("zombie", zw), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: "zombie"}),
		consumer.Hooks(zc), consumer.SessionTimeout(2*time.Second))
	kafkatest.Eventually(t, 20*time.Second, func() bool { ok, _ := zc.counts(); return ok > 0 }, "the first member never committed")

	// From now on the zombie's heartbeats never reach the group, yet are
	// answered: it believes it is a member while the broker expires it.
	var starved sync.Once
	starvedAt := make(chan time.Time, 1)
	kc.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if strings.HasPrefix(req.(*kmsg.HeartbeatRequest).MemberID, "zombie-") {
			starved.Do(func() { starvedAt <- time.Now() })
			resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.Version = req.GetVersion()
			return resp, nil, true
		}
		return nil, nil, false
	})
	<-starvedAt
	nw := eosWriter(t)
	nc := &assigned{all: make(chan time.Time, 1), want: 2}
	_, stopNext := member(t, kc, nw, consumer.ExactlyOnce("next", nw), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, ClientID: "next"}), consumer.Hooks(nc))
	var takenAt time.Time
	select {
	case takenAt = <-nc.all:
	case <-time.After(30 * time.Second):
		t.Fatalf("the new member never got both partitions (zombie owns %v)", zombie.Assigned())
	}
	produceRange(t, kc, n/2, n, 10)
	kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	if err := stopNext(); err != nil {
		t.Fatal(err)
	}
	_ = stopZombie()
	zc.mu.Lock()
	for _, at := range zc.okAt {
		if at.After(takenAt) {
			t.Errorf("the zombie committed a transaction at %v, after the new member took its partitions at %v", at, takenAt)
		}
	}
	zc.mu.Unlock()
	if _, aborted := zc.counts(); aborted == 0 {
		t.Error("the zombie never tried to commit after it was fenced: the test did not test fencing")
	}
	got := readCommitted(t, kc, "out", 2)
	if lost, dups, ex := exactlyOnce(wantOutputs(n), countByValue(got)); lost != 0 || dups != 0 {
		t.Fatalf("%d outputs lost, %d duplicated (%s)", lost, dups, ex)
	}
}

// assigned signals when a member owns want partitions.
type assigned struct {
	mu   sync.Mutex
	n    int
	want int
	all  chan time.Time
}

func (a *assigned) OnAssigned(tps []pipeline.TopicPartition) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n += len(tps)
	if a.n == a.want {
		a.all <- time.Now()
	}
}

func (a *assigned) OnRevoked(tps []pipeline.TopicPartition, _ time.Duration, _ bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n -= len(tps)
}

// produceRange writes values v<from>..v<to-1> to "in", keyed k<i%keys>.
func produceRange(t *testing.T, kc *kafkatest.Cluster, from, to, keys int) {
	t.Helper()
	kc.ProduceN(t, "in", to-from, func(i int) *kgo.Record { return kafkatest.KeyedValue(keys)(from + i) })
}
