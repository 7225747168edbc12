package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/internal/kafkatest"
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
	adm, err := dlq.NewAdmin(context.Background(), dlq.Conn{Connection: sluice.Connection{Brokers: b.ListenAddrs()}})
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

// TestDemoOnForeignClusterUsesItsOwnTopics: on a cluster of the user's the
// demo writes and consumes topics of its own, and refuses a topic that
// exists and is not its own, leaving it alone.
func TestDemoOnForeignClusterUsesItsOwnTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two demos of a second")
	}
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	c.ProduceN(t, "orders", 5, kafkatest.KeyedValue(5)) // a real consumer's records
	run := func(cfg Config) (*Summary, string, error) {
		var out bytes.Buffer
		cfg.Brokers, cfg.Duration, cfg.Rate, cfg.MetricsAddr = c.Addrs, time.Second, 100, "off"
		cfg.LogFile, cfg.Interval, cfg.Seed, cfg.Out = filepath.Join(t.TempDir(), "demo.log"), 200*time.Millisecond, 1, &out
		s, err := Run(context.Background(), cfg)
		return s, out.String(), err
	}
	untouched := func() {
		t.Helper()
		if n := c.EndOffsets(t, "orders"); n[0]+n[1] != 5 {
			t.Errorf("orders holds %v records, want the 5 it had", n)
		}
		if n := c.EndOffsets(t, "orders.dlq"); n[0]+n[1] != 0 {
			t.Errorf("orders.dlq holds %v records, want none", n)
		}
		if got := c.Committed(t, Group, "orders"); len(got) != 0 {
			t.Errorf("the demo's group committed %v in orders", got)
		}
	}

	s, out, err := run(Config{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if s.DLQTopic != "sluice-demo.orders.dlq" || s.Lost != 0 || s.Produced == 0 || !strings.Contains(out, "dlq stats sluice-demo.orders.dlq --brokers "+c.Addrs[0]) {
		t.Errorf("summary %+v\n%s", s, out)
	}
	untouched()

	start := time.Now()
	_, out, err = run(Config{Topic: "orders"})
	if err == nil || !strings.Contains(err.Error(), "--topic orders: the topic exists on "+c.Addrs[0]+" and the demo did not create it") ||
		!strings.Contains(err.Error(), "--use-existing-topic") || time.Since(start) > 10*time.Second {
		t.Fatalf("demo on an existing topic of the user's: %v after %v\n%s", err, time.Since(start), out)
	}
	untouched()

	// Its own topic, from the first run, is fine.
	if _, out, err := run(Config{}); err != nil {
		t.Fatalf("second run on its own topic: %v\n%s", err, out)
	}
	untouched()
}

// watchWriter is an io.Writer that calls on, once, when the output
// contains trigger, and remembers when it first contained mark.
type watchWriter struct {
	mu       sync.Mutex
	b        bytes.Buffer
	trigger  string
	on       func()
	fired    time.Time
	mark     string
	marked   time.Time
	markLine string
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, _ := w.b.Write(p)
	s := w.b.String()
	if w.fired.IsZero() && strings.Contains(s, w.trigger) {
		w.fired = time.Now()
		w.on()
	}
	if !w.fired.IsZero() && w.marked.IsZero() && strings.Contains(string(p), w.mark) {
		w.marked, w.markLine = time.Now(), string(p)
	}
	return n, nil
}

// TestDemoInterruptedDuringOutage: Ctrl-C while the downstream is down
// says at once what the demo waits for (the orders in flight, up to the
// stop timeout), and the summary tells how long stopping took and
// accounts for every record.
func TestDemoInterruptedDuringOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a demo of a few seconds")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &watchWriter{trigger: "downstream=DOWN", on: cancel, mark: "stopping: "}
	start := time.Now()
	s, err := Run(ctx, Config{
		DataDir: filepath.Join(t.TempDir(), "broker"), LogFile: filepath.Join(t.TempDir(), "demo.log"),
		Duration: 6 * time.Second, Rate: 200, MetricsAddr: "off", Interval: 100 * time.Millisecond, Seed: 1,
		StopTimeout: 2 * time.Second, Out: out,
	})
	out.mu.Lock()
	text, fired, marked, line := out.b.String(), out.fired, out.marked, out.markLine
	out.mu.Unlock()
	t.Logf("output:\n%s", text)
	if err != nil {
		t.Fatal(err)
	}
	if fired.IsZero() {
		t.Fatal("the downstream was never down")
	}
	if marked.IsZero() || marked.Sub(fired) > time.Second || !strings.Contains(line, "get up to 2s to settle (downstream DOWN") ||
		!strings.Contains(line, "Ctrl-C again quits at once") {
		t.Errorf("after the interrupt at %v the demo said %q at %v", fired.Sub(start), line, marked.Sub(start))
	}
	if took := time.Since(marked); !s.Interrupted || s.Stopping <= 0 || s.Stopping > took {
		t.Errorf("interrupted %v, stopping took %v by the summary, %v since it said so", s.Interrupted, s.Stopping, took)
	}
	if !strings.Contains(text, "to stop (interrupted)") {
		t.Errorf("the summary does not say how long stopping took")
	}
	if s.Lost != 0 || s.Handled+s.DeadLettered+s.Pending != s.Produced || s.PendingHandled > s.Pending {
		t.Errorf("summary does not add up: produced %d, handled %d, dead-lettered %d, lost %d, pending %d (%d handled)",
			s.Produced, s.Handled, s.DeadLettered, s.Lost, s.Pending, s.PendingHandled)
	}
}
