package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/metrics"
)

// Group is the demo's consumer group.
const Group = "sluice-demo"

// Config configures a demo run. Zero fields take the defaults given.
type Config struct {
	// Brokers is an external Kafka cluster to run on. Default: an
	// embedded broker (kfake) on a free port of 127.0.0.1.
	Brokers []string
	// DataDir keeps the embedded broker's data, so that `sluice dev broker
	// --data-dir DataDir` serves it after the demo. Default: broker/ in a
	// new directory under os.TempDir(). Unused with Brokers.
	DataDir string
	// LogFile receives the demo's logs (breaker changes, recovered panics
	// with their stacks). "-" means standard error. Default: demo.log beside
	// DataDir, or a new file under os.TempDir() with Brokers.
	LogFile string
	// Duration is how long orders are produced. Default 30s.
	Duration time.Duration
	// Rate is how many orders are produced per second. Default 500.
	Rate int
	// Cycle is the length of the downstream's schedule (normal, slow,
	// down, recovered), which repeats. Default Duration.
	Cycle time.Duration
	// MetricsAddr is where /metrics, /healthz and /readyz are served.
	// Default 127.0.0.1:9464; "off" serves nothing.
	MetricsAddr string
	// Topic is the orders topic; its dead letters go to Topic+".dlq".
	// Default DefaultTopic ("orders") on the embedded broker, ForeignTopic
	// ("sluice-demo.orders") on Brokers.
	Topic string
	// UseExistingTopic lets the demo run on Brokers with a Topic that
	// exists although the demo did not create it (see the package doc).
	UseExistingTopic bool
	// Partitions of the topic when the demo creates it. Default 6.
	Partitions int
	// Customers is how many keys the orders spread over. Default 120.
	Customers int
	// DrainTimeout bounds the wait, after producing stops, for every order
	// to be handled. Default 60s.
	DrainTimeout time.Duration
	// StopTimeout bounds how long, when the demo stops the consumer, the
	// orders in flight may take to settle (the consumer's DrainTimeout):
	// what settles is committed, the rest is left for the group's next run.
	// Default 10s.
	StopTimeout time.Duration
	// Interval is how often progress is shown. Default 250ms on a
	// terminal, 2s otherwise.
	Interval time.Duration
	// Terminal redraws the progress in place instead of printing lines.
	Terminal bool
	// Command is how the summary's next commands invoke this tool.
	// Default "sluice".
	Command string
	// Seed makes the orders and the downstream's randomness repeatable.
	// Default: a time-based seed.
	Seed uint64
	// Registry collects the metrics. Default: a new registry.
	Registry *prometheus.Registry
	// Out receives the progress and the summary. Default os.Stdout.
	Out io.Writer
	// Ready, when set, is called once the demo has started, with the
	// address of /metrics ("" when not served). Tests use it.
	Ready func(metricsAddr string)
}

// Defaults of Config.
const (
	DefaultDuration    = 30 * time.Second
	DefaultRate        = 500
	DefaultMetricsAddr = "127.0.0.1:9464"
	DefaultTopic       = "orders"
	ForeignTopic       = "sluice-demo.orders"
	DefaultStopTimeout = 10 * time.Second

	// rebalanceTimeout is the consumer's, which its drain timeout,
	// StopTimeout, must stay below.
	rebalanceTimeout    = 60 * time.Second
	DefaultPartitions   = 6
	DefaultCustomers    = 120
	DefaultDrainTimeout = 60 * time.Second
)

func (c *Config) defaults() error {
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Cycle == 0 {
		c.Cycle = c.Duration
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = DefaultMetricsAddr
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
		if len(c.Brokers) > 0 {
			c.Topic = ForeignTopic
		}
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Customers == 0 {
		c.Customers = DefaultCustomers
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
		if c.Terminal {
			c.Interval = 250 * time.Millisecond
		}
	}
	if c.Command == "" {
		c.Command = "sluice"
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	switch {
	case c.Duration < 0:
		return fmt.Errorf("--duration %v: must be positive", c.Duration)
	case c.Rate < 0:
		return fmt.Errorf("--rate %d: must be positive", c.Rate)
	case c.Cycle < 0:
		return fmt.Errorf("--cycle %v: must be positive", c.Cycle)
	case c.Partitions < 1:
		return fmt.Errorf("Config.Partitions %d: must be at least 1", c.Partitions)
	case c.Customers < 1:
		return fmt.Errorf("Config.Customers %d: must be at least 1", c.Customers)
	case c.DrainTimeout < 0:
		return fmt.Errorf("--drain-timeout %v: must not be negative", c.DrainTimeout)
	case c.StopTimeout < 0:
		return fmt.Errorf("--stop-timeout %v: must not be negative", c.StopTimeout)
	case c.StopTimeout >= rebalanceTimeout:
		return fmt.Errorf("--stop-timeout %v: must be below %v, the consumer's rebalance timeout", c.StopTimeout, rebalanceTimeout)
	}
	if err := devbroker.ValidTopicName(c.Topic); err != nil {
		return fmt.Errorf("--topic: %w", err)
	}
	return nil
}

// ErrFailed is returned by Run when the summary shows a broken promise:
// records lost, handled out of order, or dead-lettered for a reason their
// content does not explain.
var ErrFailed = errors.New("demo: a promise was broken")

// Run runs the demo: it starts the broker (unless Brokers is set), the
// consumer with the example pipeline, the metrics server and the producer;
// shows progress until producing has stopped and every order was handled
// or DrainTimeout passed; stops the consumer gracefully; and prints and
// returns the summary. Cancelling ctx stops producing at once and ends the
// run early, with a summary. The error is ErrFailed (with the summary) when
// a promise was broken, or what kept the demo from running.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	defer r.close()
	if err := r.start(); err != nil {
		return nil, err
	}
	r.loop(ctx)
	s, err := r.finish()
	if err != nil {
		return nil, err
	}
	s.Print(cfg.Out)
	if s.Lost > 0 || s.OutOfOrder > 0 || len(s.Unexpected) > 0 {
		return s, ErrFailed
	}
	return s, nil
}

// run is one demo run: what it started, in the order it started them, so
// that close can stop them in reverse.
type run struct {
	cfg     Config
	closers []func()

	log     *slog.Logger
	logPath string
	brokers []string
	dataDir string
	reg     *prometheus.Registry
	m       *metrics.Metrics
	led     *ledger
	// schedStart is when the downstream's schedule started (Unix ns),
	// 0 before producing starts.
	schedStart atomic.Int64
	cons       *consumer.Consumer
	consDone   chan error
	stopCons   context.CancelFunc
	stopWatch  func()
	commits    *commits
	prod       *kgo.Client
	starts     map[int32]int64
	metrics    string // address of /metrics, "" if not served

	produceStart time.Time
	produceEnd   time.Time
	drainEnd     time.Time
	stopEnd      time.Time
	finalGauges  gauges
	interrupted  bool
	drawn        int // lines of the progress block on a terminal
}

func (r *run) defer_(f func()) { r.closers = append(r.closers, f) }

func (r *run) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

func (r *run) start() error {
	cfg := r.cfg
	if err := r.openLog(); err != nil {
		return err
	}
	rf := int16(-1) // the cluster's default replication factor
	if len(cfg.Brokers) == 0 {
		b, err := devbroker.Start(devbroker.Config{
			DataDir:          r.dataDir,
			AutoCreateTopics: true,
			Topics:           []devbroker.Topic{{Name: cfg.Topic, Partitions: int32(cfg.Partitions)}},
		})
		if err != nil {
			return err
		}
		r.defer_(b.Close)
		for _, rec := range b.Recovered {
			r.log.Warn("data dir repaired", "what", rec)
		}
		r.brokers = b.ListenAddrs()
		rf = 1
	} else {
		r.brokers = cfg.Brokers
	}
	if err := r.prepareTopic(); err != nil {
		return err
	}
	r.led = newLedger(r.starts)

	r.reg = cfg.Registry
	if r.reg == nil {
		r.reg = prometheus.NewRegistry()
	}
	m, err := metrics.New(r.reg, metrics.LagInterval(min(time.Second, r.cfg.Interval)), metrics.Logger(r.log))
	if err != nil {
		return err
	}
	r.m = m
	r.defer_(m.Unregister)

	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: r.brokers}), dlq.Group(Group), dlq.AutoCreate(rf),
		dlq.Hooks(m), dlq.ClientOpts(m.KafkaClient("dlq")))
	if err != nil {
		return err
	}
	r.defer_(pub.Close)

	down := &downstream{phase: r.phaseAt, now: time.Now, ok: r.led.ship, rnd: rand.New(rand.NewPCG(cfg.Seed, 2)),
		retryAfter: clamp(Schedule{Cycle: cfg.Cycle}.Outage()/2, 100*time.Millisecond, time.Second)}
	p, err := orders.New(orders.Config{
		Topic:       cfg.Topic,
		Ship:        down.ship,
		Totals:      func(_ context.Context, t orders.Totals) error { r.led.window(t); return nil },
		DeadLetters: countingDeadLetterer{next: pub, l: r.led},
		Metrics:     m,
		Logger:      r.log,
		Guards:      guards(Schedule{Cycle: cfg.Cycle}, cfg.Rate),
	})
	if err != nil {
		return err
	}
	r.commits = &commits{at: map[int32]int64{}}
	// Low water marks, so that an outage visibly pauses fetching; two
	// seconds of a partition's orders, so that at the production rate the
	// totals window (one second) never holds a partition back. While a
	// backlog drains faster than that, a window's second can reach the mark
	// and pause the partition until the window closes (stages.Window).
	perPart := max(200, 2*cfg.Rate/len(r.starts))
	r.cons, err = consumer.New(
		consumer.Connection(sluice.Connection{Brokers: r.brokers}),
		consumer.Group(Group),
		consumer.Handle(p),
		consumer.Logger(r.log),
		consumer.Hooks(m, r.commits),
		consumer.ClientOpts(m.KafkaClient("consumer")),
		consumer.CommitInterval(500*time.Millisecond),
		consumer.DrainTimeout(cfg.StopTimeout),
		consumer.RebalanceTimeout(rebalanceTimeout),
		consumer.MaxUnsettled(consumer.Water{Records: perPart}, consumer.Water{Records: perPart * len(r.starts)}),
	)
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "off" {
		srv, err := health.NewServer(cfg.MetricsAddr, health.Status(r.cons), health.Metrics(r.reg), health.Logger(r.log))
		if err != nil {
			r.cons.Close()
			return fmt.Errorf("metrics-addr: %w", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Run(context.Background()) // ends at Close
		}()
		r.defer_(func() { srv.Close(); <-done })
		r.metrics = srv.Addr()
	}
	r.stopWatch = m.Watch(r.cons)
	r.defer_(r.stopWatch)

	consCtx, stop := context.WithCancel(context.Background())
	r.stopCons = stop
	r.consDone = make(chan error, 1)
	go func() { r.consDone <- r.cons.Run(consCtx) }()
	r.defer_(func() {
		stop()
		if r.consDone != nil {
			<-r.consDone
		}
	})

	r.prod, err = kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithLogger(nil), m.KafkaClient("producer"))
	if err != nil {
		return err
	}
	r.defer_(r.prod.Close)
	r.printStart()
	if cfg.Ready != nil {
		cfg.Ready(r.metrics)
	}
	return nil
}

// openLog opens the log file and picks the broker's data directory.
func (r *run) openLog() error {
	cfg := r.cfg
	var work string
	if len(cfg.Brokers) == 0 {
		r.dataDir = cfg.DataDir
		if r.dataDir == "" {
			dir, err := os.MkdirTemp("", "sluice-demo-")
			if err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			work, r.dataDir = dir, filepath.Join(dir, "broker")
		} else {
			work = filepath.Dir(filepath.Clean(r.dataDir))
		}
		if err := os.MkdirAll(r.dataDir, 0o755); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
	}
	switch {
	case cfg.LogFile == "-":
		r.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		return nil
	case cfg.LogFile != "":
		r.logPath = cfg.LogFile
	case work != "":
		r.logPath = filepath.Join(work, "demo.log")
	default:
		f, err := os.CreateTemp("", "sluice-demo-*.log")
		if err != nil {
			return fmt.Errorf("--log-file: %w", err)
		}
		f.Close()
		r.logPath = f.Name()
	}
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--log-file: %w", err)
	}
	r.defer_(func() { f.Close() })
	r.log = slog.New(slog.NewTextHandler(f, nil))
	return nil
}

// prepareTopic creates the orders topic if it is missing and notes where
// each partition ends before the run: what is below is not this run's. On
// a cluster of the user's (Brokers) it refuses a topic that exists and is
// not the demo's, unless told to use it, and commits the run's start
// offsets for the demo's group where it has none: that marks the topic as
// the demo's, and keeps the group away from records that were there
// before.
func (r *run) prepareTopic() error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.WithLogger(nil))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := r.cfg.Topic
	resp, err := adm.CreateTopic(ctx, int32(r.cfg.Partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	created := err == nil
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s on %s: %w", topic, strings.Join(r.brokers, ","), err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	r.starts = map[int32]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		r.starts[o.Partition] = o.Offset
	})
	if len(errs) > 0 || len(r.starts) == 0 {
		return fmt.Errorf("end offsets of %s: %w", topic, errors.Join(append(errs, errors.New("no partitions"))...))
	}
	if len(r.cfg.Brokers) == 0 {
		return nil // the demo's own broker
	}
	committed, err := groupOffsets(ctx, adm, topic)
	if err != nil {
		return err
	}
	if !created && len(committed) == 0 && !r.cfg.UseExistingTopic {
		return fmt.Errorf("--topic %s: the topic exists on %s and the demo did not create it (its group %s never committed to it): "+
			"the demo would write fake orders into it and consume it; pick another --topic, or pass --use-existing-topic", topic, strings.Join(r.brokers, ","), Group)
	}
	os := make(kadm.Offsets)
	for p, start := range r.starts {
		if _, ok := committed[p]; !ok {
			os.Add(kadm.Offset{Topic: topic, Partition: p, At: start, LeaderEpoch: -1})
		}
	}
	if len(os) > 0 {
		if err := adm.CommitAllOffsets(ctx, Group, os); err != nil {
			return fmt.Errorf("commit the start offsets of group %s: %w", Group, err)
		}
	}
	return nil
}

// groupOffsets returns the demo group's committed offsets in topic.
func groupOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, Group)
	if err == nil {
		err = resp.Error()
	}
	out := map[int32]int64{}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", Group, err)
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// guards tunes the ship sink's guards to the schedule: the deadline budget
// outlasts the outage (an outage must not dead-letter anything), and the
// breaker probes a few times per outage. The retry budget's floor is raised
// from 10 to 100 retries a second (burst 1,000): the retries made while the
// outage opens the breaker empty the default bucket, and a 503 of the
// recovered downstream met with an empty bucket is dead-lettered with class
// budget, which would blur the demo's point. It still bounds the retries of
// a downstream that keeps failing to 20% of the records plus 100 a second.
func guards(s Schedule, perSecond int) orders.Guards {
	outage := s.Outage()
	return orders.Guards{
		Budget: outage + time.Minute,
		Retry:  handlers.RetryPolicy{Budget: handlers.RetryBudget{PerSecond: 100}},
		Breaker: handlers.BreakerPolicy{
			Window:      clamp(s.Cycle/10, time.Second, handlers.DefaultBreakerWindow),
			OpenTimeout: clamp(outage/5, 100*time.Millisecond, handlers.DefaultOpenTimeout),
		},
		Rate: rate.Limit(max(2000, 4*perSecond)),
	}
}

func clamp(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

func (r *run) printStart() {
	cfg := r.cfg
	w := cfg.Out
	where := fmt.Sprintf("Kafka at %s", strings.Join(r.brokers, ","))
	if len(cfg.Brokers) == 0 {
		where = fmt.Sprintf("an embedded broker at %s (data in %s)", r.brokers[0], r.dataDir)
	}
	fmt.Fprintf(w, "sluice demo: %s of orders at %d/s on %s\n", cfg.Duration, cfg.Rate, where)
	c := cfg.Cycle
	at := func(f float64) string { return time.Duration(float64(c) * f).Round(100 * time.Millisecond).String() }
	repeat := ""
	if c < cfg.Duration {
		repeat = fmt.Sprintf(", every %s", c)
	}
	fmt.Fprintf(w, "  downstream: normal, slow from %s, down from %s to %s, then recovered%s\n", at(slowAt), at(downAt), at(recoveredAt), repeat)
	fmt.Fprintf(w, "  pipeline: decode -> filter -> duplicate -> [per-second window -> totals] [key-ordered fan-out -> guarded ship]\n")
	if r.metrics != "" {
		fmt.Fprintf(w, "  metrics: http://%s/metrics (and /healthz, /readyz)\n", r.metrics)
	}
	if r.logPath != "" {
		fmt.Fprintf(w, "  logs: %s\n", r.logPath)
	}
	fmt.Fprintln(w)
}

// loop produces, shows progress, and returns once producing has stopped
// and every order is accounted for, or the drain timeout passed, or ctx was
// cancelled.
func (r *run) loop(ctx context.Context) {
	cfg := r.cfg
	prodCtx, stopProd := context.WithCancel(ctx)
	defer stopProd()
	gen := newGenerator(fmt.Sprintf("%x", cfg.Seed&0xffffff), cfg.Customers, cfg.Seed)
	prodDone := make(chan struct{})
	r.produceStart = time.Now()
	r.schedStart.Store(r.produceStart.UnixNano())
	go func() {
		defer close(prodDone)
		produce(prodCtx, r.prod, gen, cfg.Topic, cfg.Rate, cfg.Duration,
			func(rec *kgo.Record, k Kind) { r.led.acked(rec.Partition, rec.Offset, k) },
			func(error) { r.led.failed() })
	}()

	d := &display{w: cfg.Out, tty: cfg.Terminal}
	defer func() { r.drawn = d.drawn }()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var prev gauges
	var drainBy time.Time
	producing, done := prodDone, ctx.Done()
	for {
		select {
		case <-tick.C:
		case <-producing:
			producing = nil
			r.produceEnd = time.Now()
			drainBy = r.produceEnd.Add(cfg.DrainTimeout)
		case <-done:
			done = nil
			r.interrupted = true
		}
		now := time.Now()
		g := read(r.reg, now)
		handed, _ := r.cons.Unsettled()
		d.show(frame{
			elapsed: now.Sub(r.produceStart), total: cfg.Duration, producing: producing != nil,
			phase: r.phaseAt(now), produced: r.led.total(), unsettled: handed, g: g, prev: prev,
		})
		prev = g
		r.led.check(r.commits.snapshot(), false)
		r.finalGauges = g
		if r.interrupted || (producing == nil && (r.led.accounted(int(g.filtered)) || now.After(drainBy))) {
			break
		}
	}
	stopProd()
	<-prodDone
	if r.produceEnd.IsZero() {
		r.produceEnd = time.Now()
	}
	r.drainEnd = time.Now()
}

// waitStopped waits for the consumer to stop, showing what it waits for:
// the orders in flight get up to StopTimeout to settle.
func (r *run) waitStopped() error {
	cfg := r.cfg
	d := &display{w: cfg.Out, tty: cfg.Terminal, drawn: r.drawn}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	// After an interrupt say at once what the demo waits for; after a
	// drain, only if stopping takes a while.
	for atOnce := r.interrupted; ; atOnce = false {
		if atOnce {
			select {
			case err := <-r.consDone:
				return err
			default:
			}
		} else {
			select {
			case err := <-r.consDone:
				return err
			case <-tick.C:
			}
		}
		now := time.Now()
		g := read(r.reg, now)
		handed, _ := r.cons.Unsettled()
		note := fmt.Sprintf("stopping: %d unsettled %s (in flight, or held by a window) get up to %s to settle (downstream %s, breaker %s); what settles is committed, the rest stays in Kafka for the group's next run; Ctrl-C again quits at once",
			handed, plural(int(handed), "order", "orders"), cfg.StopTimeout, r.phaseAt(now), breakerName(g.breaker))
		d.show(frame{
			elapsed: now.Sub(r.produceStart), total: cfg.Duration, stopping: true,
			phase: r.phaseAt(now), produced: r.led.total(), unsettled: handed, g: g, prev: r.finalGauges, note: note,
		})
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// phaseAt is the downstream's phase at t; normal until producing starts.
func (r *run) phaseAt(t time.Time) Phase {
	start := r.schedStart.Load()
	if start == 0 {
		return PhaseNormal
	}
	return Schedule{Start: time.Unix(0, start), Cycle: r.cfg.Cycle}.At(t)
}
