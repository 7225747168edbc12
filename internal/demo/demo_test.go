package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestShortDemo runs a demo of three seconds, whose downstream is slow and
// then down in the middle, and checks the summary's figures: every record
// handled or dead-lettered, none lost, none out of order, dead letters only
// for poison records (none for the outage), the dead letters on the topic,
// and the summary's next command working on the broker's data directory.
func TestShortDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a demo of a few seconds")
	}
	dataDir := filepath.Join(t.TempDir(), "broker")
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	s, err := Run(context.Background(), Config{
		DataDir:     dataDir,
		LogFile:     filepath.Join(t.TempDir(), "demo.log"),
		Duration:    3 * time.Second,
		Rate:        300,
		MetricsAddr: "127.0.0.1:0",
		Interval:    500 * time.Millisecond,
		Seed:        1,
		Registry:    reg,
		Out:         &out,
		Ready:       func(addr string) { checkEndpoints(t, addr) },
	})
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}

	if s.Produced < 600 {
		t.Errorf("produced %d orders in 3s at 300/s", s.Produced)
	}
	if got := s.Handled + s.DeadLettered; got != s.Produced {
		t.Errorf("handled %d + dead-lettered %d = %d, want produced %d", s.Handled, s.DeadLettered, got, s.Produced)
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"lost", s.Lost, 0},
		{"pending", s.Pending, 0},
		{"out of order", s.OutOfOrder, 0},
		{"duplicates", s.Duplicates, 0},
		{"filtered", s.Filtered, s.ByKind[KindTest.String()]},
		{"shipped", s.Shipped, s.ByKind[KindGood.String()]},
		{"decode dead letters", s.DeadByReason["decode"], s.ByKind[KindUndecodable.String()]},
		{"permanent dead letters", s.DeadByReason["permanent"], s.ByKind[KindRejected.String()]},
		{"panic dead letters", s.DeadByReason["panic"], s.ByKind[KindCrash.String()]},
		{"dead letters read back", s.ReadBack, s.DeadLettered},
		{"orders in windows", s.WindowOrders, s.ByKind[KindGood.String()] + s.ByKind[KindRejected.String()] + s.ByKind[KindCrash.String()]},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if len(s.Unexpected) > 0 {
		t.Errorf("unexpected dead letters or shipments: %v", s.Unexpected)
	}
	if len(s.DeadByReason) != 3 {
		t.Errorf("dead letters by reason %v: want decode, permanent and panic only", s.DeadByReason)
	}
	if s.BreakerOpened == 0 {
		t.Error("the breaker never opened: the outage did not happen")
	}
	if !s.CommittedToEnd {
		t.Error("the group did not commit every partition to its end")
	}
	for _, want := range []string{"summary:", "lost                   0", "every dead letter is a poison record", "dlq stats orders.dlq"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// The summary's next command: a broker on the demo's data directory
	// serves its dead letters.
	b, err := devbroker.Start(devbroker.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	adm, err := dlq.NewAdmin(context.Background(), dlq.Conn{Brokers: b.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	st, err := adm.Stats(context.Background(), s.DLQTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != s.DeadLettered {
		t.Errorf("after a restart on the data directory, %s holds %d dead letters, want %d", s.DLQTopic, st.Total, s.DeadLettered)
	}
}

// checkEndpoints checks that the demo serves its probes and metrics.
func checkEndpoints(t *testing.T, addr string) {
	t.Helper()
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": metrics.ConcurrencyLimit} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

func TestScheduleAt(t *testing.T) {
	start := time.Unix(1000, 0)
	s := Schedule{Start: start, Cycle: 10 * time.Second}
	for _, tt := range []struct {
		give time.Duration
		want Phase
	}{
		{0, PhaseNormal},
		{2400 * time.Millisecond, PhaseNormal},
		{2500 * time.Millisecond, PhaseSlow},
		{4400 * time.Millisecond, PhaseSlow},
		{4500 * time.Millisecond, PhaseDown},
		{6400 * time.Millisecond, PhaseDown},
		{6500 * time.Millisecond, PhaseRecovered},
		{9900 * time.Millisecond, PhaseRecovered},
		{12 * time.Second, PhaseNormal}, // the cycle repeats
		{15 * time.Second, PhaseDown},
	} {
		if got := s.At(start.Add(tt.give)); got != tt.want {
			t.Errorf("At(start+%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
	if got := s.Outage(); got != 2*time.Second {
		t.Errorf("Outage() = %v, want 2s", got)
	}
}

func TestKindShares(t *testing.T) {
	var n [numKinds]int
	for i := range 100_000 {
		n[kindOf(i)]++
	}
	want := [numKinds]int{KindGood: 98_200, KindTest: 1_000, KindUndecodable: 500, KindRejected: 200, KindCrash: 100}
	if n != want {
		t.Errorf("kinds of 100,000 records: %v, want %v", n, want)
	}
}

// TestDisplayRedrawsInPlace: on a terminal the second frame moves the cursor
// back over the first instead of scrolling.
func TestDisplayRedrawsInPlace(t *testing.T) {
	var b bytes.Buffer
	d := &display{w: &b, tty: true}
	f := frame{total: 30 * time.Second, producing: true, g: gauges{deadBy: map[string]float64{"decode": 2}}}
	d.show(f)
	first := b.String()
	d.show(f)
	second := strings.TrimPrefix(b.String(), first)
	if strings.Contains(first, "\x1b[5A") || !strings.HasPrefix(second, "\x1b[5A") {
		t.Errorf("frames %q then %q: want the second to start by moving up 5 lines", first, second)
	}
	if !strings.Contains(first, "dead letters 2: decode 2") {
		t.Errorf("frame %q lacks the dead letters", first)
	}
	b.Reset()
	(&display{w: &b}).show(f)
	if got := strings.Count(b.String(), "\n"); got != 1 || strings.Contains(b.String(), "\x1b") {
		t.Errorf("plain frame %q: want one line without escapes", b.String())
	}
}
