package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/sluicefx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lines is an io.Writer that collects lines and says when it has want.
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

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFxAppHandlesServesAndStopsGracefully starts the application under
// fx, checks what it stored, its probes and metrics, and that a stop
// drains and commits every record (the bad one dead-lettered first).
func TestFxAppHandlesServesAndStopsGracefully(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 2))
	kc.Produce(t,
		&kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"1","customer":"alice","amount":10}`)},
		&kgo.Record{Topic: "orders", Key: []byte("bob"), Value: []byte(`{"id":"2","customer":"bob","amount":20.5}`)},
		&kgo.Record{Topic: "orders", Key: []byte("carol"), Value: []byte(`{"customer":"carol"}`)}, // no id: dead-lettered
		&kgo.Record{Topic: "orders", Key: []byte("alice"), Value: []byte(`{"id":"3","customer":"alice","amount":30}`)},
	)
	cfg := sluicefx.Config{Brokers: kc.Addrs, Group: "fxapp", HTTPAddr: "127.0.0.1:0",
		DrainTimeout: 5 * time.Second, CommitInterval: 100 * time.Millisecond, DeadLetters: sluicefx.DeadLetters{AutoCreate: 1}}
	out := &lines{want: 3, done: make(chan struct{})}
	var srv *health.Server
	a := fx.New(app(cfg, Topics{"orders"}, out, slog.New(slog.NewTextHandler(io.Discard, nil))), fx.Populate(&srv))
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = a.Stop(ctx)
		}
	}()
	select {
	case <-out.done:
	case <-ctx.Done():
		t.Fatalf("stored after 30s:\n%s", out.String())
	}

	base := "http://" + srv.Addr()
	if code, body := get(t, base+health.PathLiveness); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		code, _ := get(t, base+health.PathReadiness)
		return code == http.StatusOK
	}, "/readyz never turned ready")
	ends := kc.EndOffsets(t, "orders")
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		_, body := get(t, base+health.PathMetrics)
		return strings.Contains(body, metrics.RecordsHandled+`{outcome="ok",stage="orders-store"} 3`) &&
			strings.Contains(body, metrics.DeadLetters+`{reason="permanent",stage="orders-store"} 1`)
	}, "/metrics never showed 3 stored records and 1 dead letter")

	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	committed := kc.Committed(t, "fxapp", "orders")
	for p, e := range ends {
		if committed[p] != e {
			t.Errorf("after the stop, partition %d committed at %d, end %d", p, committed[p], e)
		}
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	sort.Strings(got)
	want := []string{"stored order 1 from alice: 10.00", "stored order 2 from bob: 20.50", "stored order 3 from alice: 30.00"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var dead int64
	for _, e := range kc.EndOffsets(t, "orders.dlq") {
		dead += e
	}
	if dead != 1 {
		t.Errorf("orders.dlq holds %d records, want the order without an id", dead)
	}
}

// TestFxAppRejectsBadConfig: a bad config fails the start, naming the field.
func TestFxAppRejectsBadConfig(t *testing.T) {
	cfg := sluicefx.Config{Brokers: []string{"127.0.0.1:1"}, HTTPAddr: "127.0.0.1:0"}
	a := fx.New(app(cfg, Topics{"orders"}, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := a.Err(); err == nil || !strings.Contains(err.Error(), "Group") {
		t.Fatalf("app with no group: err %v, want one naming Group", err)
	}
}
