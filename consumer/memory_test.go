package consumer_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// watched consumes a one-partition topic of n records of 1 KB with a
// consumer whose handler settles each record at once after taking a weak
// pointer to what ref picks out of it. It returns once all n were handled.
type watched[T any] struct {
	kc   *kafkatest.Cluster
	l    *ledger
	stop func() error

	mu   sync.Mutex
	refs []weak.Pointer[T]
}

func watch[T any](t *testing.T, topic string, n int, ref func(*pipeline.Record) *T) *watched[T] {
	t.Helper()
	w := &watched[T]{kc: kafkatest.New(t, kafkatest.Topic(topic, 1)), l: newLedger()}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: make([]byte, 1000)}
	}
	w.kc.Produce(t, recs...)
	h := &workHandler{fn: func(_ context.Context, r *pipeline.Record) error {
		w.mu.Lock()
		w.refs = append(w.refs, weak.Make(ref(r)))
		w.mu.Unlock()
		w.l.add(r)
		return nil
	}}
	_, w.stop = runConsumer(t, baseOpts(w.kc, topic, h, topic)...)
	w.l.waitTotal(t, n, 30*time.Second)
	return w
}

// alive is how many of the first n watched pointers still point somewhere.
func (w *watched[T]) alive(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	for _, p := range w.refs[:n] {
		if p.Value() != nil {
			k++
		}
	}
	return k
}

// collect runs the GC until none of the first n watched pointers is alive,
// for at most 5s, and returns how many still are.
func (w *watched[T]) collect(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for w.alive(n) > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // let the handler's goroutines drop their last references
	}
	return w.alive(n)
}

// TestSettledRecordsAreNotKeptAlive checks that the consumer lets go of
// records once they are handed over and settled. A settled record kept
// reachable keeps its key and value, and with them the whole fetch response
// they were read from: a consumer that pins a few of those holds hundreds of
// megabytes for records it finished long ago.
func TestSettledRecordsAreNotKeptAlive(t *testing.T) {
	const n = 200
	w := watch(t, "memory", n, func(r *pipeline.Record) *pipeline.Record { return r })
	// A later, smaller batch: the feeder hands it over through the same
	// buffers that held the first one.
	w.kc.Produce(t, &kgo.Record{Topic: "memory", Value: []byte("last")})
	w.l.waitTotal(t, n+1, 30*time.Second)
	if k := w.collect(n); k > 0 {
		t.Fatalf("%d of %d settled records are still reachable after the next batch was handled", k, n)
	}
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestIdleConsumerFreesFetchBuffers checks that once every fetched record
// has settled and nothing more arrives, nothing the consumer holds keeps the
// fetched bytes alive: an idle consumer's memory is not its last fetches'.
func TestIdleConsumerFreesFetchBuffers(t *testing.T) {
	const n = 200
	w := watch(t, "idle", n, func(r *pipeline.Record) *byte { return &r.Value[0] })
	if k := w.collect(n); k > 0 {
		t.Fatalf("%d of %d fetched values still reachable after all settled, with nothing more to fetch", k, n)
	}
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
}
