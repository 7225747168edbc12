package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// DefaultSuffix is appended to a source topic's name to name its dead-letter
// topic unless Target says otherwise.
const DefaultSuffix = ".dlq"

// Opt configures a Publisher.
type Opt interface{ apply(*pubCfg) }

type optFunc func(*pubCfg)

func (f optFunc) apply(c *pubCfg) { f(c) }

type pubCfg struct {
	client      *kgo.Client
	conn        *sluice.Connection
	clientOpts  []kgo.Opt
	suffix      string
	targets     map[string]string
	group       string
	autoCreate  bool
	replication int16
	hooks       []Hook
	clock       sluice.Clock
}

// Client makes the Publisher produce through cl, for example the consumer's
// own client, instead of creating one. cl must use acks=all and the
// idempotent producer (kgo's defaults); New checks. Close does not close
// cl. Give cl the option kgo.RecordPartitioner(dlq.Partitioner(nil)) to keep
// each source partition's dead letters in order; with kgo's default
// partitioner, dead letters are placed by key hash, which keeps the order of
// records that share a key only. Exactly one of Client and Connection is
// required.
func Client(cl *kgo.Client) Opt { return optFunc(func(c *pubCfg) { c.client = cl }) }

// Connection makes the Publisher create its own client on conn (the same
// value the consumer is given: brokers, TLS, SASL, client ID), with
// acks=all, the idempotent producer, no linger (each DeadLetter waits for
// its write, so lingering would only add latency) and Partitioner(nil).
// Close closes it. Exactly one of Client and Connection is required.
func Connection(conn sluice.Connection) Opt {
	return optFunc(func(c *pubCfg) { c.conn = &conn })
}

// ClientOpts adds franz-go options to the client that Connection creates,
// after the connection's and the Publisher's own: client hooks such as
// metrics.KafkaClient or tracing.KafkaClient, a dialer. Options that weaken
// durability (acks below all, no idempotence) are rejected by New. Default
// none.
func ClientOpts(opts ...kgo.Opt) Opt {
	return optFunc(func(c *pubCfg) { c.clientOpts = append(c.clientOpts, opts...) })
}

// Suffix sets what is appended to a source topic's name to name its
// dead-letter topic. Default DefaultSuffix (".dlq").
func Suffix(s string) Opt { return optFunc(func(c *pubCfg) { c.suffix = s }) }

// Target sends the dead letters of source to target instead of
// source+Suffix. It may be given once per source topic.
func Target(source, target string) Opt {
	return optFunc(func(c *pubCfg) {
		if c.targets == nil {
			c.targets = make(map[string]string)
		}
		c.targets[source] = target
	})
}

// Group sets the consumer group written to HeaderGroup. Default: the
// ConsumerGroup of the client given with Client, else none.
func Group(name string) Opt { return optFunc(func(c *pubCfg) { c.group = name }) }

// AutoCreate makes the Publisher create a missing dead-letter topic, before
// its first write to it, with as many partitions as the source topic and
// the given replication factor (-1: the broker's default). Off by default,
// because production clusters usually create topics through their own
// tooling; when off, a missing topic makes writes fail (and be retried)
// unless the broker auto-creates topics.
func AutoCreate(replicationFactor int16) Opt {
	return optFunc(func(c *pubCfg) { c.autoCreate, c.replication = true, replicationFactor })
}

// Hooks adds observability hooks, each implementing one or more of
// HookWritten and HookWriteFailed (a *metrics.Metrics does); New rejects a
// value that implements neither. Default none.
func Hooks(hs ...Hook) Opt { return optFunc(func(c *pubCfg) { c.hooks = append(c.hooks, hs...) }) }

// Clock sets the clock that times writes for hooks (WriteInfo.Latency).
// Default sluice.SystemClock.
func Clock(clk sluice.Clock) Opt { return optFunc(func(c *pubCfg) { c.clock = clk }) }

// Publisher writes dead letters to Kafka. It implements pipeline.DeadLetterer
// and is safe for concurrent use.
type Publisher struct {
	cfg     pubCfg
	cl      *kgo.Client
	own     bool
	txn     atomic.Pointer[kgo.Client] // the consumer's, in exactly-once mode
	adm     *kadm.Client
	written []HookWritten
	failed  []HookWriteFailed

	mu      sync.Mutex
	ensured map[string]bool // dead-letter topics known to exist

	closeOnce sync.Once
}

var _ pipeline.DeadLetterer = (*Publisher)(nil)

// New validates the options and returns a Publisher.
func New(opts ...Opt) (*Publisher, error) {
	cfg := pubCfg{suffix: DefaultSuffix, replication: -1, clock: sluice.SystemClock{}}
	for _, o := range opts {
		if o == nil {
			return nil, configErr("Opt", nil, "nil option")
		}
		o.apply(&cfg)
	}
	switch {
	case cfg.client == nil && cfg.conn == nil:
		return nil, configErr("Connection", nil, "a Connection (or a Client to share) is required")
	case cfg.client != nil && (cfg.conn != nil || len(cfg.clientOpts) > 0):
		return nil, configErr("Client", nil, "conflicts with Connection and ClientOpts, which configure a client of the Publisher's own")
	case cfg.suffix == "":
		return nil, configErr("Suffix", nil, "must not be empty")
	case cfg.clock == nil:
		return nil, configErr("Clock", nil, "must not be nil")
	case cfg.replication == 0 || cfg.replication < -1:
		return nil, configErr("AutoCreate", cfg.replication, "want a replication factor of -1 (the broker's default) or at least 1")
	}
	if cfg.conn != nil {
		if err := cfg.conn.Check("dlq"); err != nil {
			return nil, err
		}
	}
	for src, dst := range cfg.targets {
		if src == "" || dst == "" || src == dst {
			return nil, configErr("Target", fmt.Sprintf("%q -> %q", src, dst), "want two different, non-empty topics")
		}
	}
	for i, h := range cfg.hooks {
		_, w := h.(HookWritten)
		_, f := h.(HookWriteFailed)
		if !w && !f {
			return nil, configErr("Hooks", fmt.Sprintf("%T", h), fmt.Sprintf("hook %d implements neither HookWritten nor HookWriteFailed", i))
		}
	}
	p := &Publisher{cfg: cfg, cl: cfg.client, ensured: make(map[string]bool)}
	if p.cl == nil {
		base := append(cfg.conn.ClientOpts(),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(0),
			// Kafka's default max.message.bytes, above franz-go's
			// default batch limit, so that a dead letter of a record
			// that fit its source topic fits here too.
			kgo.ProducerBatchMaxBytes(DefaultMaxMessageBytes),
			kgo.RecordPartitioner(Partitioner(nil)),
		)
		cl, err := kgo.NewClient(append(base, cfg.clientOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("dlq: new client: %w", err)
		}
		p.cl, p.own = cl, true
	}
	if err := checkDurable(p.cl); err != nil {
		p.Close()
		return nil, err
	}
	if p.cfg.group == "" {
		p.cfg.group, _ = p.cl.OptValue(kgo.ConsumerGroup).(string)
	}
	p.adm = kadm.NewClient(p.cl)
	for _, h := range cfg.hooks {
		if h, ok := h.(HookWritten); ok {
			p.written = append(p.written, h)
		}
		if h, ok := h.(HookWriteFailed); ok {
			p.failed = append(p.failed, h)
		}
	}
	return p, nil
}

// configErr is a *sluice.ConfigError of this package.
func configErr(option string, value any, reason string) error {
	return &sluice.ConfigError{Package: "dlq", Option: option, Value: value, Reason: reason}
}

// checkDurable rejects a client that could lose an acknowledged dead letter.
func checkDurable(cl *kgo.Client) error {
	if acks, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); acks != kgo.AllISRAcks() {
		return configErr("Client", nil, "producer must use acks=all (kgo.RequiredAcks(kgo.AllISRAcks()))")
	}
	if off, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); off {
		return configErr("Client", nil, "producer must be idempotent (drop kgo.DisableIdempotentWrite)")
	}
	return nil
}

// TopicFor names the dead-letter topic of a source topic.
func (p *Publisher) TopicFor(source string) string {
	if t, ok := p.cfg.targets[source]; ok {
		return t
	}
	return source + p.cfg.suffix
}

// DeadLetter writes dl to its dead-letter topic with the original key, value
// and headers (provenance headers of an earlier dead-lettering excepted)
// plus fresh provenance headers, and returns nil once the brokers have
// acknowledged the write (acks=all). It returns an error if the write failed
// or ctx ended first; the write may then still land, so a retried dead
// letter can be written twice (at-least-once). It does not settle the
// record: the caller does, after a nil return.
func (p *Publisher) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	if dl.Record == nil {
		return &sluice.ConfigError{Package: "dlq", Option: "DeadLetter", Field: "Record", Reason: "a dead letter needs the record"}
	}
	src := dl.Record
	info := WriteInfo{SourceTopic: src.Topic, SourcePartition: src.Partition, Topic: p.TopicFor(src.Topic), Stage: dl.Stage, Class: dl.Class}
	if info.Class == "" {
		info.Class = pipeline.ClassError
	}
	start := p.cfg.clock.Now()
	err := p.write(ctx, dl, &info)
	info.Latency = p.cfg.clock.Now().Sub(start)
	if err != nil {
		err = fmt.Errorf("dead-letter %s to %s: %w", src, info.Topic, err)
		for _, h := range p.failed {
			h.OnDeadLetterWriteFailed(info, err)
		}
		return err
	}
	for _, h := range p.written {
		h.OnDeadLetterWritten(info)
	}
	return nil
}

func (p *Publisher) write(ctx context.Context, dl pipeline.DeadLetter, info *WriteInfo) error {
	if p.cfg.autoCreate {
		if err := p.ensureTopic(ctx, info.Topic, info.SourceTopic); err != nil {
			return err
		}
	}
	rec := p.record(dl, *info)
	rec.Context = withPartition(ctx, dl.Record.Partition)
	if recordBytes(rec) > p.maxBatchBytes() {
		dropValue(rec, info) // the client would refuse it
	}
	err := p.produce(ctx, rec)
	if errors.Is(err, kerr.MessageTooLarge) && dropValue(rec, info) {
		// The topic's limit is below the client's: keep the provenance.
		err = p.produce(ctx, rec)
	}
	return err
}

// DefaultMaxMessageBytes is Kafka's default max.message.bytes, the batch
// limit of the client a Publisher creates.
const DefaultMaxMessageBytes = 1_048_588

// InTransactions makes the Publisher write dead letters through cl, inside
// the consumer's transactions (consumer.ExactlyOnce; it implements
// consumer.TxnWriter): a record's dead letter then commits with its offset,
// and a transaction that aborts takes its dead letters with it, so that a
// read_committed reader sees each dead letter once. Its own client, if it
// has one, still creates topics (AutoCreate). Give the consumer the option
// consumer.ClientOpts(kgo.RecordPartitioner(dlq.Partitioner(nil))) to keep
// each source partition's dead letters in order, as with Client.
func (p *Publisher) InTransactions(cl *kgo.Client) error {
	if err := checkDurable(cl); err != nil {
		return err
	}
	if id, _ := cl.OptValue(kgo.TransactionalID).(string); id == "" {
		return configErr("InTransactions", nil, "the client has no transactional ID")
	}
	p.txn.Store(cl)
	return nil
}

// produce writes rec and waits for its acknowledgement or ctx.
func (p *Publisher) produce(ctx context.Context, rec *kgo.Record) error {
	cl := p.cl
	if txn := p.txn.Load(); txn != nil {
		cl = txn
	}
	done := make(chan error, 1) // the promise never blocks, even after we stop waiting
	cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dropValue makes rec a dead letter without the record's value, which does
// not fit the dead-letter topic: provenance says where the original is. It
// reports whether there was a value to drop.
func dropValue(rec *kgo.Record, info *WriteInfo) bool {
	if len(rec.Value) == 0 {
		return false
	}
	info.ValueDropped = len(rec.Value)
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderValueDropped, Value: []byte(strconv.Itoa(info.ValueDropped))})
	rec.Value = nil
	return true
}

// maxBatchBytes is the client's batch limit: a record larger than it is
// refused before it is sent.
func (p *Publisher) maxBatchBytes() int {
	if n, ok := p.cl.OptValue(kgo.ProducerBatchMaxBytes).(int32); ok && n > 0 {
		return int(n)
	}
	return 1_000_012 // franz-go's default
}

// recordBytes is an upper bound of rec's size in a record batch: its key,
// value and headers, varint lengths, and the batch's own overhead.
func recordBytes(rec *kgo.Record) int {
	n := 61 + 21 + len(rec.Key) + len(rec.Value) // batch header, record header
	for _, h := range rec.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// record builds the dead letter for dl.
func (p *Publisher) record(dl pipeline.DeadLetter, info WriteInfo) *kgo.Record {
	src := dl.Record
	prov := Provenance{
		Topic:        src.Topic,
		Partition:    src.Partition,
		Offset:       src.Offset,
		Timestamp:    src.Timestamp,
		Group:        p.cfg.group,
		Stage:        dl.Stage,
		Class:        info.Class,
		Attempts:     dl.Attempts,
		FirstFailure: dl.FirstFailure,
		LastFailure:  dl.LastFailure,
		ReplayCount:  ReplayCount(src.Headers),
	}
	if dl.Err != nil {
		prov.Error = dl.Err.Error()
	}
	hs := make([]kgo.RecordHeader, 0, len(src.Headers)+12)
	for _, h := range src.Headers {
		if !IsProvenanceHeader(h.Key) {
			hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	return &kgo.Record{Topic: info.Topic, Key: src.Key, Value: src.Value, Headers: prov.AppendHeaders(hs)}
}

// ensureTopic creates the dead-letter topic dst with the partition count of
// src when it does not exist. Success is remembered; failure is not, so
// the next write tries again.
func (p *Publisher) ensureTopic(ctx context.Context, dst, src string) error {
	p.mu.Lock()
	ok := p.ensured[dst]
	p.mu.Unlock()
	if ok {
		return nil
	}
	ds, err := p.adm.ListTopics(ctx, dst, src)
	if err != nil {
		return fmt.Errorf("describe %s: %w", dst, err)
	}
	if d, found := ds[dst]; !found || d.Err != nil {
		if found && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("describe %s: %w", dst, d.Err)
		}
		s, found := ds[src]
		if !found || s.Err != nil {
			return fmt.Errorf("partition count of source %s: %w", src, &TopicError{Topic: src})
		}
		_, err := p.adm.CreateTopic(ctx, int32(len(s.Partitions)), p.cfg.replication, nil, dst)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %s: %w", dst, err)
		}
	}
	p.mu.Lock()
	p.ensured[dst] = true
	p.mu.Unlock()
	return nil
}

// Close closes the client the Publisher created (not one given with
// Client). It may be called more than once; DeadLetter must not be called
// after it.
func (p *Publisher) Close() {
	p.closeOnce.Do(func() {
		if p.own {
			p.cl.Close()
		}
	})
}
