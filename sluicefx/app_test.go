package sluicefx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sluicefx"
	"github.com/sluice-go/sluice/stages"
	"github.com/sluice-go/sluice/tracing"
)

// order is what the test app consumes. Qty 0 is filtered out, Poison is
// rejected for good by the downstream, Flaky fails its first attempt.
type order struct {
	N      int  `json:"n"`
	Qty    int  `json:"qty"`
	Poison bool `json:"poison"`
	Flaky  bool `json:"flaky"`
}

type mode int

const (
	up      mode = iota
	blocked      // calls wait until released
	down         // calls fail with a transient error
)

var errDown = errors.New("downstream: 503")

// downstream is the service behind the sink, switched by the test.
type downstream struct {
	mu      sync.Mutex
	mode    mode
	release chan struct{} // closed to release blocked calls
	tries   map[int]int   // attempts per order

	entered chan struct{} // told when a call blocks
}

func newDownstream() *downstream {
	return &downstream{tries: map[int]int{}, release: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (d *downstream) set(m mode) {
	d.mu.Lock()
	if d.mode == blocked && m != blocked {
		close(d.release)
		d.release = make(chan struct{})
	}
	d.mode = m
	d.mu.Unlock()
}

func (d *downstream) call(ctx context.Context, m pipeline.Message[order]) error {
	o := m.Value()
	d.mu.Lock()
	md, release := d.mode, d.release
	d.tries[o.N]++
	tries := d.tries[o.N]
	d.mu.Unlock()
	switch {
	case md == blocked:
		select {
		case d.entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case md == down:
		return errDown
	case o.Poison:
		return pipeline.Permanent(errors.New("downstream: order rejected"))
	case o.Flaky && tries == 1:
		return errors.New("downstream: flaky")
	}
	return nil
}

// breakerProbe tells the test about breaker changes: it keeps the latest
// state and wakes a waiter.
type breakerProbe struct {
	mu      sync.Mutex
	state   handlers.BreakerState
	changed chan struct{}
}

func newBreakerProbe() *breakerProbe { return &breakerProbe{changed: make(chan struct{}, 1)} }

func (b *breakerProbe) OnBreakerState(_ string, _, to handlers.BreakerState) {
	b.mu.Lock()
	b.state = to
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

func (b *breakerProbe) await(t *testing.T, want handlers.BreakerState) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		got := b.state
		b.mu.Unlock()
		if got == want {
			return
		}
		select {
		case <-b.changed:
		case <-timeout:
			t.Fatalf("breaker never became %v (is %v)", want, got)
		}
	}
}

type pipelineParams struct {
	fx.In

	Kit        sluicefx.Kit // metrics, tracer, dead letters, logger
	Downstream *downstream
	Probe      *breakerProbe
}

// newPipeline is the application's pipeline: decode, filter, key-ordered
// fan-out, and a sink behind every guard.
func newPipeline(p pipelineParams) (*pipeline.Pipeline, error) {
	lim, err := backpressure.NewAdaptive(backpressure.InitialLimit(20), backpressure.Window(10*time.Millisecond, 10),
		backpressure.Hooks(p.Kit.LimiterHooks("store")...))
	if err != nil {
		return nil, err
	}
	guarded, err := handlers.Guard(p.Downstream.call, append(p.Kit.Guard("store"), // name, logger, metrics
		handlers.Hooks(p.Probe),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond,
			Budget: handlers.RetryBudget{Unlimited: true}}),
		handlers.Breaker(handlers.BreakerPolicy{Window: time.Second, Buckets: 10, FailureRatio: 0.5, MinRequests: 5,
			OpenTimeout: 300 * time.Millisecond, HalfOpenProbes: 1}),
		handlers.RateLimit(rate.Limit(500), 1),
		handlers.Limiter(lim),
		handlers.Timeout(10*time.Second),
	)...)
	if err != nil {
		return nil, err
	}
	pl := p.Kit.Pipeline(pipeline.DeadLetterBackoff(10*time.Millisecond, 100*time.Millisecond)) // traced dead letters, metrics, logger
	valid := stages.Filter(pipeline.Source(pl, "orders", pipeline.JSON[order]()), "valid", func(o order) bool { return o.Qty > 0 })
	// Key-ordered (the default): the hooks must count a message's records
	// before the fan-out recycles its lease on settle (regression test for
	// a race that made records_handled_total count 0).
	pipeline.Sink(stages.FanOut(valid, "workers", 4), "store", tracing.Sink[order](p.Kit.Tracer, "store")(guarded))
	return pl, pl.Err()
}

// testApp is the fx application under test and what the test reads from it.
type testApp struct {
	app    *fxtest.App
	reg    *prometheus.Registry
	spans  *tracetest.SpanRecorder
	down   *downstream
	probe  *breakerProbe
	server *health.Server
	cons   *consumer.Consumer
	runner *sluicefx.Runner
}

// newTestApp builds the application; log nil means testLogger().
func newTestApp(t *testing.T, cfg sluicefx.Config, log *slog.Logger) *testApp {
	t.Helper()
	if log == nil {
		log = testLogger()
	}
	ta := &testApp{reg: prometheus.NewRegistry(), spans: tracetest.NewSpanRecorder(), down: newDownstream(), probe: newBreakerProbe()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ta.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts := []fx.Option{
		fx.NopLogger,
		fx.Supply(cfg, ta.down, ta.probe),
		fx.Provide(func() trace.TracerProvider { return tp }),
		sluicefx.Logger(log),
		sluicefx.Registry(ta.reg),
		sluicefx.MetricsOptions(metrics.LagInterval(20 * time.Millisecond)),
		sluicefx.Module,
		sluicefx.TracingModule,
		sluicefx.DeadLetterModule,
		sluicefx.Pipeline(newPipeline),
		fx.Populate(&ta.server, &ta.cons, &ta.runner),
	}
	ta.app = fxtest.New(t, opts...)
	return ta
}

func (ta *testApp) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + ta.server.Addr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape reads /metrics over HTTP.
func (ta *testApp) scrape(t *testing.T) metricstest.Snapshot {
	t.Helper()
	code, body := ta.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	s, err := metricstest.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testConfig(kc *kafkatest.Cluster) sluicefx.Config {
	return sluicefx.Config{
		Brokers:           kc.Addrs,
		Group:             "shop",
		CommitInterval:    20 * time.Millisecond,
		StallAfter:        200 * time.Millisecond,
		SessionTimeout:    time.Second,
		RebalanceTimeout:  5 * time.Second,
		DrainTimeout:      4 * time.Second,
		MaxUnsettled:      consumer.Water{Records: 4},
		MaxUnsettledTotal: consumer.Water{Records: 64},
		HTTPAddr:          "127.0.0.1:0",
	}
}

var batchN int

// produce writes n orders spread over the partitions by key; every order
// gets a fresh N.
func produce(t *testing.T, kc *kafkatest.Cluster, n int, mk func(i int) order) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		o := mk(i)
		batchN++
		o.N = batchN
		v, _ := json.Marshal(o)
		recs[i] = &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "k%d", o.N%8), Value: v}
	}
	kc.Produce(t, recs...)
}

// settled waits until the group has committed every record.
func settled(t *testing.T, kc *kafkatest.Cluster) {
	t.Helper()
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		ends, got := kc.EndOffsets(t, "orders"), kc.Committed(t, "shop", "orders")
		for p, end := range ends {
			if end > 0 && got[p] != end {
				return false
			}
		}
		return true
	}, "records not all committed")
}

// TestAppEndToEnd runs the fx application against kfake: a pipeline with a
// filter, a fan-out and a sink behind every guard, a dead-letter
// publisher, metrics, health and tracing. It checks /readyz turns ready
// once the group is joined, and that every metric moves as records flow
// through good times, a blocked downstream, an outage and a rebalance,
// comparing /metrics scrapes taken between the phases.
func TestAppEndToEnd(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 4), kafkatest.Topic("orders.dlq", 4))
	ta := newTestApp(t, testConfig(kc), nil)

	// Before the start, the consumer is not running: not ready.
	rec := httptest.NewRecorder()
	ta.server.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not running") {
		t.Fatalf("/readyz before start: %d\n%s", rec.Code, rec.Body)
	}
	boot, err := metricstest.Take(ta.reg)
	if err != nil {
		t.Fatal(err)
	}

	ta.app.RequireStart()
	kafkatest.Eventually(t, 20*time.Second, func() bool { code, _ := ta.get(t, "/readyz"); return code == http.StatusOK },
		"/readyz never ready")
	if st := ta.cons.Status(); !st.Joined {
		t.Fatalf("ready before joining: %+v", st)
	}
	if code, body := ta.get(t, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	s0 := ta.scrape(t)

	// Good times: valid orders, some filtered, a poison one, flaky ones;
	// the first dead-letter write fails.
	failDeadLetterOnce(t, kc, "orders.dlq")
	produce(t, kc, 40, func(i int) order {
		qty := 1
		if i%10 == 9 {
			qty = 0
		}
		return order{Qty: qty, Poison: i == 5, Flaky: i%7 == 3}
	})
	settled(t, kc)
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		return ta.scrape(t).Total(metrics.ConsumerLag) == 0 && ta.scrape(t).Has(metrics.ConsumerLag)
	},
		"lag not refreshed to 0")
	s1 := ta.scrape(t)

	// The downstream blocks: work piles up, partitions pause and stall, the
	// lag grows; the consumer stays ready and says which partitions stall.
	ta.down.set(blocked)
	produce(t, kc, 60, func(int) order { return order{Qty: 1} })
	select {
	case <-ta.down.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no call reached the blocked downstream")
	}
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		st := ta.cons.Status()
		return len(st.Paused) > 0 && len(st.Stalled) > 0
	}, "never paused and stalled: %+v", kafkatest.Lazy(func() any { return ta.cons.Status() }))
	kafkatest.Eventually(t, 10*time.Second, func() bool { return ta.scrape(t).Total(metrics.ConsumerLag) > 0 }, "lag not refreshed")
	code, body := ta.get(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, "stalled (") || strings.Contains(body, "stalled (0)") {
		t.Fatalf("/readyz while stalled: %d\n%s", code, body)
	}
	s2 := ta.scrape(t)

	// Outage: blocked calls are released and the downstream fails; retries,
	// then the breaker opens and the records wait.
	ta.down.set(down)
	ta.probe.await(t, handlers.BreakerOpen)
	s3 := ta.scrape(t)

	// Recovery: the breaker's probe succeeds, everything settles.
	ta.down.set(up)
	produce(t, kc, 8, func(int) order { return order{Qty: 1} })
	ta.probe.await(t, handlers.BreakerClosed)
	settled(t, kc)
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		s := ta.scrape(t)
		return s.Total(metrics.ConsumerLag) == 0 && s.Total(metrics.PartitionsStalled) == 0 && s.Total(metrics.PartitionsPaused) == 0
	}, "not back to normal")
	s4 := ta.scrape(t)

	// Rebalance: a second member joins and takes partitions; the first
	// drains and commits the revoked ones.
	other := startMember(t, kc)
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		return ta.scrape(t).Value(metrics.Rebalances, "kind", metrics.KindRevoked) > s4.Value(metrics.Rebalances, "kind", metrics.KindRevoked)
	}, "no revoke after a member joined")
	s5 := ta.scrape(t)
	other()

	ta.app.RequireStop()
	settled(t, kc)

	// Every metric is exported, but those of share mode (see
	// TestAppShareMode).
	for _, name := range metrics.Names() {
		if name == metrics.ShareAcks || name == metrics.ShareAckErrors {
			continue
		}
		if !s5.Has(name) {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	for _, name := range []string{"sluice_kafka_connects_total", "sluice_kafka_fetch_records_total", "sluice_kafka_produce_records_total"} {
		if !s5.Has(name) {
			t.Errorf("franz-go client metric %s missing", name)
		}
	}

	// And each moves.
	type check struct {
		name string
		ok   bool
		got  string
	}
	sp := func(s metricstest.Snapshot, name string, labels ...string) float64 { return s.Total(name, labels...) }
	show := func(vs ...float64) string { return fmt.Sprint(vs) }
	store := []string{"sink", "store"}
	stage := func(st, outcome string) []string { return []string{"stage", st, "outcome", outcome} }
	var checks []check
	add := func(name string, ok bool, vs ...float64) { checks = append(checks, check{name, ok, show(vs...)}) }
	moved := func(name string, before, after metricstest.Snapshot, labels ...string) {
		add(name+fmt.Sprint(labels), sp(after, name, labels...) > sp(before, name, labels...), sp(before, name, labels...), sp(after, name, labels...))
	}
	moved(metrics.RecordsConsumed, s0, s1)
	moved(metrics.BytesConsumed, s0, s1)
	moved(metrics.RecordsHandled, s0, s1, stage("store", "ok")...)
	moved(metrics.RecordsHandled, s0, s1, stage("store", "dead_lettered")...)
	moved(metrics.RecordsHandled, s0, s1, stage("valid", "filtered")...)
	moved(metrics.HandleDuration+"_count", s0, s1, "stage", "store")
	moved(metrics.HandleDuration+"_sum", s0, s1, "stage", "store")
	moved(metrics.Retries, s0, s1, store...) // flaky orders
	moved(metrics.Retries, s2, s3, store...) // outage
	moved(metrics.SinkOutcomes, s0, s1, "sink", "store", "outcome", metrics.OutcomeRetried)
	moved(metrics.SinkOutcomes, s0, s1, "sink", "store", "outcome", pipeline.ClassPermanent)
	moved(metrics.SinkAttempts, s0, s1, "sink", "store", "result", "error")
	moved(metrics.SinkAttemptDuration+"_count", s0, s1, store...)
	moved(metrics.DeadLetters, s0, s1, "stage", "store", "reason", pipeline.ClassPermanent)
	moved(metrics.DeadLetterWriteDuration+"_count", s0, s1, "topic", "orders.dlq", "result", "ok")
	moved(metrics.DeadLetterWriteDuration+"_count", s0, s1, "topic", "orders.dlq", "result", "error")
	moved(metrics.DeadLetterErrors, s0, s1, "stage", "store")
	moved(metrics.RateLimitWait+"_count", s0, s1, store...)
	moved(metrics.RateLimitWait+"_sum", s0, s1, store...)
	moved(metrics.BreakerTransitions, s2, s3, "sink", "store", "state", "open")
	moved(metrics.BreakerTransitions, s3, s4, "sink", "store", "state", "closed")
	add("breaker_state open, then closed", sp(s3, metrics.BreakerState, store...) > 0 && sp(s4, metrics.BreakerState, store...) == 0,
		sp(s3, metrics.BreakerState, store...), sp(s4, metrics.BreakerState, store...))
	add("in flight while blocked, none after", sp(s2, metrics.ConcurrencyInFlight, store...) >= 1 && sp(s1, metrics.ConcurrencyInFlight, store...) == 0 && sp(s4, metrics.ConcurrencyInFlight, store...) == 0,
		sp(s1, metrics.ConcurrencyInFlight, store...), sp(s2, metrics.ConcurrencyInFlight, store...), sp(s4, metrics.ConcurrencyInFlight, store...))
	limits := map[float64]bool{}
	for _, s := range []metricstest.Snapshot{boot, s0, s1, s2, s3, s4, s5} {
		limits[sp(s, metrics.ConcurrencyLimit, store...)] = true
	}
	add("concurrency limit adapted", len(limits) > 1, float64(len(limits)))
	add("paused while blocked", sp(s2, metrics.PartitionsPaused) >= 1 && sp(s1, metrics.PartitionsPaused) == 0 && sp(s4, metrics.PartitionsPaused) == 0,
		sp(s1, metrics.PartitionsPaused), sp(s2, metrics.PartitionsPaused), sp(s4, metrics.PartitionsPaused))
	add("stalled while blocked", sp(s2, metrics.PartitionsStalled) >= 1 && sp(s1, metrics.PartitionsStalled) == 0 && sp(s4, metrics.PartitionsStalled) == 0,
		sp(s1, metrics.PartitionsStalled), sp(s2, metrics.PartitionsStalled), sp(s4, metrics.PartitionsStalled))
	add("lag grew while blocked", sp(s2, metrics.ConsumerLag) > 0 && sp(s1, metrics.ConsumerLag) == 0 && sp(s4, metrics.ConsumerLag) == 0,
		sp(s1, metrics.ConsumerLag), sp(s2, metrics.ConsumerLag), sp(s4, metrics.ConsumerLag))
	moved(metrics.CommittedOffset, s0, s1)
	moved(metrics.CommittedOffset, s2, s4)
	moved(metrics.Rebalances, boot, s0, "kind", metrics.KindAssigned)
	moved(metrics.Rebalances, s4, s5, "kind", metrics.KindRevoked)
	moved(metrics.RebalanceDrain+"_count", s4, s5)
	add("assigned partitions", sp(s0, metrics.PartitionsAssigned) == 4 && sp(s5, metrics.PartitionsAssigned) < 4,
		sp(s0, metrics.PartitionsAssigned), sp(s5, metrics.PartitionsAssigned))
	moved("sluice_kafka_fetch_records_total", s0, s1, "client", "consumer")
	moved("sluice_kafka_produce_records_total", s0, s1, "client", "dlq")
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s did not move as expected: %s", c.name, c.got)
		}
	}

	// The registry passes the Prometheus linter (but for kprom's own two
	// gauges named ..._total).
	problems, err := testutil.GatherAndLint(ta.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if p.Metric != "sluice_kafka_buffered_fetch_records_total" && p.Metric != "sluice_kafka_buffered_produce_records_total" {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	// Sinks ran in spans.
	if n := len(ta.spans.Ended()); n == 0 {
		t.Error("no spans")
	}
}

// failDeadLetterOnce makes the broker refuse the next produce request to
// topic (not authorized), so that one dead-letter write fails and is
// retried by the pipeline.
func failDeadLetterOnce(t *testing.T, kc *kafkatest.Cluster, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := kadm.NewClient(kc.Client(t)).ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, td[topic].Err)
	}
	id := td[topic].ID
	kc.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			if rt.Topic != topic && rt.TopicID != id {
				return nil, nil, false // not ours: handled as usual, control kept
			}
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// startMember runs a second member of the group that settles everything,
// and returns its stop.
func startMember(t *testing.T, kc *kafkatest.Cluster) func() {
	t.Helper()
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("shop"), consumer.Handle(settleAll{}), consumer.SessionTimeout(time.Second), consumer.RebalanceTimeout(5*time.Second),
		consumer.DrainTimeout(4*time.Second), consumer.CommitInterval(20*time.Millisecond), consumer.Logger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- c.Run(context.Background()) }()
	return func() {
		c.Close()
		if err := <-ran; err != nil {
			t.Errorf("second member: %v", err)
		}
	}
}

// settleAll settles every record at once.
type settleAll struct{}

func (settleAll) Topics() []string { return []string{"orders"} }

func (settleAll) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return settleAll{}, nil
}

func (settleAll) Handle(_ context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		r.Settle()
	}
	return nil
}

func (settleAll) Close() {}
