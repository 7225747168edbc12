package metrics_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var orders0 = pipeline.TopicPartition{Topic: "orders", Partition: 0}

var quiet = slog.New(slog.DiscardHandler)

func newMetrics(t testing.TB, opts ...metrics.Opt) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg, append([]metrics.Opt{metrics.Logger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func snapshot(t *testing.T, g prometheus.Gatherer) metricstest.Snapshot {
	t.Helper()
	s, err := metricstest.Take(g)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exercise calls every hook once, with values the tests below check.
func exercise(m *metrics.Metrics) {
	m.OnAssigned([]pipeline.TopicPartition{orders0, {Topic: "orders", Partition: 1}})
	m.OnFetched(orders0, 10, 1000)
	m.OnFetchError(orders0, errors.New("unknown topic"))
	m.OnShareAcked(orders0, consumer.ShareAccept, 4)
	m.OnShareAcked(orders0, consumer.ShareRelease, 1)
	m.OnShareAckError(orders0, errors.New("invalid record state"))
	m.OnPaused(orders0, true)
	m.OnCommitted(orders0, 42, nil)
	m.OnCommitted(orders0, 43, errors.New("coordinator moved"))
	m.OnMalformedDeadline(orders0, 7)
	m.OnAuthError(&consumer.AuthError{Kind: consumer.AuthSASL, Err: errors.New("SASL_AUTHENTICATION_FAILED")})
	m.OnHandled("store", pipeline.OutcomeOK, 3, 20*time.Millisecond)
	m.OnHandled("valid", pipeline.OutcomeFiltered, 2, 0)
	m.OnHandled("store", pipeline.OutcomeDeadLettered, 1, time.Millisecond)
	m.OnDeadLetter("store", pipeline.ClassPermanent, 1)
	m.OnDeadLetterError("store", errors.New("dlq down"))
	m.OnSinkRetry("store", 1, errors.New("db down"))
	m.OnDeadLetterWritten(dlq.WriteInfo{Topic: "orders.dlq", Latency: 3 * time.Millisecond})
	m.OnDeadLetterWriteFailed(dlq.WriteInfo{Topic: "orders.dlq", Latency: time.Second}, errors.New("dlq down"))
	m.OnAttempt("store", 5*time.Millisecond, nil)
	m.OnAttempt("store", 7*time.Millisecond, errors.New("503"))
	m.OnRetry("store", 1, 10*time.Millisecond, errors.New("503"))
	m.OnOutcome("store", handlers.OutcomeOK, 1, 5*time.Millisecond)
	m.OnOutcome("store", handlers.OutcomeOK, 2, 20*time.Millisecond)
	m.OnOutcome("store", pipeline.ClassExhausted, 5, time.Second)
	m.OnBreakerState("store", handlers.BreakerClosed, handlers.BreakerOpen)
	m.OnRateWait("store", 4*time.Millisecond)
	lo := m.Limiter("store")
	lo.(backpressure.HookLimit).OnLimit(16)
	lo.(backpressure.HookInFlight).OnInFlight(3)
	m.OnRevoked([]pipeline.TopicPartition{{Topic: "orders", Partition: 1}}, 250*time.Millisecond, true)
	m.OnLost(nil)
}

func TestHooksSetMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	exercise(m)
	s := snapshot(t, reg)
	for _, tt := range []struct {
		give string // series key
		want float64
	}{
		{metricstest.Key(metrics.RecordsConsumed, "topic", "orders", "partition", "0"), 10},
		{metricstest.Key(metrics.BytesConsumed, "topic", "orders", "partition", "0"), 1000},
		{metricstest.Key(metrics.FetchErrors, "topic", "orders", "partition", "0"), 1},
		{metrics.PartitionsAssigned, 1},
		{metrics.PartitionsPaused, 1},
		{metricstest.Key(metrics.CommittedOffset, "topic", "orders", "partition", "0"), 42},
		{metricstest.Key(metrics.CommitErrors, "topic", "orders", "partition", "0"), 1},
		{metricstest.Key(metrics.Rebalances, "kind", metrics.KindAssigned), 1},
		{metricstest.Key(metrics.Rebalances, "kind", metrics.KindRevoked), 1},
		{metricstest.Key(metrics.Rebalances, "kind", metrics.KindLost), 1},
		{metrics.RebalanceDrain + "_count", 1},
		{metrics.RebalanceDrain + "_sum", 0.25},
		{metrics.RebalanceDrainTimeouts, 1},
		{metricstest.Key(metrics.ShareAcks, "topic", "orders", "kind", consumer.ShareAccept), 4},
		{metricstest.Key(metrics.ShareAcks, "topic", "orders", "kind", consumer.ShareRelease), 1},
		{metricstest.Key(metrics.ShareAcks, "topic", "orders", "kind", consumer.ShareReject), 0},
		{metricstest.Key(metrics.ShareAckErrors, "topic", "orders"), 1},
		{metricstest.Key(metrics.RecordsHandled, "stage", "store", "outcome", "ok"), 3},
		{metricstest.Key(metrics.RecordsHandled, "stage", "valid", "outcome", "filtered"), 2},
		{metricstest.Key(metrics.RecordsHandled, "stage", "store", "outcome", "dead_lettered"), 1},
		{metricstest.Key(metrics.HandleDuration+"_count", "stage", "store"), 2},
		{metricstest.Key(metrics.HandleDuration+"_count", "stage", "valid"), 0}, // stages are not timed
		{metricstest.Key(metrics.DeadLetters, "stage", "store", "reason", "permanent"), 1},
		{metricstest.Key(metrics.DeadLetterErrors, "stage", "store"), 1},
		{metricstest.Key(metrics.StageRetries, "stage", "store"), 1},
		{metricstest.Key(metrics.DeadLetterWriteDuration+"_count", "topic", "orders.dlq", "result", "ok"), 1},
		{metricstest.Key(metrics.DeadLetterWriteDuration+"_count", "topic", "orders.dlq", "result", "error"), 1},
		{metricstest.Key(metrics.SinkAttempts, "sink", "store", "result", "ok"), 1},
		{metricstest.Key(metrics.SinkAttempts, "sink", "store", "result", "error"), 1},
		{metricstest.Key(metrics.SinkAttemptDuration+"_count", "sink", "store"), 2},
		{metricstest.Key(metrics.Retries, "sink", "store"), 1},
		{metricstest.Key(metrics.SinkOutcomes, "sink", "store", "outcome", "ok"), 1},
		{metricstest.Key(metrics.SinkOutcomes, "sink", "store", "outcome", metrics.OutcomeRetried), 1},
		{metricstest.Key(metrics.SinkOutcomes, "sink", "store", "outcome", "exhausted"), 1},
		{metricstest.Key(metrics.BreakerState, "sink", "store"), 2},
		{metricstest.Key(metrics.BreakerTransitions, "sink", "store", "state", "open"), 1},
		{metricstest.Key(metrics.RateLimitWait+"_count", "sink", "store"), 1},
		{metricstest.Key(metrics.ConcurrencyLimit, "sink", "store"), 16},
		{metricstest.Key(metrics.ConcurrencyInFlight, "sink", "store"), 3},
	} {
		if got := s[tt.give]; got != tt.want {
			t.Errorf("%s = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestBreakerStateEncoding(t *testing.T) {
	for _, tt := range []struct {
		give handlers.BreakerState
		want float64
	}{
		{handlers.BreakerClosed, 0},
		{handlers.BreakerHalfOpen, 1},
		{handlers.BreakerOpen, 2},
	} {
		m, reg := newMetrics(t)
		m.OnBreakerState("s", handlers.BreakerClosed, tt.give)
		if got := snapshot(t, reg).Value(metrics.BreakerState, "sink", "s"); got != tt.want {
			t.Errorf("%v: gauge %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestRevokedPartitionsLeaveNoGauges: a revoked or lost partition's
// committed offset is no longer exported, it no longer counts as paused
// (the consumer resumes it without telling the hook), and a commit that
// lands after a loss does not bring it back.
func TestRevokedPartitionsLeaveNoGauges(t *testing.T) {
	m, reg := newMetrics(t)
	p1 := pipeline.TopicPartition{Topic: "orders", Partition: 1}
	m.OnAssigned([]pipeline.TopicPartition{orders0, p1})
	m.OnPaused(orders0, true)
	m.OnPaused(p1, true)
	m.OnCommitted(orders0, 5, nil)
	m.OnCommitted(p1, 7, nil)
	m.OnRevoked([]pipeline.TopicPartition{orders0}, time.Millisecond, false)
	m.OnLost([]pipeline.TopicPartition{p1})
	m.OnCommitted(p1, 8, nil) // in flight when the partition was lost
	s := snapshot(t, reg)
	if got := s.Series(metrics.CommittedOffset); len(got) != 0 {
		t.Errorf("committed offsets still exported: %v", got)
	}
	if s[metrics.PartitionsPaused] != 0 || s[metrics.PartitionsAssigned] != 0 {
		t.Errorf("paused %v, assigned %v, want 0 and 0", s[metrics.PartitionsPaused], s[metrics.PartitionsAssigned])
	}
	m.OnAssigned([]pipeline.TopicPartition{p1})
	m.OnCommitted(p1, 9, nil)
	if got := snapshot(t, reg).Value(metrics.CommittedOffset, "topic", "orders", "partition", "1"); got != 9 {
		t.Errorf("after reassignment, committed offset %v, want 9", got)
	}
}

// TestLint runs the Prometheus linter over every metric, the franz-go
// client metrics included.
func TestLint(t *testing.T) {
	m, reg := newMetrics(t)
	exercise(m)
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	cl := kc.Client(t, m.KafkaClient("consumer")) // registers the kprom metrics
	if err := cl.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if knownKpromProblem(p.Metric) {
			continue
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	s := snapshot(t, reg)
	for _, name := range metrics.Names() {
		if name == metrics.PartitionsStalled || name == metrics.ConsumerLag {
			continue // only with Watch; see TestLag
		}
		if !s.Has(name) {
			t.Errorf("%s not exported", name)
		}
	}
	if !s.Has(metrics.KafkaNamespace + "_connects_total") {
		t.Errorf("no franz-go client metrics: %v", s.Families())
	}
}

// knownKpromProblem reports the two lint problems of plugin/kprom v1.5.0
// itself: gauges named ..._total.
func knownKpromProblem(metric string) bool {
	return metric == metrics.KafkaNamespace+"_buffered_produce_records_total" ||
		metric == metrics.KafkaNamespace+"_buffered_fetch_records_total"
}

// TestNothingOnDefaultRegistry: creating metrics, instrumenting clients,
// watching a consumer and scraping register nothing on the default
// registry.
func TestNothingOnDefaultRegistry(t *testing.T) {
	before := snapshot(t, prometheus.DefaultGatherer).Families()
	m, reg := newMetrics(t)
	exercise(m)
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("g"), consumer.Handle(nopHandler{}), consumer.Hooks(m), consumer.ClientOpts(m.KafkaClient("consumer")), consumer.Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer m.Watch(c)()
	snapshot(t, reg)
	after := snapshot(t, prometheus.DefaultGatherer).Families()
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("default registry changed:\nbefore %v\nafter  %v", before, after)
	}
	for _, f := range after {
		if strings.HasPrefix(f, "sluice") {
			t.Errorf("%s on the default registry", f)
		}
	}
}

type nopHandler struct{}

func (nopHandler) Topics() []string { return []string{"orders"} }

func (nopHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return nil, errors.New("unused")
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		reg  prometheus.Registerer
		opts []metrics.Opt
		want string // field
	}{
		{"no registry", nil, nil, "reg"},
		{"no buckets", prometheus.NewRegistry(), []metrics.Opt{metrics.Buckets()}, "Buckets"},
		{"unsorted buckets", prometheus.NewRegistry(), []metrics.Opt{metrics.Buckets(1, 0.5)}, "Buckets"},
		{"repeated bucket", prometheus.NewRegistry(), []metrics.Opt{metrics.Buckets(1, 1)}, "Buckets"},
		{"zero lag timeout", prometheus.NewRegistry(), []metrics.Opt{metrics.LagTimeout(0)}, "LagTimeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := metrics.New(tt.reg, tt.opts...)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Package != "metrics" || ce.Option != tt.want || !errors.Is(err, sluice.ErrConfig) {
				t.Fatalf("got %v, want a ConfigError naming %s", err, tt.want)
			}
		})
	}
}

// TestConflictLeavesOthersMetrics: when a name is taken, New fails and
// leaves the registry as it found it, the other owner's metric included.
func TestConflictLeavesOthersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	theirs := prometheus.NewGauge(prometheus.GaugeOpts{Name: metrics.PartitionsPaused, Help: "someone else's"})
	reg.MustRegister(theirs)
	theirs.Set(7)
	if _, err := metrics.New(reg); err == nil {
		t.Fatal("New registered over an existing metric")
	}
	s := snapshot(t, reg)
	if got := s.Families(); len(got) != 1 || s[metrics.PartitionsPaused] != 7 {
		t.Fatalf("registry after a failed New: %v", s)
	}
	// A second Metrics on one registry fails and leaves the first whole.
	m, reg2 := newMetrics(t)
	m.OnAssigned([]pipeline.TopicPartition{orders0})
	if _, err := metrics.New(reg2); err == nil {
		t.Fatal("two Metrics registered on one registry")
	}
	if got := snapshot(t, reg2)[metrics.PartitionsAssigned]; got != 1 {
		t.Fatalf("first Metrics lost its gauge: %v", got)
	}
}

// TestKafkaClientRoles: two clients with one role do not panic, and closing
// the second keeps the first one's metrics.
func TestKafkaClientRoles(t *testing.T) {
	m, reg := newMetrics(t)
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	first := kc.Client(t, m.KafkaClient("consumer"))
	if err := first.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	second, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs...), m.KafkaClient("consumer"))
	if err != nil {
		t.Fatal(err)
	}
	second.Close()
	s := snapshot(t, reg)
	if s.Total(metrics.KafkaNamespace+"_connects_total", "client", "consumer") == 0 {
		t.Fatalf("first client's metrics gone: %v", s.Families())
	}
	dlqClient := kc.Client(t, m.KafkaClient("dlq"))
	if err := dlqClient.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if snapshot(t, reg).Total(metrics.KafkaNamespace+"_connects_total", "client", "dlq") == 0 {
		t.Fatal("no metrics for the dlq client")
	}
}

// fakeSource is a consumer owning some partitions, with a client of the
// group.
type fakeSource struct {
	cl *kgo.Client
	mu sync.Mutex
	st consumer.Status
}

func (f *fakeSource) Status() consumer.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeSource) Client() *kgo.Client { return f.cl }

func (f *fakeSource) setRunning(running bool) {
	f.mu.Lock()
	f.st.Running = running
	f.mu.Unlock()
}

// TestLag computes the lag with kadm: end offset minus the committed
// offset, or minus the log start when nothing is committed.
func TestLag(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 2))
	kc.ProduceWith(t, []kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, records(10)...)
	adm := kadm.NewClient(kc.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	commit := kadm.Offsets{}
	commit.AddOffset("orders", 0, 2, -1)
	if err := adm.CommitAllOffsets(ctx, "g", commit); err != nil {
		t.Fatal(err)
	}
	m, reg := newMetrics(t, metrics.LagInterval(10*time.Millisecond))
	src := &fakeSource{
		cl: kc.Client(t, kgo.ConsumerGroup("g")),
		st: consumer.Status{Running: true, Joined: true,
			Assigned: []pipeline.TopicPartition{orders0, {Topic: "orders", Partition: 1}},
			Stalled:  []pipeline.TopicPartition{orders0}},
	}
	stop := m.Watch(src)
	defer stop()
	lag := func(p string) func() float64 {
		return func() float64 { return snapshot(t, reg).Value(metrics.ConsumerLag, "topic", "orders", "partition", p) }
	}
	// 5 records in each partition; 2 committed in partition 0, none in 1.
	kafkatest.Eventually(t, 10*time.Second, func() bool { return lag("0")() == 3 && lag("1")() == 5 },
		"lag %v and %v, want 3 and 5", kafkatest.Lazy(func() any { return lag("0")() }), kafkatest.Lazy(func() any { return lag("1")() }))
	s := snapshot(t, reg)
	if s[metrics.PartitionsStalled] != 1 || s[metrics.LagErrors] != 0 {
		t.Errorf("stalled %v, lag errors %v", s[metrics.PartitionsStalled], s[metrics.LagErrors])
	}
	src.setRunning(false)
	kafkatest.Eventually(t, 10*time.Second, func() bool { return !snapshot(t, reg).Has(metrics.ConsumerLag) },
		"lag of a stopped consumer still exported")
	stop()
	if s := snapshot(t, reg); s.Has(metrics.PartitionsStalled) {
		t.Error("stalled partitions exported after stop")
	}
}

// records makes n records, alternating between partitions 0 and 1.
func records(n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "orders", Partition: int32(i % 2), Value: []byte("v")}
	}
	return recs
}

// TestLagRefreshNeverDelaysScrapes: with a broker that never answers, a
// scrape returns at once without the lag, and the failed refresh is
// counted.
func TestLagRefreshNeverDelaysScrapes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() { // a black hole: accepts and never answers
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(ln.Addr().String()), kgo.ConsumerGroup("g"),
		// franz-go bounds connection set-up by these, not by the request context.
		kgo.DialTimeout(300*time.Millisecond), kgo.RequestTimeoutOverhead(300*time.Millisecond), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m, reg := newMetrics(t, metrics.LagTimeout(100*time.Millisecond), metrics.LagInterval(time.Hour))
	stop := m.Watch(&fakeSource{cl: cl, st: consumer.Status{Running: true, Assigned: []pipeline.TopicPartition{orders0}}})
	defer stop()
	start := time.Now()
	s := snapshot(t, reg)
	if took := time.Since(start); took > time.Second {
		t.Errorf("scrape took %v while a refresh hangs", took)
	}
	if s.Has(metrics.ConsumerLag) {
		t.Errorf("lag exported: %v", s.Series(metrics.ConsumerLag))
	}
	kafkatest.Eventually(t, 10*time.Second, func() bool { return snapshot(t, reg)[metrics.LagErrors] == 1 },
		"failed refresh not counted")
}

// TestLimiterHooks plugs the limiter's hook into a real limiter.
func TestLimiterHooks(t *testing.T) {
	m, reg := newMetrics(t)
	l, err := backpressure.NewFixed(4, backpressure.Hooks(m.Limiter("store")))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := snapshot(t, reg)
	if s.Value(metrics.ConcurrencyLimit, "sink", "store") != 4 || s.Value(metrics.ConcurrencyInFlight, "sink", "store") != 1 {
		t.Fatalf("limit %v, in flight %v", s.Value(metrics.ConcurrencyLimit, "sink", "store"), s.Value(metrics.ConcurrencyInFlight, "sink", "store"))
	}
	l.Release(time.Millisecond, backpressure.Success)
	if got := snapshot(t, reg).Value(metrics.ConcurrencyInFlight, "sink", "store"); got != 0 {
		t.Fatalf("in flight after release: %v", got)
	}
}

// A sink's retry counter exists, at zero, from its first message (so that
// rate() and alerts on it work before the first retry); a stage, which
// never retries, has none.
func TestSinkRetriesStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.OnHandled("valid", pipeline.OutcomeOK, 1, 0)                // a stage: no latency
	m.OnHandled("store", pipeline.OutcomeOK, 1, time.Millisecond) // a sink
	s := snapshot(t, reg)
	if got := s.Series(metrics.StageRetries); len(got) != 1 || s.Value(metrics.StageRetries, "stage", "store") != 0 {
		t.Fatalf("%s series %v, want one for the sink, at zero", metrics.StageRetries, got)
	}
	m.OnSinkRetry("store", 1, errors.New("down"))
	if got := snapshot(t, reg).Value(metrics.StageRetries, "stage", "store"); got != 1 {
		t.Fatalf("after a retry: %v", got)
	}
}
