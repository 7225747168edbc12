package consumer_test

import (
	"context"
	"fmt"
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

// commitSignal is a HookCommitted that signals every transaction commit
// and keeps the count of aborted ones.
type commitSignal struct {
	committed chan struct{}
	aborted   atomic.Int64
}

func (h *commitSignal) OnCommitted(_ pipeline.TopicPartition, _ int64, err error) {
	if err != nil {
		h.aborted.Add(1)
		return
	}
	select {
	case h.committed <- struct{}{}:
	default:
	}
}

// await waits for a transaction to commit after it is called.
func (h *commitSignal) await(t *testing.T, errc <-chan error, what string) {
	t.Helper()
	select {
	case <-h.committed: // drop a signal from before
	default:
	}
	select {
	case <-h.committed:
	case err := <-errc:
		t.Fatalf("Run returned %s: %v", what, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no transaction committed %s within 30s", what)
	}
}

// eosRun is an exactly-once consumer that copies topic in to topic out
// (3 partitions each) under a paced load, with the timeouts of the
// reliability suite's Kafka sink scenarios scaled down.
type eosRun struct {
	kc     *kafkatest.Cluster
	hook   *commitSignal
	errc   chan error
	cancel context.CancelFunc
	stop   chan struct{}
	loaded sync.WaitGroup
	sent   atomic.Int64
}

func startEOS(t *testing.T) *eosRun {
	t.Helper()
	r := &eosRun{
		kc:   kafkatest.New(t, kafkatest.Topic("in", 3), kafkatest.Topic("out", 3)),
		hook: &commitSignal{committed: make(chan struct{}, 1)},
		errc: make(chan error, 1),
		stop: make(chan struct{}),
	}
	w := &txnWriter{}
	h := &workHandler{fn: func(ctx context.Context, rec *pipeline.Record) error {
		return w.cl.ProduceSync(ctx, &kgo.Record{Topic: "out", Key: rec.Key, Value: rec.Value}).FirstErr()
	}}
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: r.kc.Addrs}), consumer.Group("etl"), consumer.Handle(listed(h, "in")),
		consumer.SessionTimeout(4500*time.Millisecond), consumer.RebalanceTimeout(3*time.Second),
		consumer.DrainTimeout(2*time.Second), consumer.ExactlyOnce("etl-1", w), consumer.Hooks(r.hook),
		consumer.Logger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.errc <- c.Run(ctx) }()
	prod := r.kc.Client(t, kgo.ProducerLinger(0))
	r.loaded.Add(1)
	go func() {
		defer r.loaded.Done()
		tick := time.NewTicker(10 * time.Millisecond) // pacing the load
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i%10), Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
				return
			}
			r.sent.Add(1)
		}
	}()
	t.Cleanup(func() {
		r.stopLoad()
		cancel()
	})
	r.hook.await(t, r.errc, "before the fault")
	return r
}

func (r *eosRun) stopLoad() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.loaded.Wait()
}

// finish stops the load, waits until the consumer committed everything,
// stops it, and checks that a read_committed reader of out sees every
// input exactly once.
func (r *eosRun) finish(t *testing.T) {
	t.Helper()
	r.stopLoad()
	select {
	case err := <-r.errc:
		t.Fatalf("Run returned before the end: %v", err)
	default:
	}
	r.kc.WaitCommittedEnd(t, "etl", "in", 60*time.Second)
	r.cancel()
	select {
	case err := <-r.errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	seen := map[string]int{}
	for _, rec := range r.kc.ReadCommitted(t, "out", 3) {
		seen[string(rec.Value)]++
	}
	n := int(r.sent.Load())
	var dups, lost int
	for i := range n {
		switch seen[fmt.Sprintf("v%d", i)] {
		case 0:
			lost++
		case 1:
		default:
			dups++
		}
	}
	if dups > 0 || lost > 0 || len(seen) != n {
		t.Fatalf("read_committed output of %d inputs: %d duplicated, %d lost, %d distinct values", n, dups, lost, len(seen))
	}
	t.Logf("%d inputs, each output exactly once; %d partition offsets reported aborted", n, r.hook.aborted.Load())
}

// An outage of the group coordinator's TxnOffsetCommit nearly as long as
// the rebalance timeout used to stop the member: the commit retried past
// the transaction timeout (then RebalanceTimeout), the broker aborted the
// transaction and bumped the epoch, TxnOffsetCommit answered
// PRODUCER_FENCED and endTxn took it for fatal. The transaction timeout now
// covers the commit's wait, and the member goes on without a duplicate or
// a loss.
func TestExactlyOnceSurvivesTxnOffsetCommitOutage(t *testing.T) {
	r := startEOS(t)
	f := r.kc.Fault(kfakeFault(kmsg.TxnOffsetCommit, kerr.CoordinatorNotAvailable, -1))
	awaitHit(t, f)
	time.Sleep(2900 * time.Millisecond) // the outage's length, not a synchronisation
	f.Remove()
	r.hook.await(t, r.errc, "after the outage")
	r.finish(t)
}

// Kafka answers PRODUCER_FENCED to the TxnOffsetCommit of a transaction
// it aborted by timeout; endTxn took that for a takeover and stopped the
// member. Now the member aborts and leaves the verdict to the broker: here
// (a PRODUCER_FENCED answer without a takeover) the abort succeeds, and the
// member rewinds and goes on.
func TestExactlyOnceCommitAnsweredProducerFencedIsNotFatal(t *testing.T) {
	r := startEOS(t)
	f := r.kc.Fault(kfakeFault(kmsg.TxnOffsetCommit, kerr.ProducerFenced, 0))
	awaitHit(t, f)
	r.hook.await(t, r.errc, "after a PRODUCER_FENCED commit")
	r.finish(t)
}

// One EndTxn answered REQUEST_TIMED_OUT (kfake rejects it without applying
// it; the client cannot tell either way) left franz-go's session with an
// end of unknown outcome; endTxn logged an abort and rewound, and the next
// Begin failed ("invalid attempt to begin a transaction while already in a
// transaction"), which stopped the member. The end is now resolved by an
// abort before the next Begin.
func TestExactlyOnceSurvivesEndTxnTimedOut(t *testing.T) {
	r := startEOS(t)
	f := r.kc.Fault(kfakeFault(kmsg.EndTxn, kerr.RequestTimedOut, 0))
	awaitHit(t, f)
	r.hook.await(t, r.errc, "after an EndTxn timed out")
	r.finish(t)
}

// An EndTxn that commits but whose answer is lost (here: the broker
// commits it, the client is answered REQUEST_TIMED_OUT) must not rewind
// behind the commit: the records it committed would be handled again and
// their outputs read twice by a read_committed reader.
func TestExactlyOnceEndTxnCommittedButAnswerLostHasNoDuplicates(t *testing.T) {
	r := startEOS(t)
	fwd := r.kc.Client(t)
	var forwarded atomic.Bool
	var fwdErr error
	r.kc.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.EndTxnRequest)
		if !req.Commit || forwarded.Load() {
			r.kc.KeepControl()
			return nil, nil, false
		}
		forwarded.Store(true)
		cp := *req
		// The broker handles the commit on another connection.
		r.kc.SleepControl(func() {
			resp, err := cp.RequestWith(context.Background(), fwd)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			fwdErr = err
		})
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.Version = req.Version
		resp.ErrorCode = kerr.RequestTimedOut.Code
		return resp, nil, true
	})
	// A transaction may be ending as the control is installed: its commit
	// says nothing. Wait for the commits until one EndTxn went through the
	// control, then for the commit after it.
	for !forwarded.Load() {
		r.hook.await(t, r.errc, "while waiting for an EndTxn that commits")
	}
	r.hook.await(t, r.errc, "after an EndTxn committed with its answer lost")
	if fwdErr != nil {
		t.Fatalf("the EndTxn was not committed behind the client's back: forwarded %v, err %v", forwarded.Load(), fwdErr)
	}
	r.finish(t)
}

// kfakeFault fails the next count requests of key with err (count 0: one,
// -1: until removed): EndTxn at its top level, TxnOffsetCommit in its
// partitions.
func kfakeFault(key kmsg.Key, err *kerr.Error, count int) kfake.Fault {
	return kfake.Fault{Keys: []kmsg.Key{key}, Err: err, Count: count, TopLevel: key == kmsg.EndTxn}
}

// awaitHit waits until f answered a request.
func awaitHit(t *testing.T, f *kfake.FaultHandle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Wait(ctx, 1); err != nil {
		t.Fatalf("the fault answered no request: %v", err)
	}
}
