package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/kafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lines is an io.Writer that collects lines and says when it has n.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want int
	done chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if strings.Count(l.buf.String(), "\n") == l.want {
		close(l.done)
	}
	return len(p), nil
}

// orders are the test's input: three good orders, a record that is not
// JSON and an order without an id.
func orders() []*kgo.Record {
	return []*kgo.Record{
		{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"1","customer":"alice","amount":10}`)},
		{Topic: "orders", Key: []byte("bob"), Value: []byte(`{"id":"2","customer":"bob","amount":20.5}`)},
		{Topic: "orders", Key: []byte("alice"), Value: []byte(`not json`)},
		{Topic: "orders", Key: []byte("carol"), Value: []byte(`{"customer":"carol","amount":1}`)},
		{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"3","customer":"alice","amount":30}`)},
	}
}

var wantSaved = []string{"order 1 from alice: 10.00", "order 2 from bob: 20.50", "order 3 from alice: 30.00"}

// start runs the quickstart against a broker holding orders until the
// returned stop is called; stop returns run's error.
func start(t *testing.T, kc *kafkatest.Cluster, store Store) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, Config{Brokers: kc.Addrs, Group: "qs", Topic: "orders"}, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	return func() error {
		cancel()
		return <-errc
	}
}

func checkOutput(t *testing.T, kc *kafkatest.Cluster, out *lines) {
	t.Helper()
	got := strings.Split(strings.TrimSpace(out.buf.String()), "\n")
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(wantSaved, "\n") {
		t.Errorf("saved:\n%s\nwant each good order once:\n%s", strings.Join(got, "\n"), strings.Join(wantSaved, "\n"))
	}
	var dlqEnd int64
	for _, e := range kc.EndOffsets(t, "orders.dlq") {
		dlqEnd += e
	}
	if dlqEnd != 2 {
		t.Errorf("orders.dlq holds %d records, want the 2 bad orders only", dlqEnd)
	}
}

func waitFor(t *testing.T, what string, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("after 30s: %s", what)
	}
}

func TestQuickstartSavesOrdersAndDeadLettersBadOnes(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 3))
	kc.Produce(t, orders()...)
	out := &lines{want: 3, done: make(chan struct{})}
	stop := start(t, kc, printer{out})
	waitFor(t, "three orders saved", out.done)
	// Both bad records are dead-lettered: committed offsets reach the end
	// only once their dead letters were acknowledged.
	kc.WaitCommittedEnd(t, "qs", "orders", 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, kc, out)
}

// flakyStore is a store that is down (every Save fails) until up is closed.
type flakyStore struct {
	Store
	up       chan struct{}
	failed   chan struct{} // closed after the third failed Save
	failures atomic.Int32
}

func (s *flakyStore) Save(ctx context.Context, o Order) error {
	select {
	case <-s.up:
		return s.Store.Save(ctx, o)
	default:
	}
	if s.failures.Add(1) == 3 {
		close(s.failed)
	}
	return errors.New("dial tcp 10.0.0.7:5432: connect: connection refused")
}

// The promise of the smallest example: a downstream outage loses nothing and
// dead-letters nothing; the orders wait, uncommitted, until it is back.
func TestQuickstartSurvivesAStoreOutage(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 3))
	recs := orders()
	kc.Produce(t, recs...)
	out := &lines{want: 3, done: make(chan struct{})}
	store := &flakyStore{Store: printer{out}, up: make(chan struct{}), failed: make(chan struct{})}
	stop := start(t, kc, store)
	waitFor(t, "three failed saves", store.failed)
	// The store is down: no commit may pass a good order.
	committed := kc.Committed(t, "qs", "orders")
	for _, i := range []int{0, 1, 4} {
		if r := recs[i]; committed[r.Partition] > r.Offset {
			t.Errorf("committed %d on partition %d, past the unsaved order at %d", committed[r.Partition], r.Partition, r.Offset)
		}
	}
	close(store.up)
	waitFor(t, "three orders saved after the outage", out.done)
	kc.WaitCommittedEnd(t, "qs", "orders", 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, kc, out)
}
