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

// TestSettledRecordsAreNotKeptAlive checks that the consumer lets go of
// records once they are handed over and settled. A settled record kept
// reachable keeps its key and value, and with them the whole fetch response
// they were read from: a consumer that pins a few of those holds hundreds of
// megabytes for records it finished long ago.
func TestSettledRecordsAreNotKeptAlive(t *testing.T) {
	const topic = "memory"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1))
	first := make([]*kgo.Record, 200)
	for i := range first {
		first[i] = &kgo.Record{Topic: topic, Value: make([]byte, 1000)}
	}
	kc.Produce(t, first...)

	var (
		mu   sync.Mutex
		refs []weak.Pointer[pipeline.Record]
	)
	l := newLedger()
	h := &workHandler{fn: func(_ context.Context, r *pipeline.Record) error {
		mu.Lock()
		refs = append(refs, weak.Make(r))
		mu.Unlock()
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, baseOpts(kc, "memory", h, topic)...)
	l.waitTotal(t, len(first), 30*time.Second)
	// A later, smaller batch: the feeder hands it over through the same
	// buffers that held the first one.
	kc.Produce(t, &kgo.Record{Topic: topic, Value: []byte("last")})
	l.waitTotal(t, len(first)+1, 30*time.Second)

	mu.Lock()
	early := refs[:len(first)]
	mu.Unlock()
	alive := func() int {
		n := 0
		for _, p := range early {
			if p.Value() != nil {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive() > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // let the handler's goroutines drop their last references
	}
	if n := alive(); n > 0 {
		t.Fatalf("%d of %d settled records are still reachable after the next batch was handled", n, len(first))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestIdleConsumerFreesFetchBuffers checks that once every fetched record
// has settled and nothing more arrives, nothing the consumer holds keeps the
// fetched bytes alive: an idle consumer's memory is not its last fetches'.
func TestIdleConsumerFreesFetchBuffers(t *testing.T) {
	const topic = "idle"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1))
	first := make([]*kgo.Record, 200)
	for i := range first {
		first[i] = &kgo.Record{Topic: topic, Value: make([]byte, 1000)}
	}
	kc.Produce(t, first...)
	var (
		mu   sync.Mutex
		refs []weak.Pointer[byte]
	)
	l := newLedger()
	h := &workHandler{fn: func(_ context.Context, r *pipeline.Record) error {
		mu.Lock()
		refs = append(refs, weak.Make(&r.Value[0]))
		mu.Unlock()
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, baseOpts(kc, "idle", h, topic)...)
	l.waitTotal(t, len(first), 30*time.Second)
	alive := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range refs {
			if p.Value() != nil {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive() > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := alive(); n > 0 {
		t.Fatalf("%d of %d fetched values still reachable after all settled, with nothing more to fetch", n, len(first))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
