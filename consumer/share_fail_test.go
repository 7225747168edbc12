package consumer_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// shareCounts counts what the pipeline and the consumer report of a share
// group's records: outcomes by name, dead letters by class, and
// acknowledgements by kind.
type shareCounts struct {
	mu       sync.Mutex
	outcomes map[string]int
	dead     map[string]int
	acks     map[string]int
	fetched  map[pipeline.TopicPartition]int
}

var (
	_ pipeline.HookHandled    = (*shareCounts)(nil)
	_ pipeline.HookDeadLetter = (*shareCounts)(nil)
	_ consumer.HookShareAcked = (*shareCounts)(nil)
	_ consumer.HookFetched    = (*shareCounts)(nil)
)

func newShareCounts() *shareCounts {
	return &shareCounts{outcomes: map[string]int{}, dead: map[string]int{}, acks: map[string]int{}, fetched: map[pipeline.TopicPartition]int{}}
}

func (s *shareCounts) OnHandled(_ string, o pipeline.Outcome, records int, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outcomes[o.String()] += records
}

func (s *shareCounts) OnDeadLetter(_, class string, records int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[class] += records
}

func (s *shareCounts) OnShareAcked(_ pipeline.TopicPartition, kind string, records int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks[kind] += records
}

func (s *shareCounts) OnFetched(tp pipeline.TopicPartition, records int, _ int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched[tp] += records
}

func (s *shareCounts) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("outcomes %v, dead letters %v, acks %v", s.outcomes, s.dead, s.acks)
}

func (s *shareCounts) ack(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks[kind]
}

// attemptLog records the delivery count of each call for one record.
type attemptLog struct {
	mu    sync.Mutex
	calls []int32 // Deliveries at each call
}

func (a *attemptLog) add(d int32) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, d)
	return len(a.calls)
}

func (a *attemptLog) get() []int32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int32(nil), a.calls...)
}

// TestShareTransientFailureReleasedAfterSinkAttempts: a plain sink that
// fails transiently (a plain error, which the pipeline retries in place
// without end by default) for one record 6 times: the record's first
// delivery makes the default ShareSinkAttempts (5) attempts, and is
// released rather than retried further; its second delivery fails once
// more and then succeeds, and is accepted. The release is counted as
// released, not as a dead letter.
func TestShareTransientFailureReleasedAfterSinkAttempts(t *testing.T) {
	const topic, n, failures = "transient", 20, 6
	kc := shareCluster(t, topic, 1)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(5))
	counts := newShareCounts()
	dlq := &memDLQ{}
	var log attemptLog
	p := sharePipeline(t, topic, dlq, func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 4 && log.add(r.Deliveries) <= failures {
			return errors.New("downstream hiccup")
		}
		return nil
	}, pipeline.Hooks(counts))
	_, stop := runConsumer(t, shareOpts(kc, "transient", p, consumer.Hooks(counts))...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return counts.ack(consumer.ShareAccept) == n }, "not all accepted: %v", counts)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	calls := log.get()
	want := []int32{1, 1, 1, 1, 1, 2, 2}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("the failing record's calls were at deliveries %v, want %v (5 attempts, a release, then 2 attempts)", calls, want)
	}
	if len(dlq.all()) != 0 {
		t.Fatalf("dead letters %v, want none", dlq.all())
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if counts.acks[consumer.ShareRelease] != 1 || counts.acks[consumer.ShareReject] != 0 || counts.acks[consumer.ShareAccept] != n {
		t.Fatalf("acks %v, want %d accepts and 1 release", counts.acks, n)
	}
	if counts.outcomes["released"] != 1 || counts.outcomes["dead_lettered"] != 0 || counts.outcomes["ok"] != n || len(counts.dead) != 0 {
		t.Fatalf("outcomes %v, dead letters %v; want %d ok, 1 released, none dead-lettered", counts.outcomes, counts.dead, n)
	}
}

// TestShareAlwaysFailingReachesDeliveryLimit: a plain sink that always
// fails transiently for one record, with ShareSinkAttempts(2) and a
// delivery limit of 2: two attempts at delivery 1, a release, two attempts
// at delivery 2, and a dead letter of class ClassDeliveryLimit; the record
// is rejected, counted once as released and once as dead-lettered (as
// delivery-limit in the pipeline's hooks too).
func TestShareAlwaysFailingReachesDeliveryLimit(t *testing.T) {
	const topic, n = "always", 10
	kc := shareCluster(t, topic, 1)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(5))
	counts := newShareCounts()
	dlq := &memDLQ{}
	var log attemptLog
	p := sharePipeline(t, topic, dlq, func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 2 {
			log.add(r.Deliveries)
			return errors.New("downstream refuses this one")
		}
		return nil
	}, pipeline.Hooks(counts))
	_, stop := runConsumer(t, shareOpts(kc, "always", p, consumer.Hooks(counts), consumer.ShareDeliveryLimit(2), consumer.ShareSinkAttempts(2))...)
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		return counts.ack(consumer.ShareReject) == 1 && counts.ack(consumer.ShareAccept) == n-1
	}, "not all acknowledged: %v", counts)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if calls, want := log.get(), []int32{1, 1, 2, 2}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("the failing record's calls were at deliveries %v, want %v", calls, want)
	}
	dls := dlq.all()
	if len(dls) != 1 || dls[0].Class != pipeline.ClassDeliveryLimit || dls[0].Record.Deliveries != 2 || dls[0].Attempts != 2 {
		t.Fatalf("dead letters %v, want one of class %s at delivery 2 after 2 attempts", dls, pipeline.ClassDeliveryLimit)
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if counts.acks[consumer.ShareRelease] != 1 {
		t.Fatalf("acks %v, want 1 release", counts.acks)
	}
	if counts.outcomes["released"] != 1 || counts.outcomes["dead_lettered"] != 1 || counts.dead[pipeline.ClassDeliveryLimit] != 1 {
		t.Fatalf("outcomes %v, dead letters %v; want 1 released, 1 dead-lettered", counts.outcomes, counts.dead)
	}
}

// TestShareStatus: while a batch is being handled, Status reports its
// partitions as Assigned and its unacknowledged records as Unsettled;
// with no acknowledgement for StallAfter they are Stalled; once handled,
// nothing is unsettled; after Run, nothing is reported.
func TestShareStatus(t *testing.T) {
	const topic, n = "status", 12
	kc := shareCluster(t, topic, 2)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(6))
	counts := newShareCounts()
	hold := make(chan struct{})
	started := make(chan struct{}, n)
	p := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
		started <- struct{}{}
		select {
		case <-hold:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, pipeline.Hooks(counts))
	c, stop := runConsumer(t, shareOpts(kc, "status", p, consumer.Hooks(counts), consumer.StallAfter(200*time.Millisecond))...)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("no record arrived")
	}
	// The batch is held: no acknowledgement, no further poll.
	counts.mu.Lock()
	var fetched int
	var tps []pipeline.TopicPartition
	for tp, k := range counts.fetched {
		fetched += k
		tps = append(tps, tp)
	}
	counts.mu.Unlock()
	want := fmt.Sprint(sortedTPs(tps))
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		st := c.Status()
		return st.Unsettled == int64(fetched) && st.Buffered == int64(fetched) && fmt.Sprint(st.Assigned) == want && fmt.Sprint(st.Stalled) == want
	}, "status %+v, want %d unsettled in %s, stalled", kafkatest.Lazy(func() any { return c.Status() }), fetched, want)
	close(hold)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return counts.ack(consumer.ShareAccept) == n }, "not all accepted: %v", counts)
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		st := c.Status()
		return st.Unsettled == 0 && len(st.Stalled) == 0
	}, "status %+v after the batches, want nothing unsettled", kafkatest.Lazy(func() any { return c.Status() }))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); len(st.Assigned) != 0 || st.Unsettled != 0 {
		t.Fatalf("status %+v after Run, want nothing", st)
	}
}

func sortedTPs(tps []pipeline.TopicPartition) []pipeline.TopicPartition {
	out := slices.Clone(tps)
	slices.SortFunc(out, func(a, b pipeline.TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}
