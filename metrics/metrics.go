package metrics

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
)

// DefaultBuckets are the histogram buckets of the duration metrics, in
// seconds: from 1ms, where a fast sink answers, to 60s, where retries of a
// slow one end up.
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Defaults of the lag refresh (see Watch).
const (
	// DefaultLagInterval is how often the lag is refreshed.
	DefaultLagInterval = 15 * time.Second
	// DefaultLagTimeout bounds one refresh.
	DefaultLagTimeout = 5 * time.Second
)

// Opt configures New.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type cfg struct {
	buckets     []float64
	lagInterval time.Duration
	lagTimeout  time.Duration
	logger      *slog.Logger
}

// Buckets replaces DefaultBuckets for every duration histogram. The values
// are in seconds and must increase. More buckets give finer quantiles at the
// cost of one series per bucket and label set.
func Buckets(b ...float64) Opt {
	return optFunc(func(c *cfg) { c.buckets = slices.Clone(b) })
}

// LagInterval sets how often a watched consumer's lag is refreshed (see
// Watch), overriding DefaultLagInterval (15s, a common scrape interval).
// Shorter is fresher and costs two or three admin requests per refresh.
func LagInterval(d time.Duration) Opt { return optFunc(func(c *cfg) { c.lagInterval = d }) }

// LagTimeout bounds one lag refresh, overriding DefaultLagTimeout (5s).
// A refresh that fails or times out drops the lag until the next one
// succeeds and counts sluice_consumer_lag_errors_total. franz-go does not
// always stop dialing a broker when the context ends, so a refresh against
// an unreachable broker can take up to the client's dial timeout; scrapes
// never wait for it.
func LagTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.lagTimeout = d }) }

// Logger sets where failures to compute the lag or to register client
// metrics are logged (warnings; lag failures at most once a minute).
// Default (nil): slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *cfg) { c.logger = l }) }

// Metrics is the Prometheus instrumentation of a Sluice consumer. It
// implements the hook interfaces of packages consumer, pipeline, handlers
// and dlq; pass the same value to each of them. Limiter gives observers for
// backpressure limiters, KafkaClient instruments franz-go clients, and Watch
// adds the metrics read from a running consumer (lag, stalled partitions).
// It is safe for concurrent use.
type Metrics struct {
	reg      *registerer
	log      *slog.Logger
	lagEvery time.Duration
	lagTTL   time.Duration

	// consumer
	consumed      *prometheus.CounterVec
	consumedBytes *prometheus.CounterVec
	fetchErrors   *prometheus.CounterVec
	authErrors    *prometheus.CounterVec
	badDeadlines  prometheus.Counter
	assigned      prometheus.Gauge
	paused        prometheus.Gauge
	committed     *prometheus.GaugeVec
	commitErrors  *prometheus.CounterVec
	rebalances    *prometheus.CounterVec
	drain         prometheus.Histogram
	drainTimeouts prometheus.Counter
	lagErrors     prometheus.Counter
	shareAcks     *prometheus.CounterVec
	shareAckErrs  *prometheus.CounterVec
	watch         *watcher
	partsMu       sync.Mutex
	// owned and pausedP are the partitions assigned and paused; gone are
	// partitions revoked or lost and not assigned again since.
	owned, pausedP, gone map[partitionKey]bool

	// pipeline
	handled       *prometheus.CounterVec
	handleSeconds *prometheus.HistogramVec
	deadLetters   *prometheus.CounterVec
	deadErrors    *prometheus.CounterVec
	stageRetries  *prometheus.CounterVec

	// dlq
	dlqWrite *prometheus.HistogramVec

	// handlers
	attempts        *prometheus.CounterVec
	attemptSeconds  *prometheus.HistogramVec
	outcomes        *prometheus.CounterVec
	retries         *prometheus.CounterVec
	breaker         *prometheus.GaugeVec
	breakerSwitches *prometheus.CounterVec
	rateWait        *prometheus.HistogramVec

	// backpressure
	limit    *prometheus.GaugeVec
	inFlight *prometheus.GaugeVec

	// children of the vecs above that hooks update for every record
	sinks       cow[string, *sinkSeries]
	stages      cow[string, *stageSeries]
	partitions  cow[partitionKey, *partitionSeries]
	shareSeries cow[shareKey, prometheus.Counter]
}

type partitionKey struct {
	topic     string
	partition int32
}

// New creates the metrics and registers them on reg; nothing is ever
// registered on prometheus.DefaultRegisterer unless reg is it. Registration
// errors (a metric of the same name already registered by someone else, or
// a second Metrics on the same registry) are returned; use
// prometheus.WrapRegistererWith to give each of several consumers in one
// process a distinguishing label.
func New(reg prometheus.Registerer, opts ...Opt) (*Metrics, error) {
	c := cfg{buckets: DefaultBuckets, lagInterval: DefaultLagInterval, lagTimeout: DefaultLagTimeout}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	switch {
	case reg == nil:
		return nil, &sluice.ConfigError{Package: "metrics", Option: "reg", Reason: "a prometheus.Registerer is required"}
	case len(c.buckets) == 0:
		return nil, &sluice.ConfigError{Package: "metrics", Option: "Buckets", Reason: "at least one bucket is required"}
	case !slices.IsSorted(c.buckets) || len(slices.Compact(slices.Clone(c.buckets))) != len(c.buckets):
		return nil, &sluice.ConfigError{Package: "metrics", Option: "Buckets", Value: c.buckets, Reason: "must increase"}
	case c.lagInterval <= 0:
		return nil, &sluice.ConfigError{Package: "metrics", Option: "LagInterval", Value: c.lagInterval, Reason: "must be positive"}
	case c.lagTimeout <= 0:
		return nil, &sluice.ConfigError{Package: "metrics", Option: "LagTimeout", Value: c.lagTimeout, Reason: "must be positive"}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	m := &Metrics{
		reg:      &registerer{Registerer: reg, log: c.logger},
		log:      c.logger,
		lagEvery: c.lagInterval,
		lagTTL:   c.lagTimeout,
		owned:    map[partitionKey]bool{},
		pausedP:  map[partitionKey]bool{},
		gone:     map[partitionKey]bool{},
	}
	tp := []string{LabelTopic, LabelPartition}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	histVec := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: c.buckets}, labels)
	}

	m.consumed = counterVec(RecordsConsumed, "Records fetched from Kafka by the consumer.", tp...)
	m.consumedBytes = counterVec(BytesConsumed, "Bytes of records fetched from Kafka (key, value, headers and a per-record overhead).", tp...)
	m.fetchErrors = counterVec(FetchErrors, "Errors fetching a partition (unknown topic, lost data, authorization); the consumer survives them.", tp...)
	m.assigned = prometheus.NewGauge(prometheus.GaugeOpts{Name: PartitionsAssigned, Help: "Partitions assigned to this member."})
	m.paused = prometheus.NewGauge(prometheus.GaugeOpts{Name: PartitionsPaused, Help: "Assigned partitions whose fetching is paused because their unsettled work reached the high-water mark."})
	m.committed = gaugeVec(CommittedOffset, "Last offset this member committed for a partition it owns: the next offset to read.", tp...)
	m.commitErrors = counterVec(CommitErrors, "Failed offset commits per partition. The next periodic commit retries; a failed final commit (on revoke or shutdown) means the partition's next owner handles its settled records again.", tp...)
	m.authErrors = counterVec(AuthErrors, "Authentication and authorization failures, by kind: sasl, tls, group-authorization, topic-authorization.", LabelKind)
	m.badDeadlines = prometheus.NewCounter(prometheus.CounterOpts{Name: MalformedDeadlines, Help: "Records whose sluice-deadline header is not a Unix time in milliseconds; the header is ignored."})
	for _, kind := range []string{consumer.AuthSASL, consumer.AuthTLS, consumer.AuthGroup, consumer.AuthTopic} {
		m.authErrors.WithLabelValues(kind) // exported at 0, so that alerts on its rate work from the start
	}
	m.rebalances = counterVec(Rebalances, "Rebalance events seen by this member: partitions assigned, revoked (drained and committed) or lost.", LabelKind)
	m.drain = prometheus.NewHistogram(prometheus.HistogramOpts{Name: RebalanceDrain, Help: "Time a revoke (or shutdown) took to drain in-flight records before committing.", Buckets: c.buckets})
	m.drainTimeouts = prometheus.NewCounter(prometheus.CounterOpts{Name: RebalanceDrainTimeouts, Help: "Revokes whose drain was cut short by the drain timeout; unfinished records are handled again by the next owner."})
	m.lagErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: LagErrors, Help: "Lag refreshes that failed (admin requests failed or timed out); the lag is missing until one succeeds."})
	m.shareAcks = counterVec(ShareAcks, "Acknowledgements a share group member gave, by topic and kind: accept (handled), release (delivered again, to any member), reject (dead-lettered; archived).", LabelTopic, LabelKind)
	m.shareAckErrs = counterVec(ShareAckErrors, "Share group acknowledgements the broker refused or that could not be sent (an expired record lock, a lost connection); their records are delivered again.", LabelTopic)
	m.watch = newWatcher(m)

	m.handled = counterVec(RecordsHandled, "Records a stage or sink finished with, by outcome: ok, dead_lettered, filtered, held, abandoned, released.", LabelStage, LabelOutcome)
	m.handleSeconds = histVec(HandleDuration, "Time a sink took to handle a message, guards (retries, waits) included.", LabelStage)
	m.deadLetters = counterVec(DeadLetters, "Records dead-lettered and acknowledged, by the stage that gave up and the failure class.", LabelStage, LabelReason)
	m.deadErrors = counterVec(DeadLetterErrors, "Failed dead-letter writes; the record stays unsettled and the write is retried.", LabelStage)
	m.stageRetries = counterVec(StageRetries, "Transient sink failures after which the pipeline calls the sink again for the same message (backoffs started).", LabelStage)

	m.dlqWrite = histVec(DeadLetterWriteDuration, "Time a dead-letter write took until acknowledged or failed, by dead-letter topic and result.", LabelTopic, LabelResult)

	m.attempts = counterVec(SinkAttempts, "Calls of a guarded sink, by result (ok or error).", LabelSink, LabelResult)
	m.attemptSeconds = histVec(SinkAttemptDuration, "Latency of one call of a guarded sink, as its concurrency limiter sees it.", LabelSink)
	m.outcomes = counterVec(SinkOutcomes, "Records a guard chain finished with: ok, retried (ok after more than one attempt), abandoned, or the failure class it gave up with.", LabelSink, LabelOutcome)
	m.retries = counterVec(Retries, "Retries of a guarded sink (backoffs started).", LabelSink)
	m.breaker = gaugeVec(BreakerState, "State of a sink's circuit breaker: 0 closed, 1 half-open, 2 open.", LabelSink)
	m.breakerSwitches = counterVec(BreakerTransitions, "Circuit breaker state changes, by the state entered.", LabelSink, LabelState)
	m.rateWait = histVec(RateLimitWait, "Time an attempt waited for a sink's rate limiter.", LabelSink)

	m.limit = gaugeVec(ConcurrencyLimit, "Concurrency limit of a sink's limiter.", LabelSink)
	m.inFlight = gaugeVec(ConcurrencyInFlight, "Calls of a sink holding a limiter slot.", LabelSink)

	for _, col := range []prometheus.Collector{
		m.consumed, m.consumedBytes, m.fetchErrors, m.assigned, m.paused, m.committed, m.commitErrors,
		m.rebalances, m.drain, m.drainTimeouts, m.authErrors, m.badDeadlines, m.lagErrors, m.shareAcks, m.shareAckErrs, m.watch,
		m.handled, m.handleSeconds, m.deadLetters, m.deadErrors, m.stageRetries, m.dlqWrite,
		m.attempts, m.attemptSeconds, m.outcomes, m.retries, m.breaker, m.breakerSwitches, m.rateWait,
		m.limit, m.inFlight,
	} {
		if err := m.reg.Register(col); err != nil {
			m.Unregister()
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Unregister removes every metric of m from its registry, the client
// metrics of KafkaClient included. m keeps counting but is no longer
// exported. Applications that rebuild their consumer in one registry use
// it.
func (m *Metrics) Unregister() { m.reg.unregisterAll() }

// registerer is what every metric of a Metrics registers on. It remembers
// what it registered and unregisters only that, so that unregistering after
// a conflict, or closing a duplicate client, cannot remove someone else's
// metrics of the same name. It also turns promauto's MustRegister panics in
// the franz-go client metrics (a second client with the same role) into a
// logged warning.
type registerer struct {
	prometheus.Registerer
	log *slog.Logger

	mu   sync.Mutex
	mine map[prometheus.Collector]bool
}

func (r *registerer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	if r.mine == nil {
		r.mine = map[prometheus.Collector]bool{}
	}
	r.mine[c] = true
	r.mu.Unlock()
	return nil
}

func (r *registerer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			r.log.Warn("metrics: franz-go client metrics not registered; give each client its own role", "err", err)
		}
	}
}

func (r *registerer) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	mine := r.mine[c]
	delete(r.mine, c)
	r.mu.Unlock()
	return mine && r.Registerer.Unregister(c)
}

func (r *registerer) unregisterAll() {
	r.mu.Lock()
	mine := r.mine
	r.mine = nil
	r.mu.Unlock()
	for c := range mine {
		r.Registerer.Unregister(c)
	}
}
