// Command refconsumer is the reliability suite's reference consumer: a
// Sluice consumer written the way the README tells users to write one, that
// records in a ledger (package internal/ledger) every record it handled
// or dead-lettered and every assignment, revocation, loss and commit, so
// that the checker can prove nothing was lost, duplicated without cause, or
// handled out of order.
//
// # Pipeline
//
//	consumer (group, cooperative-sticky) -> source (JSON decode)
//	  -> key-ordered FanOut (--workers per partition)
//	  -> sink "ledger", guarded: retry -> breaker -> panic recovery
//	  dead letters -> dlq.Publisher (topic+".dlq"), then a D event
//
// The sink waits --latency (or the control file's latency; with
// --latency-max, a uniformly random time between the two), then appends an
// H event to the ledger and returns nil, so a record's H event is written
// before the record can settle and its offset be committed. Values are JSON
// Event objects; an empty value is a tombstone and is handled; a value that
// is not JSON is dead-lettered by the source (class decode); {"panic":true}
// makes the sink panic (class panic) and {"permanent":true} makes it fail
// permanently (class permanent).
//
// # Kafka sink modes
//
// With --kafka-sink or --eos the sink also writes every record it handles
// to --output-topic (default: the record's topic + ".out") through
// package sinks/kafka, one output per record: the record's key, its value
// re-encoded ({"seq":N}), its rid header, and the sink's provenance header
// (sinks/kafka.DefaultProvenanceHeader, "topic/partition@offset"). The H
// event follows the acknowledged write.
//
//   - --kafka-sink is the at-least-once mode: a kafka.Writer with a client
//     of its own (acks=all, idempotent). Before each write the sink appends
//     a W event, so every output that can be in the topic has one: the
//     checker bounds the outputs' duplicates with them.
//   - --eos ID is the exactly-once mode: the consumer runs with
//     consumer.ExactlyOnce(ID, writer, dead-letter publisher), so outputs,
//     dead letters and input offsets commit in one transaction. ID is the
//     transactional ID; the suite gives every incarnation of a member the
//     same one, so that a restart fences its killed predecessor. The C
//     events are the transactions' commits, F events their aborts (for
//     every partition the transaction held), and an R event a revocation
//     whose transaction aborts. The consumer partitions dead letters with
//     dlq.Partitioner and outputs by key. --transaction-timeout overrides
//     the consumer's transaction timeout (consumer.TransactionTimeout).
//
// # Share mode
//
// --share-group makes the process a member of the share group --group
// (consumer.ShareGroup, KIP-932) instead of a consumer group, with the same
// pipeline; its dead letters go through consumer.ShareDeadLetters, so a
// transient failure past the guard's retries is released for redelivery
// and dead-lettered (class delivery-limit) only on its last delivery. A
// share group assigns no partitions and commits no offsets: the ledger has
// H, D and E events only. --share-renew-every sets how often the locks of
// records still being handled are renewed (consumer.ShareRenewEvery).
//
// # Control file
//
// --control names a JSON file that the process reads every 50ms:
//
//	{"down": true}              the sink fails every call with a transient error
//	{"latency": "20ms"}         the sink's latency, overriding --latency
//	{"latency_max": "1s"}       its upper bound, overriding --latency-max
//
// A missing file means {}. The suite uses it to stage sink outages and slow
// sinks without restarting the process.
//
// # Status
//
// With --status-interval, the process logs the consumer's Status at that
// interval ("consumer status": unsettled and buffered records, partitions
// assigned and paused, whether the buffered records are at
// --max-unsettled-total and whether every assigned partition is paused),
// and logs "consumer-wide high-water mark reached" each time the buffered
// records reach --max-unsettled-total, so that the suite can tell when a
// consumer sits at its consumer-wide mark. The consumer-wide pause holds
// until the records fall to the low-water mark (half), so after a revoke
// a consumer can be below the mark with every partition still paused by
// it.
//
// # Commits
//
// Every commit the consumer reports through HookCommitted goes to the
// ledger: a C event when it landed, an F event when it failed.
//
// # Signals and exit
//
// SIGTERM or SIGINT shuts down gracefully (drain, commit, leave); a second
// one stops at once (consumer.Stop). After a graceful shutdown the ledger
// ends with an E event; a killed process's ledger has none. A graceful
// shutdown whose final commits failed (consumer.ErrNotCommitted) ends the
// ledger with E too, after the F events of the failed commits, and exits
// with status 4; any other error from Run exits with status 1. A failed ledger
// write exits the process with status 3 at once: a ledger that misses
// events would make the checker report records lost that were not.
//
// # Network
//
// --route FROM=TO (repeatable) makes the Kafka clients (consumer and
// dead-letter publisher) dial TO whenever they would dial FROM. Brokers
// advertise their own addresses in metadata, so a seed address alone cannot
// put a proxy in the path; the dialer can.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/deadline"
	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
	"github.com/sluice-go/sluice/stages"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	hard := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		cancel()
		<-sigs
		close(hard)
	}()
	if err := run(ctx, hard, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "refconsumer:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

type config struct {
	brokers, topics []string
	group, name     string
	ledger, control string
	workers         int
	latency         time.Duration
	latencyMax      time.Duration
	routes          map[string]string

	closeGrace, overhead, statusEvery time.Duration

	session, rebalance, commit, drain, budget time.Duration
	partRecords, totalRecords                 int

	attempts              int
	baseDelay             time.Duration
	breakerMin            int
	breakerOpen, breakerW time.Duration
	dlqSuffix             string
	logLevel              slog.Level

	// Kafka sink modes: eos is the transactional ID (exactly once),
	// kafkaSink the at-least-once mode; outTopic is where outputs go
	// ("": the record's topic + ".out").
	eos       string
	kafkaSink bool
	outTopic  string
	// txnTimeout, if positive, overrides the consumer's transaction
	// timeout (kgo.TransactionTimeout through consumer.ClientOpts).
	txnTimeout time.Duration
	// protocol is the group protocol: "classic" or "consumer" (KIP-848).
	protocol string
	// share makes the member join the share group group instead;
	// shareRenew, if positive, is its ShareRenewEvery.
	share      bool
	shareRenew time.Duration
}

// groupProtocol maps --group-protocol to the consumer's protocol.
func groupProtocol(name string) consumer.Protocol {
	if name == "consumer" {
		return consumer.ProtocolConsumer
	}
	return consumer.ProtocolClassic
}

// kafkaMode reports whether the sink writes outputs to Kafka.
func (c config) kafkaMode() bool { return c.eos != "" || c.kafkaSink }

type listFlag struct{ vals *[]string }

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.vals = append(*l.vals, v)
		}
	}
	return nil
}

type routeFlag map[string]string

func (r routeFlag) String() string { return fmt.Sprint(map[string]string(r)) }

func (r routeFlag) Set(s string) error {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return fmt.Errorf("want FROM=TO, got %q", s)
	}
	r[from] = to
	return nil
}

func parse(args []string, stderr io.Writer) (config, error) {
	c := config{routes: map[string]string{}}
	fs := flag.NewFlagSet("refconsumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(listFlag{&c.brokers}, "brokers", "seed brokers, host:port, comma-separated (required)")
	fs.Var(listFlag{&c.topics}, "topics", "topics to consume, comma-separated (required)")
	fs.StringVar(&c.group, "group", "", "consumer group (required)")
	fs.StringVar(&c.name, "name", "refconsumer", "member name: client ID and ledger header")
	fs.StringVar(&c.ledger, "ledger", "", "ledger file to write (required)")
	fs.StringVar(&c.control, "control", "", "control file (JSON) for sink outages and latency")
	fs.IntVar(&c.workers, "workers", 8, "key-ordered fan-out workers per partition")
	fs.DurationVar(&c.latency, "latency", 2*time.Millisecond, "sink latency per record")
	fs.DurationVar(&c.latencyMax, "latency-max", 0, "if above --latency, each record's latency is uniformly random between the two")
	fs.Var(routeFlag(c.routes), "route", "dial TO instead of FROM, as FROM=TO (repeatable)")
	fs.DurationVar(&c.session, "session-timeout", 6*time.Second, "group session timeout")
	fs.DurationVar(&c.rebalance, "rebalance-timeout", 20*time.Second, "group rebalance timeout")
	fs.DurationVar(&c.commit, "commit-interval", time.Second, "commit interval")
	fs.DurationVar(&c.drain, "drain-timeout", 10*time.Second, "drain timeout on revoke and shutdown")
	fs.DurationVar(&c.closeGrace, "close-grace", 5*time.Second, "how long leaving the group may take after the drain (consumer.CloseGrace)")
	fs.DurationVar(&c.overhead, "request-timeout-overhead", 0, "franz-go's RequestTimeoutOverhead (0: its default, 10s)")
	fs.DurationVar(&c.statusEvery, "status-interval", 0, "log the consumer's status this often (0: never)")
	fs.DurationVar(&c.budget, "record-budget", 0, "per-record deadline budget (0: none)")
	fs.IntVar(&c.partRecords, "max-unsettled-partition", 2000, "unsettled records per partition (high-water mark)")
	fs.IntVar(&c.totalRecords, "max-unsettled-total", 10000, "unsettled records in total (high-water mark)")
	fs.IntVar(&c.attempts, "retry-attempts", 5, "sink attempts per record")
	fs.DurationVar(&c.baseDelay, "retry-base", 50*time.Millisecond, "first retry backoff ceiling")
	fs.IntVar(&c.breakerMin, "breaker-min-requests", 10, "results in the window before the breaker may open")
	fs.DurationVar(&c.breakerOpen, "breaker-open", time.Second, "how long the breaker stays open before probing")
	fs.DurationVar(&c.breakerW, "breaker-window", 2*time.Second, "the breaker's counting window")
	fs.StringVar(&c.dlqSuffix, "dlq-suffix", dlq.DefaultSuffix, "dead-letter topic suffix")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level")
	fs.StringVar(&c.eos, "eos", "", "exactly-once Kafka sink with this transactional ID (stable across restarts of a member)")
	fs.BoolVar(&c.kafkaSink, "kafka-sink", false, "at-least-once Kafka sink: write every handled record to --output-topic")
	fs.DurationVar(&c.txnTimeout, "transaction-timeout", 0, "with --eos, the transaction timeout (0: the consumer's default, CommitInterval + DrainTimeout + RebalanceTimeout + 15s)")
	fs.StringVar(&c.outTopic, "output-topic", "", "output topic of the Kafka sink modes (default: the record's topic + \".out\")")
	fs.StringVar(&c.protocol, "group-protocol", "classic", "group protocol: classic (cooperative-sticky) or consumer (KIP-848, server-side assignment)")
	fs.BoolVar(&c.share, "share-group", false, "join --group as a share group (KIP-932, queue mode) instead of a consumer group")
	fs.DurationVar(&c.shareRenew, "share-renew-every", 0, "with --share-group, how often the locks of records being handled are renewed (0: the consumer's default, 10s)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case len(c.brokers) == 0:
		return c, errors.New("--brokers is required")
	case len(c.topics) == 0:
		return c, errors.New("--topics is required")
	case c.group == "":
		return c, errors.New("--group is required")
	case c.ledger == "":
		return c, errors.New("--ledger is required")
	case c.workers < 1:
		return c, fmt.Errorf("--workers %d: want at least 1", c.workers)
	case c.eos != "" && c.kafkaSink:
		return c, errors.New("--eos and --kafka-sink: choose one mode")
	case c.outTopic != "" && !c.kafkaMode():
		return c, errors.New("--output-topic needs --eos or --kafka-sink")
	case c.protocol != "classic" && c.protocol != "consumer":
		return c, fmt.Errorf("--group-protocol %q: want classic or consumer", c.protocol)
	case c.txnTimeout != 0 && c.eos == "":
		return c, errors.New("--transaction-timeout needs --eos")
	case c.share && (c.kafkaMode() || c.protocol != "classic"):
		return c, errors.New("--share-group excludes --eos, --kafka-sink and --group-protocol")
	case c.shareRenew != 0 && !c.share:
		return c, errors.New("--share-renew-every needs --share-group")
	}
	return c, nil
}

// run consumes until ctx is cancelled (graceful) or hard is closed (stop at
// once).
func run(ctx context.Context, hard <-chan struct{}, args []string, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: c.logLevel})).With("member", c.name)
	led, err := ledger.Create(c.ledger, "member="+c.name, fmt.Sprintf("pid=%d", os.Getpid()), "group="+c.group)
	if err != nil {
		return err
	}
	defer led.Close()
	rec := &recorder{led: led, log: log}

	dial := dialer(c.routes)
	pub, err := dlq.New(
		dlq.Connection(sluice.Connection{Brokers: c.brokers, ClientID: c.name + "-dlq"}),
		dlq.ClientOpts(kgo.Dialer(dial)),
		dlq.Suffix(c.dlqSuffix),
		dlq.Group(c.group),
	)
	if err != nil {
		return err
	}
	defer pub.Close()

	var (
		out     *kafka.Writer
		eosOpts []consumer.Opt
	)
	switch {
	case c.eos != "":
		if out, err = kafka.NewWriter(kafka.Provenance("")); err != nil {
			return err
		}
		eosOpts = []consumer.Opt{consumer.ExactlyOnce(c.eos, out, pub),
			consumer.ClientOpts(kgo.RecordPartitioner(dlq.Partitioner(nil)))}
		if c.txnTimeout > 0 {
			// Client options come after the consumer's own.
			eosOpts = append(eosOpts, consumer.TransactionTimeout(c.txnTimeout))
		}
	case c.kafkaSink:
		out, err = kafka.NewWriter(kafka.Connection(sluice.Connection{Brokers: c.brokers, ClientID: c.name + "-out"}), kafka.Provenance(""),
			kafka.ClientOpts(kgo.Dialer(dial)))
		if err != nil {
			return err
		}
	}
	if out != nil {
		defer out.Close()
	}

	ctl := newControl(c.control, c.latency, c.latencyMax, log)
	p, err := buildPipeline(c, ctl, rec, pub, out, log)
	if err != nil {
		return err
	}
	membership := []consumer.Opt{consumer.Group(c.group)}
	if c.share {
		membership = []consumer.Opt{consumer.ShareGroup(c.group)}
		if c.shareRenew > 0 {
			membership = append(membership, consumer.ShareRenewEvery(c.shareRenew))
		}
	}
	cons, err := consumer.New(append([]consumer.Opt{
		consumer.Connection(sluice.Connection{Brokers: c.brokers, ClientID: c.name}),
		consumer.Handle(p), // reads c.topics, one Source each
		consumer.Logger(log),
		consumer.Hooks(rec),
		consumer.SessionTimeout(c.session),
		consumer.RebalanceTimeout(c.rebalance),
		consumer.CommitInterval(c.commit),
		consumer.DrainTimeout(c.drain),
		consumer.CloseGrace(c.closeGrace),
		consumer.RecordBudget(c.budget),
		consumer.MaxUnsettled(consumer.Water{Records: c.partRecords}, consumer.Water{Records: c.totalRecords}),
		consumer.ClientOpts(clientOpts(c, dial)...),
		consumer.GroupProtocol(groupProtocol(c.protocol)),
	}, append(membership, eosOpts...)...)...)
	if err != nil {
		return err
	}

	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		ctl.watch(ctlCtx)
	}()
	defer func() {
		stopCtl()
		<-ctlDone
	}()
	if c.statusEvery > 0 {
		statusDone := make(chan struct{})
		go func() {
			defer close(statusDone)
			logStatus(ctlCtx, cons, c.statusEvery, int64(c.totalRecords), log)
		}()
		defer func() {
			stopCtl()
			<-statusDone
		}()
	}

	var stopped atomic.Bool
	stopDone := make(chan struct{})
	runDone := make(chan struct{})
	go func() {
		defer close(stopDone)
		select {
		case <-hard:
			stopped.Store(true)
			log.Warn("second signal: stopping at once")
			cons.Stop()
		case <-runDone:
		}
	}()
	log.Info("reference consumer starting", "pid", os.Getpid(), "brokers", c.brokers, "topics", c.topics, "routes", c.routes,
		"exactly_once", c.eos, "kafka_sink", c.kafkaSink)
	err = cons.Run(ctx)
	close(runDone)
	<-stopDone
	if errors.Is(err, consumer.ErrNotCommitted) && !stopped.Load() {
		// The shutdown was complete but its final commits failed; the
		// hook put them in the ledger (F), which explains what the next
		// owners redo.
		rec.write(ledger.Event{Kind: ledger.End})
		return &exitError{code: exitNotCommitted, err: err}
	}
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	if !stopped.Load() {
		rec.write(ledger.Event{Kind: ledger.End})
	}
	log.Info("reference consumer stopped")
	return nil
}

// exitNotCommitted is the exit status of a graceful stop whose final
// commits failed.
const exitNotCommitted = 4

// exitError is an error with its own exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func clientOpts(c config, dial func(ctx context.Context, network, host string) (net.Conn, error)) []kgo.Opt {
	opts := []kgo.Opt{kgo.Dialer(dial)}
	if c.overhead > 0 {
		opts = append(opts, kgo.RequestTimeoutOverhead(c.overhead))
	}
	return opts
}

// logStatus logs the consumer's status every interval until ctx ends, and
// says when the buffered records reach the consumer-wide mark.
func logStatus(ctx context.Context, cons *consumer.Consumer, every time.Duration, totalMark int64, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	atMark := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := cons.Status()
		now := st.Buffered >= totalMark
		if now && !atMark {
			log.Info("consumer-wide high-water mark reached", "buffered", st.Buffered, "mark", totalMark)
		}
		atMark = now
		log.Info("consumer status", "joined", st.Joined, "unsettled", st.Unsettled, "buffered", st.Buffered,
			"at_total_mark", now, "assigned", len(st.Assigned), "paused", len(st.Paused),
			"all_paused", len(st.Assigned) > 0 && len(st.Paused) == len(st.Assigned))
	}
}

func dialer(routes map[string]string) func(ctx context.Context, network, host string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second}
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		if to, ok := routes[host]; ok {
			host = to
		}
		return d.DialContext(ctx, network, host)
	}
}

// Event is the value of the suite's records.
type Event struct {
	Seq       int64  `json:"seq"`
	Pad       string `json:"pad,omitempty"`
	Panic     bool   `json:"panic,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	// Tombstone is set for an empty value.
	Tombstone bool `json:"-"`
}

func decode(b []byte) (Event, error) {
	var e Event
	if len(b) == 0 {
		e.Tombstone = true
		return e, nil
	}
	err := json.Unmarshal(b, &e)
	return e, err
}

var (
	errDown     = errors.New("sink down (control file)")
	errRejected = errors.New("record rejected by the sink")
)

// outputOf is the Kafka sinks' route: one output per record, to the
// output topic (or the record's topic + ".out"), with the record's key and
// rid header.
func outputOf(outTopic string) kafka.Route[Event] {
	return func(m pipeline.Message[Event], out *kafka.Outputs) error {
		topic := outTopic
		if topic == "" {
			topic = m.Topic() + ".out"
		}
		var value []byte
		if v := m.Value(); !v.Tombstone {
			value = fmt.Appendf(nil, `{"seq":%d}`, v.Seq)
		}
		if rid, ok := m.Header(ledger.RIDHeader); ok {
			out.Add(topic, m.Key(), value, pipeline.Header{Key: ledger.RIDHeader, Value: rid})
		} else {
			out.Add(topic, m.Key(), value)
		}
		return nil
	}
}

func buildPipeline(c config, ctl *control, rec *recorder, pub *dlq.Publisher, out *kafka.Writer, log *slog.Logger) (*pipeline.Pipeline, error) {
	var write func(context.Context, pipeline.Message[Event]) error
	if out != nil {
		write = kafka.Sink(out, outputOf(c.outTopic))
	}
	sink := func(ctx context.Context, m pipeline.Message[Event]) error {
		st := ctl.load()
		if st.Down {
			if err := deadline.Sleep(ctx, time.Millisecond); err != nil {
				return err
			}
			return errDown
		}
		v := m.Value()
		switch {
		case v.Panic:
			panic("poison record " + m.String())
		case v.Permanent:
			return pipeline.Permanent(errRejected)
		}
		if err := deadline.Sleep(ctx, st.pick()); err != nil {
			return err
		}
		rid, _ := m.Header(ledger.RIDHeader)
		e := ledger.Event{Kind: ledger.Handled, Topic: m.Topic(), Partition: m.Partition(), Offset: m.Offset(), Key: m.Key(), RID: string(rid)}
		if write != nil {
			if c.kafkaSink {
				w := e
				w.Kind = ledger.Writing
				rec.write(w)
			}
			if err := write(ctx, m); err != nil {
				return err
			}
		}
		rec.write(e)
		return nil
	}
	guarded, err := handlers.Guard(sink,
		handlers.Name("ledger"),
		handlers.Logger(log),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: c.attempts, BaseDelay: c.baseDelay, MaxDelay: time.Second}),
		handlers.Breaker(handlers.BreakerPolicy{Window: c.breakerW, MinRequests: c.breakerMin, OpenTimeout: c.breakerOpen}),
	)
	if err != nil {
		return nil, err
	}
	var dl pipeline.DeadLetterer = &recordingDLQ{pub: pub, rec: rec}
	if c.share {
		dl = consumer.ShareDeadLetters(dl)
	}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(log))
	for _, topic := range c.topics {
		src := pipeline.Source(p, topic, pipeline.DecodeFunc[Event](decode))
		pipeline.Sink(stages.FanOut(src, topic+"-fanout", c.workers), topic+"-ledger", guarded)
	}
	return p, p.Err()
}

// recordingDLQ publishes a dead letter, then records it in the ledger.
type recordingDLQ struct {
	pub *dlq.Publisher
	rec *recorder
}

func (d *recordingDLQ) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	if err := d.pub.DeadLetter(ctx, dl); err != nil {
		return err
	}
	r := dl.Record
	rid, _ := r.Header(ledger.RIDHeader)
	d.rec.write(ledger.Event{Kind: ledger.DeadLettered, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, RID: string(rid), Class: dl.Class})
	return nil
}

// recorder writes ledger events, and is the consumer's hook for
// assignments, revocations, losses and commits.
type recorder struct {
	led *ledger.Writer
	log *slog.Logger
}

var (
	_ consumer.HookAssigned  = (*recorder)(nil)
	_ consumer.HookRevoked   = (*recorder)(nil)
	_ consumer.HookLost      = (*recorder)(nil)
	_ consumer.HookCommitted = (*recorder)(nil)
)

func (r *recorder) write(e ledger.Event) {
	if err := r.led.Write(e); err != nil {
		r.log.Error("ledger write failed; exiting so that the checker does not report phantom losses", "err", err)
		os.Exit(3)
	}
}

func (r *recorder) each(kind ledger.Kind, tps []pipeline.TopicPartition) {
	for _, tp := range tps {
		r.write(ledger.Event{Kind: kind, Topic: tp.Topic, Partition: tp.Partition})
	}
}

func (r *recorder) OnAssigned(tps []pipeline.TopicPartition) { r.each(ledger.Assigned, tps) }

func (r *recorder) OnRevoked(tps []pipeline.TopicPartition, _ time.Duration, timedOut bool) {
	kind := ledger.Revoked
	if timedOut {
		kind = ledger.RevokedTimedOut
	}
	r.each(kind, tps)
}

func (r *recorder) OnLost(tps []pipeline.TopicPartition) { r.each(ledger.Lost, tps) }

func (r *recorder) OnCommitted(tp pipeline.TopicPartition, offset int64, err error) {
	kind := ledger.Committed
	if err != nil {
		kind = ledger.CommitFailed
	}
	r.write(ledger.Event{Kind: kind, Topic: tp.Topic, Partition: tp.Partition, Offset: offset})
}

// sinkState is what the control file says.
type sinkState struct {
	Down       bool   `json:"down"`
	Latency    string `json:"latency"`
	LatencyMax string `json:"latency_max"`
	latency    time.Duration
	latencyMax time.Duration
}

// pick returns a sink call's latency: latency, or uniformly random up to
// latencyMax when that is above it.
func (st *sinkState) pick() time.Duration {
	if st.latencyMax <= st.latency {
		return st.latency
	}
	return st.latency + rand.N(st.latencyMax-st.latency)
}

// control follows the control file.
type control struct {
	path                  string
	fallback, fallbackMax time.Duration
	log                   *slog.Logger
	state                 atomic.Pointer[sinkState]
	last                  string
}

func newControl(path string, latency, latencyMax time.Duration, log *slog.Logger) *control {
	c := &control{path: path, fallback: latency, fallbackMax: latencyMax, log: log}
	c.state.Store(&sinkState{latency: latency, latencyMax: latencyMax})
	c.poll()
	return c
}

func (c *control) load() *sinkState { return c.state.Load() }

func (c *control) watch(ctx context.Context) {
	if c.path == "" {
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.poll()
		}
	}
}

func (c *control) poll() {
	if c.path == "" {
		return
	}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		b, err = []byte("{}"), nil
	}
	if err != nil || string(b) == c.last {
		return
	}
	var st sinkState
	if err := json.Unmarshal(b, &st); err != nil {
		c.log.Warn("control file is not valid JSON; keeping the previous state", "path", c.path, "err", err)
		return
	}
	st.latency, st.latencyMax = c.fallback, c.fallbackMax
	for _, f := range []struct {
		name, text string
		to         *time.Duration
	}{{"latency", st.Latency, &st.latency}, {"latency_max", st.LatencyMax, &st.latencyMax}} {
		if f.text == "" {
			continue
		}
		d, err := time.ParseDuration(f.text)
		if err != nil {
			c.log.Warn("control file "+f.name+" is not a duration; keeping the previous state", f.name, f.text)
			return
		}
		*f.to = d
	}
	c.last = string(b)
	c.state.Store(&st)
	c.log.Info("sink control changed", "down", st.Down, "latency", st.latency, "latency_max", st.latencyMax)
}
