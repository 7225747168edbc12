package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
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

func TestQuickstartPrintsOrdersAndDeadLettersBadOnes(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 3))
	kc.Produce(t,
		&kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"1","customer":"alice","amount":10}`)},
		&kgo.Record{Topic: "orders", Key: []byte("bob"), Value: []byte(`{"id":"2","customer":"bob","amount":20.5}`)},
		&kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte(`not json`)},
		&kgo.Record{Topic: "orders", Key: []byte("carol"), Value: []byte(`{"customer":"carol","amount":1}`)},
		&kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"3","customer":"alice","amount":30}`)},
	)
	out := &lines{want: 3, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, Config{Brokers: kc.Addrs, Group: "qs", Topic: "orders"}, out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	select {
	case <-out.done:
	case err := <-errc:
		t.Fatalf("quickstart stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("printed after 30s:\n%s", out.buf.String())
	}
	// Both bad records are dead-lettered: committed offsets reach the end
	// only once their dead letters were acknowledged.
	kc.WaitCommittedEnd(t, "qs", "orders", 20*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(out.buf.String()), "\n")
	sort.Strings(got)
	want := []string{"order 1 from alice: 10.00", "order 2 from bob: 20.50", "order 3 from alice: 30.00"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var dlqEnd int64
	for _, e := range kc.EndOffsets(t, "orders.dlq") {
		dlqEnd += e
	}
	if dlqEnd != 2 {
		t.Fatalf("orders.dlq holds %d records, want the 2 bad orders", dlqEnd)
	}
}
