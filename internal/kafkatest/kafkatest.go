// Package kafkatest starts an in-process kfake cluster for tests: the real
// Kafka protocol on a loopback port, with seeded topics and helpers to
// produce, read end offsets and read a group's committed offsets.
//
// # Groups of several members
//
// kfake runs classic consumer groups differently from Kafka in three ways
// that make multi-member tests fail on a busy machine (package
// internal/kfakebehaviour has a test for each): it expires, by session
// timeout, members waiting in JoinGroup while another member drains before
// it rejoins (although nothing can heartbeat during a JoinGroup); it can
// keep a member that died during its first JoinGroup with no session
// timer; and every join restarts the rebalance timer. A test with more
// than one member should take its session and rebalance timeouts from
// GroupTimeouts, which avoids the first; the other two need a process to
// die during a JoinGroup, and only a fixed kfake avoids them.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster is an in-process broker closed when the test ends.
type Cluster struct {
	*kfake.Cluster
	// Addrs are the broker addresses to pass to clients.
	Addrs []string
}

// Opt configures a test cluster.
type Opt func(*[]kfake.Opt)

// Topic seeds a topic with the given number of partitions.
func Topic(name string, partitions int32) Opt {
	return func(o *[]kfake.Opt) { *o = append(*o, kfake.SeedTopics(partitions, name)) }
}

// Kfake passes options straight to kfake.
func Kfake(opts ...kfake.Opt) Opt {
	return func(o *[]kfake.Opt) { *o = append(*o, opts...) }
}

// New starts a single-broker cluster that is closed when t ends. Group
// sessions may be as short as 100ms so that tests of membership run fast.
func New(t testing.TB, opts ...Opt) *Cluster {
	t.Helper()
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
	for _, o := range opts {
		o(&kopts)
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		t.Fatalf("kafkatest: start cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return &Cluster{Cluster: c, Addrs: c.ListenAddrs()}
}

// GroupTimeouts returns the session and rebalance timeouts for a group on
// kfake whose members drain for at most drain before they rejoin a
// rebalance (a revoke's drain, Sluice's DrainTimeout, plus its commit):
// the rebalance timeout exceeds the drain, as Kafka requires, and the
// session timeout exceeds the rebalance timeout, so that kfake does not
// expire the members that wait in JoinGroup for the slowest one. Both are
// at least a second. The price is detection: a member that dies is noticed
// after the session timeout.
func GroupTimeouts(drain time.Duration) (session, rebalance time.Duration) {
	rebalance = max(time.Second, drain+drain/2)
	return rebalance + max(time.Second, rebalance/2), rebalance
}

// Client returns a client of the cluster, closed when t ends.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs...)}, opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: new client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce writes records synchronously and fails t on any error.
func (c *Cluster) Produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	c.ProduceWith(t, nil, recs...)
}

// ProduceWith is Produce with extra producer options, such as
// kgo.ProducerBatchMaxBytes to control how records are batched.
func (c *Cluster) ProduceWith(t testing.TB, opts []kgo.Opt, recs ...*kgo.Record) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	cl := c.Client(t, append([]kgo.Opt{kgo.ProducerLinger(0)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("kafkatest: produce: %v", err)
	}
}

// ProduceN writes n records to topic, record i made by gen(i), and returns
// them. gen may leave Topic empty.
func (c *Cluster) ProduceN(t testing.TB, topic string, n int, gen func(i int) *kgo.Record) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		r := gen(i)
		if r.Topic == "" {
			r.Topic = topic
		}
		recs[i] = r
	}
	c.Produce(t, recs...)
	return recs
}

// KeyedValue makes record i with key "k<i%keys>" and value "v<i>".
func KeyedValue(keys int) func(i int) *kgo.Record {
	return func(i int) *kgo.Record {
		return &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%keys), Value: fmt.Appendf(nil, "v%d", i)}
	}
}

// EndOffsets returns the end offset of every partition of topic.
func (c *Cluster) EndOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(c.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("kafkatest: list end offsets: %v", err)
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("kafkatest: end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// Committed returns the offsets group has committed for topic; partitions
// without a commit are absent.
func (c *Cluster) Committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(c.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}
	}
	if err != nil {
		t.Fatalf("kafkatest: fetch offsets of %s: %v", group, err)
	}
	out := make(map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// WaitCommittedEnd waits until group has committed, for every partition of
// topic, the partition's end offset as it is when called, and returns those
// end offsets. On timeout it fails t, showing both; detail, if given, is
// printed too (for example a Lazy with what the test saw).
func (c *Cluster) WaitCommittedEnd(t testing.TB, group, topic string, timeout time.Duration, detail ...any) map[int32]int64 {
	t.Helper()
	ends := c.EndOffsets(t, topic)
	var got map[int32]int64
	Eventually(t, timeout, func() bool {
		got = c.Committed(t, group, topic)
		for p, e := range ends {
			if got[p] != e {
				return false
			}
		}
		return true
	}, "group %s never committed the end offsets of %s %v: committed %v %v", group, topic, ends,
		Lazy(func() any { return got }), Lazy(func() any { return fmt.Sprint(detail...) }))
	return ends
}

// Eventually calls cond until it reports true or the deadline passes, and
// then fails t with msg. It polls every few milliseconds: use it to wait on
// state the broker owns (committed offsets, group membership), never in
// place of a signal the code under test can send.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest: after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Lazy defers a value to when a failure message is printed: pass
// Lazy(func() any { return x }) to Eventually to show x as it was at the
// deadline rather than when Eventually was called.
type Lazy func() any

func (l Lazy) String() string { return fmt.Sprint(l()) }

// SortedPartitions returns the keys of m in order.
func SortedPartitions[V any](m map[int32]V) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}
