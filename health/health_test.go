package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixedStatus consumer.Status

func (s fixedStatus) Status() consumer.Status { return consumer.Status(s) }

var (
	p0 = pipeline.TopicPartition{Topic: "orders", Partition: 0}
	p1 = pipeline.TopicPartition{Topic: "orders", Partition: 1}
)

func TestCheck(t *testing.T) {
	running := consumer.Status{Running: true, Joined: true, Assigned: []pipeline.TopicPartition{p0, p1}}
	stalled := running
	stalled.Stalled = []pipeline.TopicPartition{p1}
	failed := consumer.Status{Err: errors.New("open partition orders/0: boom")}
	for _, tt := range []struct {
		name       string
		give       consumer.Status
		opts       []health.ReadyOpt
		wantReady  bool
		wantReason string
	}{
		{"not started", consumer.Status{}, nil, false, "the consumer is not running"},
		{"joining", consumer.Status{Running: true}, nil, false, "the consumer has not joined its group yet"},
		{"joined with partitions", running, nil, true, ""},
		{"joined without partitions (idle member)", consumer.Status{Running: true, Joined: true}, nil, true, ""},
		{"stalled stays ready by default", stalled, nil, true, ""},
		{"stalled unready when asked", stalled, []health.ReadyOpt{health.StalledUnready()}, false, "partitions are stalled"},
		{"failed", failed, nil, false, "the consumer failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := health.Check(tt.give, tt.opts...)
			if got.Ready != tt.wantReady || got.Reason != tt.wantReason {
				t.Fatalf("ready %t (%q), want %t (%q)", got.Ready, got.Reason, tt.wantReady, tt.wantReason)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, target string, hdr ...string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
}

func TestReadinessBodies(t *testing.T) {
	st := consumer.Status{Running: true, Joined: true, Assigned: []pipeline.TopicPartition{p0, p1},
		Paused: []pipeline.TopicPartition{p1}, Stalled: []pipeline.TopicPartition{p1}, Unsettled: 12, Buffered: 40}
	h := health.Readiness(fixedStatus(st))

	code, ctype, body := get(t, h, "/readyz")
	want := "ready\nrunning: true, joined: true\nassigned (2): orders/0 orders/1\npaused (1): orders/1\n" +
		"stalled (1): orders/1 (does not affect readiness)\nunsettled: 12, buffered: 40\n"
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain") || body != want {
		t.Fatalf("text: %d %s\n%s", code, ctype, body)
	}
	for _, hdr := range [][]string{{"Accept", "application/json"}, nil} {
		target := "/readyz"
		if hdr == nil {
			target += "?format=json"
		}
		code, ctype, body = get(t, h, target, hdr...)
		var rep health.Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil || code != http.StatusOK || ctype != "application/json" {
			t.Fatalf("json: %d %s %v\n%s", code, ctype, err, body)
		}
		if !rep.Ready || len(rep.Stalled) != 1 || rep.Stalled[0] != "orders/1" || rep.Buffered != 40 {
			t.Fatalf("json report: %+v", rep)
		}
	}

	code, _, body = get(t, health.Readiness(fixedStatus(consumer.Status{Err: errors.New("boom")})), "/readyz")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: the consumer failed\n") || !strings.Contains(body, "error: boom\n") {
		t.Fatalf("failed consumer: %d\n%s", code, body)
	}
}

func TestLiveness(t *testing.T) {
	code, _, body := get(t, health.Liveness(), "/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Fatalf("%d %q", code, body)
	}
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s, err := health.NewServer("127.0.0.1:0", health.Status(fixedStatus{Running: true, Joined: true}), health.Metrics(reg),
		health.Handle("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "extra") })))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	base := "http://" + s.Addr()
	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/metrics", 200, "sluice_test_total 3"},
		{"/extra", 200, "extra"},
		{"/nothing", 404, ""},
	} {
		resp, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) {
			t.Errorf("GET %s: %d\n%s", tt.path, resp.StatusCode, b)
		}
	}
	if err := s.Run(context.Background()); !errors.Is(err, health.ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
	s.Close()
	s.Close()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestServerLifecycle(t *testing.T) {
	t.Run("close before run", func(t *testing.T) {
		s, err := health.NewServer("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := s.Addr()
		s.Close()
		if err := s.Run(context.Background()); !errors.Is(err, health.ErrClosed) {
			t.Fatalf("Run after Close: %v", err)
		}
		// The port is free again.
		s2, err := health.NewServer(addr)
		if err != nil {
			t.Fatalf("port not released: %v", err)
		}
		s2.Close()
	})
	t.Run("context ends run", func(t *testing.T) {
		s, err := health.NewServer("127.0.0.1:0", health.ShutdownTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- s.Run(ctx) }()
		cancel()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
	t.Run("taken port", func(t *testing.T) {
		s, err := health.NewServer("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := health.NewServer(s.Addr()); err == nil {
			t.Fatal("listened on a taken port")
		}
	})
	t.Run("bad options", func(t *testing.T) {
		for _, tt := range []struct {
			give health.Opt
			want string
		}{
			{health.ShutdownTimeout(0), "ShutdownTimeout"},
			{health.Handle("", nil), "Handle"},
		} {
			_, err := health.NewServer("127.0.0.1:0", tt.give)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, sluice.ErrConfig) || ce.Package != "health" || ce.Option != tt.want {
				t.Errorf("NewServer: %v, want a ConfigError of health naming %s", err, tt.want)
			}
		}
	})
}

// TestReadinessShowsWhyItCannotJoin: a consumer that cannot reach its
// brokers says so in the /readyz body; once joined the old error is gone.
func TestReadinessShowsWhyItCannotJoin(t *testing.T) {
	connErr := errors.New("connect to 127.0.0.1:9092: connection refused")
	r := health.Check(consumer.Status{Running: true, ConnectErr: connErr})
	if r.Ready || !strings.Contains(r.Text(), "broker connection: connect to 127.0.0.1:9092: connection refused") {
		t.Fatalf("not joined, report:\n%s", r.Text())
	}
	if r := health.Check(consumer.Status{Running: true, Joined: true, ConnectErr: connErr}); r.ConnectError != "" {
		t.Fatalf("joined, still reports %q", r.ConnectError)
	}
}

// TestReadinessNamesAuthFailures: an authentication or authorization
// failure is the reason, named as such, even for a joined consumer (a
// topic ACL can deny it after the join).
func TestReadinessNamesAuthFailures(t *testing.T) {
	authErr := &consumer.AuthError{Kind: consumer.AuthTopic, Topic: "orders", Err: errors.New("TOPIC_AUTHORIZATION_FAILED")}
	r := health.Check(consumer.Status{Running: true, Joined: true, AuthErr: authErr})
	if r.Ready || r.Reason != "authentication or authorization failed" || !strings.Contains(r.Text(), `not authorized to read topic "orders"`) {
		t.Fatalf("report:\n%s", r.Text())
	}
}
