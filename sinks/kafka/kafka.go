package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

// Route turns a message into the records it becomes, by adding them to
// out: none (the message is settled with nothing written), one, or many.
// The sink owns out and reuses it for the next message once Route returns,
// so Route must not keep out or m. An error means the message cannot be
// written: it is permanent (pipeline.Permanent), so the message is
// dead-lettered, and what Route added is discarded.
type Route[T any] func(m pipeline.Message[T], out *Outputs) error

// Outputs collects the records a Route makes of one message. A sink passes
// it to Route empty, and reuses it, so that routing a message of one
// output allocates nothing.
type Outputs struct {
	outs []output
	hdrs []pipeline.Header // the headers of every output, in order
}

// output is one record added to Outputs; its headers are hdrs[from:to].
type output struct {
	topic      string
	key, value []byte
	from, to   int
}

// Add adds a record for topic (required) with key, value and headers. A
// nil key spreads records over partitions; records with the same key go to
// the same partition, in the order they are written. The writer adds the
// input record's trace context (traceparent, tracestate) unless headers
// set it, and the provenance header when the Provenance option asks for
// it.
//
// Add copies headers but not the bytes of key, value and header values:
// the record is written after Route returns, so they must not change
// afterwards. A key or value of the input message (m.Key()) may be given
// as is.
func (o *Outputs) Add(topic string, key, value []byte, headers ...pipeline.Header) {
	from := len(o.hdrs)
	o.hdrs = append(o.hdrs, headers...)
	o.outs = append(o.outs, output{topic: topic, key: key, value: value, from: from, to: len(o.hdrs)})
}

// Len returns the number of records added.
func (o *Outputs) Len() int { return len(o.outs) }

// headers are the headers added with x.
func (o *Outputs) headers(x *output) []pipeline.Header { return o.hdrs[x.from:x.to] }

// reset empties o, dropping its references to the user's memory.
func (o *Outputs) reset() {
	clear(o.outs)
	clear(o.hdrs)
	o.outs, o.hdrs = o.outs[:0], o.hdrs[:0]
}

// outputsPool recycles Outputs across the messages of every sink (Sink
// and Write may run concurrently, after a fan-out, so none owns one): a
// sink gets one, routes a message into it, copies what was added into new
// records and puts it back, so that franz-go, which keeps a record until
// its promise, never holds memory the next message reuses.
var outputsPool = sync.Pool{New: func() any { return new(Outputs) }}

func getOutputs() *Outputs { return outputsPool.Get().(*Outputs) }

// putOutputs recycles o unless a message of many outputs made it large.
func putOutputs(o *Outputs) {
	if cap(o.outs) > 64 || cap(o.hdrs) > 256 {
		return
	}
	o.reset()
	outputsPool.Put(o)
}

// DefaultProvenanceHeader is the header the Provenance option adds unless it
// names another.
const DefaultProvenanceHeader = "sluice.source"

// DefaultProduceTimeout bounds how long a message waits for its outputs to
// be acknowledged, unless ProduceTimeout says otherwise.
const DefaultProduceTimeout = 30 * time.Second

// Opt configures a Writer.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type cfg struct {
	client     *kgo.Client
	conn       *sluice.Connection
	clientOpts []kgo.Opt
	provenance string
	timeout    time.Duration
}

// Connection makes the Writer create its own client on conn (the
// consumer's sluice.Connection: brokers, TLS, SASL, client ID), with
// acks=all and the idempotent producer (franz-go's defaults, which
// NewWriter checks) and no linger (each message waits for its outputs;
// batches form while a request is in flight). Close closes it. Leave
// Connection and Client out to write only in the consumer's transactions
// (consumer.ExactlyOnce).
func Connection(conn sluice.Connection) Opt { return optFunc(func(c *cfg) { c.conn = &conn }) }

// ClientOpts adds franz-go options (compression, kotel tracing, kprom
// metrics) to the client that Connection creates, after the connection's.
// Options that weaken durability (acks below all, no idempotence) are
// rejected by NewWriter. Default none.
func ClientOpts(opts ...kgo.Opt) Opt {
	return optFunc(func(c *cfg) { c.clientOpts = append(c.clientOpts, opts...) })
}

// Client makes the Writer produce through cl instead of creating a client;
// cl must use acks=all and the idempotent producer. Close does not close it.
func Client(cl *kgo.Client) Opt { return optFunc(func(c *cfg) { c.client = cl }) }

// Provenance adds a header to every output naming the input record it came
// from, as "topic/partition@offset" (one per input record for a message of
// many, such as a window). header "" means DefaultProvenanceHeader. Default:
// no such header.
func Provenance(header string) Opt {
	return optFunc(func(c *cfg) {
		if header == "" {
			header = DefaultProvenanceHeader
		}
		c.provenance = header
	})
}

// ProduceTimeout bounds how long a message waits for its outputs to be
// acknowledged, overriding DefaultProduceTimeout (30s); the message's own
// deadline wins when it is earlier. When it passes the sink returns a
// transient error (retried by the guards, or by the pipeline): outputs that
// land later are written twice in at-least-once mode, and discarded with
// their aborted transaction in exactly-once mode.
func ProduceTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.timeout = d }) }

// configErr is a *sluice.ConfigError of this package.
func configErr(option string, value any, reason string) error {
	return &sluice.ConfigError{Package: "kafka", Option: option, Value: value, Reason: reason}
}

// ErrNoClient is returned by a sink whose Writer has no client: it was
// given neither Connection nor Client and was not passed to
// consumer.ExactlyOnce.
var ErrNoClient = errors.New("kafka sink: the writer has no client: give it a Connection or a Client, or pass it to consumer.ExactlyOnce")

// Writer produces the outputs of Kafka sinks: at least once through a
// client of its own (or one given), or exactly once inside the consumer's
// transactions once passed to consumer.ExactlyOnce. It is safe for
// concurrent use; many sinks may share one.
type Writer struct {
	cfg cfg
	cl  *kgo.Client // at least once
	own bool
	txn atomic.Pointer[kgo.Client] // the consumer's transactional client

	closeOnce sync.Once
}

// NewWriter validates the options and returns a Writer.
func NewWriter(opts ...Opt) (*Writer, error) {
	c := cfg{timeout: DefaultProduceTimeout}
	for _, o := range opts {
		if o == nil {
			return nil, configErr("Opt", nil, "nil option")
		}
		o.apply(&c)
	}
	switch {
	case c.client != nil && (c.conn != nil || len(c.clientOpts) > 0):
		return nil, configErr("Client", nil, "conflicts with Connection and ClientOpts, which configure a client of the Writer's own")
	case len(c.clientOpts) > 0 && c.conn == nil:
		return nil, configErr("ClientOpts", nil, "need a Connection")
	case c.timeout <= 0:
		return nil, configErr("ProduceTimeout", c.timeout, "must be positive")
	}
	if c.conn != nil {
		if err := c.conn.Check("kafka"); err != nil {
			return nil, err
		}
	}
	w := &Writer{cfg: c, cl: c.client}
	if c.conn != nil {
		base := append(c.conn.ClientOpts(), kgo.RequiredAcks(kgo.AllISRAcks()),
			// Each message waits for its outputs, so lingering only
			// adds latency; batches still form while a request is in
			// flight (franz-go sends one at a time per broker).
			kgo.ProducerLinger(0))
		cl, err := kgo.NewClient(append(base, c.clientOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("kafka sink: new client: %w", err)
		}
		w.cl, w.own = cl, true
	}
	if w.cl != nil {
		if err := checkDurable(w.cl); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// checkDurable rejects a client that could lose an acknowledged output.
func checkDurable(cl *kgo.Client) error {
	if acks, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); acks != kgo.AllISRAcks() {
		return configErr("Client", nil, "producer must use acks=all (kgo.RequiredAcks(kgo.AllISRAcks()))")
	}
	if off, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); off {
		return configErr("Client", nil, "producer must be idempotent (drop kgo.DisableIdempotentWrite)")
	}
	return nil
}

// InTransactions makes the Writer produce through cl inside the consumer's
// transactions (it implements consumer.TxnWriter; consumer.ExactlyOnce
// calls it). From then on its own client, if any, is not used.
func (w *Writer) InTransactions(cl *kgo.Client) error {
	if err := checkDurable(cl); err != nil {
		return err
	}
	if id, _ := cl.OptValue(kgo.TransactionalID).(string); id == "" {
		return configErr("InTransactions", nil, "the client has no transactional ID")
	}
	w.txn.Store(cl)
	return nil
}

// Transactional reports whether the Writer writes inside the consumer's
// transactions.
func (w *Writer) Transactional() bool { return w.txn.Load() != nil }

// Close closes the client the Writer created, if it did. Writes after Close
// fail.
func (w *Writer) Close() {
	w.closeOnce.Do(func() {
		if w.own {
			w.cl.Close()
		}
	})
}

// client is the client to write through now.
func (w *Writer) client() *kgo.Client {
	if txn := w.txn.Load(); txn != nil {
		return txn
	}
	return w.cl
}

// Sink returns a sink function for pipeline.Sink (or handlers.Guard) that
// writes each message's outputs with w and returns nil once every one of
// them is acknowledged by the brokers (acks=all), so that the message
// settles only then. In exactly-once mode the acknowledgement is the
// write into the transaction, which commits together with the message's
// offset.
//
// Errors: a write the brokers refuse for good (a record too large,
// authorization, an invalid record or topic) is permanent
// (pipeline.Permanent), so the message is dead-lettered; any other failure
// (a broker down, a timeout, the produce timeout) is transient and returned
// as is, for the guards or the pipeline to retry. A retried message writes
// all its outputs again: in at-least-once mode, outputs acknowledged before
// the failure are then written twice.
func Sink[T any](w *Writer, route Route[T]) pipeline.SinkFunc[T] {
	return func(ctx context.Context, m pipeline.Message[T]) error {
		out := getOutputs()
		err := routeInto(route, m, out, false)
		n := out.Len()
		if err != nil || n == 0 {
			putOutputs(out)
			return err
		}
		cl := w.client()
		if cl == nil {
			putOutputs(out)
			return ErrNoClient
		}
		// recs does not escape, so that a small one can be on the stack.
		slab := make([]kgo.Record, n)
		recs := make([]*kgo.Record, n)
		for i := range out.outs {
			recs[i] = &slab[i]
			fillRecord(recs[i], w, ctx, m, out, &out.outs[i])
		}
		putOutputs(out) // the records share nothing with it
		ctx, cancel := context.WithTimeout(ctx, w.cfg.timeout)
		defer cancel()
		return produceAll(ctx, cl, recs)
	}
}

// routeInto routes m into out. Its errors are permanent: the route's, and
// an output without a topic; those of a batch's member name it.
func routeInto[T any](route Route[T], m pipeline.Message[T], out *Outputs, member bool) error {
	err := route(m, out)
	if err == nil {
		for i := range out.outs {
			if out.outs[i].topic == "" {
				err = fmt.Errorf("output %d has no topic", i)
				break
			}
		}
		if err == nil {
			return nil
		}
	}
	if member {
		return pipeline.Permanent(fmt.Errorf("kafka sink: route %s: %w", m, err))
	}
	return pipeline.Permanent(fmt.Errorf("kafka sink: route: %w", err))
}

// BatchSink is Sink for batches (stages.Batches): each member of a batch is
// routed, and every output of every member is written before one wait for
// all the acknowledgements, as a raw poll-produce-wait loop does; the batch
// settles once they are all acknowledged. Headers (trace context,
// provenance) come from each output's own member. This is the fast way to
// write to Kafka: a sink per record waits for a broker round trip per
// record, a batch sink for one per batch.
//
// A batch succeeds or fails as a whole: a Route error or a refused output
// dead-letters every member (the others' outputs may have been written; a
// replay writes them again). Do what can fail for one record (decoding,
// validation, enrichment) in a stage before the batch, such as
// stages.TryMap, so that a bad record is dead-lettered alone.
func BatchSink[T any](w *Writer, route Route[T]) pipeline.SinkFunc[stages.Batch[T]] {
	return func(ctx context.Context, batch pipeline.Message[stages.Batch[T]]) error {
		ms := batch.Value()
		// One allocation for the records of a batch of one output per
		// member, the common case.
		slab := make([]kgo.Record, 0, len(ms))
		recs := make([]*kgo.Record, 0, len(ms))
		out := getOutputs()
		defer putOutputs(out)
		for _, m := range ms {
			out.reset()
			if err := routeInto(route, m, out, true); err != nil {
				return err
			}
			for i := range out.outs {
				var r *kgo.Record
				if len(slab) < cap(slab) {
					slab = slab[:len(slab)+1]
					r = &slab[len(slab)-1]
				} else {
					r = new(kgo.Record)
				}
				fillRecord(r, w, ctx, m, out, &out.outs[i])
				recs = append(recs, r)
			}
		}
		if len(recs) == 0 {
			return nil
		}
		cl := w.client()
		if cl == nil {
			return ErrNoClient
		}
		ctx, cancel := context.WithTimeout(ctx, w.cfg.timeout)
		defer cancel()
		return produceAll(ctx, cl, recs)
	}
}

// fillRecord makes r the record of o, added to out for m, with context
// ctx. r shares nothing with out: its headers are a new slice.
func fillRecord[T any](r *kgo.Record, w *Writer, ctx context.Context, m pipeline.Message[T], out *Outputs, o *output) {
	r.Topic, r.Key, r.Value, r.Context = o.topic, o.key, o.value, ctx
	if hs := out.headers(o); len(hs) > 0 {
		r.Headers = make([]kgo.RecordHeader, 0, len(hs)+2)
		for _, h := range hs {
			r.Headers = append(r.Headers, kgo.RecordHeader(h))
		}
	}
	if rec := oneRecord(m.Token()); rec != nil {
		// A message of one record, the common case: no iterator.
		addInputHeaders(r, w, rec)
		return
	}
	for rec := range pipeline.Records(m.Token()) {
		addInputHeaders(r, w, rec)
	}
}

// oneRecord is the record t stands for if it stands for one through
// wrappers (a FanOut lease, say), and nil otherwise.
func oneRecord(t pipeline.Token) *pipeline.Record {
	for {
		switch x := t.(type) {
		case *pipeline.Record:
			return x
		case pipeline.Wrapper:
			t = x.Unwrap()
		default:
			return nil
		}
	}
}

// addInputHeaders adds to r the headers that come from the input record
// rec: its trace context (that of the first input record that has one: a
// kotel hook on the client replaces it with the sink's span) and the
// provenance header.
func addInputHeaders(r *kgo.Record, w *Writer, rec *pipeline.Record) {
	if len(rec.Headers) > 0 {
		for _, key := range traceHeaders {
			if v, ok := rec.Header(key); ok && !hasHeader(r.Headers, key) {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: v})
			}
		}
	}
	if w.cfg.provenance != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: w.cfg.provenance,
			Value: fmt.Appendf(nil, "%s/%d@%d", rec.Topic, rec.Partition, rec.Offset)})
	}
}

// traceHeaders are the W3C Trace Context headers.
var traceHeaders = []string{"traceparent", "tracestate"}

func hasHeader(hs []kgo.RecordHeader, key string) bool {
	for _, h := range hs {
		if h.Key == key {
			return true
		}
	}
	return false
}

// produceAll writes recs and waits until every one is acknowledged or ctx
// ends. It returns the first error, made permanent when the brokers refuse
// the record for good.
func produceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	a := &acks{done: make(chan struct{})}
	a.left.Store(int64(len(recs)))
	promise := a.ack // one closure for all the records
	for _, r := range recs {
		cl.Produce(ctx, r, promise)
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		return fmt.Errorf("kafka sink: outputs not acknowledged: %w", ctx.Err())
	}
	errp := a.first.Load()
	if errp == nil {
		return nil
	}
	err := fmt.Errorf("kafka sink: write: %w", *errp)
	if refused(err) {
		return pipeline.Permanent(err)
	}
	return err
}

// acks counts the acknowledgements of a produceAll.
type acks struct {
	left  atomic.Int64
	first atomic.Pointer[error]
	done  chan struct{} // closed by the last acknowledgement
}

// ack is the promise of each record. It runs in the client's goroutine and
// must not block.
func (a *acks) ack(_ *kgo.Record, err error) {
	if err != nil {
		e := err
		a.first.CompareAndSwap(nil, &e)
	}
	if a.left.Add(-1) == 0 {
		close(a.done)
	}
}

// refused reports whether the brokers refuse a record for good: retrying
// the same write cannot succeed.
func refused(err error) bool {
	for _, e := range []error{
		kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.InvalidTopicException, kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed,
		kerr.TransactionalIDAuthorizationFailed, kerr.UnsupportedForMessageFormat,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
