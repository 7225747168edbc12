package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// Write ends in with a stage that writes each message's outputs without
// waiting for them: the next message is routed and written while earlier
// outputs are on their way, as a raw produce loop does, and each message
// settles when every one of its outputs is acknowledged. It is the fastest
// way to write to Kafka, with the same guarantees as Sink: nothing settles
// before it is acknowledged, and in exactly-once mode the outputs commit with
// the offsets.
//
// Outputs are written in message order, and franz-go retries failed writes
// inside the client (the idempotent producer keeps them in order and
// without duplicates). A write the client gives up on is handled here: a
// record the brokers refuse for good (too large, not authorized) and a
// Route error dead-letter the message (permanent); any other failure writes
// all the message's outputs again after a backoff (100ms doubling to 10s,
// jittered) until they are acknowledged or the partition is stopped, which
// can put them after outputs of later messages. Write does not compose with
// handlers.Guard: the producer is its own guard (batching, retries,
// backpressure when its buffer is full); use Sink to put guards around
// writes.
func Write[T any](in *pipeline.Stream[T], name string, w *Writer, route Route[T]) {
	info := pipeline.StageInfo{Name: name}
	switch {
	case w == nil:
		info.Err = errors.New("nil writer")
	case route == nil:
		info.Err = errors.New("nil route")
	}
	pipeline.ConnectSink(in, info, func(env *pipeline.Env) pipeline.Inlet[T] {
		return &writeStage[T]{env: env, name: name, w: w, route: route, idle: make(chan struct{}, 1)}
	})
}

// writeStage is one partition's instance of Write.
type writeStage[T any] struct {
	env      *pipeline.Env
	name     string
	w        *Writer
	route    Route[T]
	inFlight atomic.Int64  // messages written and not yet settled or failed
	idle     chan struct{} // cap 1: poked when inFlight drops to zero
	noClient sync.Once
}

// release ends one message's write.
func (s *writeStage[T]) release() {
	if s.inFlight.Add(-1) == 0 {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// write is one message on its way: its outputs, and how many are still
// unacknowledged. It is also the context of each of its records (the
// partition's, which it embeds), so that one promise function finds the
// write from the record without a closure per message; a message of one
// output, the common case, is then a single allocation with its record.
type write struct {
	context.Context // the partition's: cancels, and carries values for hooks
	s               interface{ finish(*write) }
	tok             pipeline.Token
	records         int // input records of the message, for Handled
	recs            []*kgo.Record
	left            atomic.Int32
	err             atomic.Pointer[error]
	start           time.Time
	tries           int
	rec             kgo.Record     // the record of a message of one output
	one             [1]*kgo.Record // recs of a message of one output
}

// writeKey finds a write among a record's context values when a hook
// (kotel) has wrapped the record's context.
type writeKey struct{}

// Value returns the write for writeKey and the partition context's values
// otherwise.
func (wr *write) Value(key any) any {
	if _, ok := key.(writeKey); ok {
		return wr
	}
	return wr.Context.Value(key)
}

// writeOf is the write that r belongs to.
func writeOf(r *kgo.Record) *write {
	if wr, ok := r.Context.(*write); ok {
		return wr
	}
	return r.Context.Value(writeKey{}).(*write)
}

func (s *writeStage[T]) Push(m pipeline.Message[T]) bool {
	env := s.env
	n := env.Count(m.Token())
	if env.Context().Err() != nil {
		env.Handled(s.name, pipeline.OutcomeAbandoned, n, 0)
		return false
	}
	out := getOutputs()
	defer putOutputs(out) // after the records are filled: they share nothing with out
	if err := routeInto(s.route, m, out, false); err != nil {
		o := env.Fail(s.name, m.Token(), err)
		env.Handled(s.name, o, n, 0)
		return o != pipeline.OutcomeAbandoned
	}
	if out.Len() == 0 {
		m.Token().Settle()
		env.Handled(s.name, pipeline.OutcomeOK, n, 0)
		return true
	}
	ctx := env.Context()
	wr := &write{Context: ctx, s: s, tok: m.Token(), records: n}
	if k := out.Len(); k == 1 {
		wr.one[0] = &wr.rec
		wr.recs = wr.one[:]
	} else {
		rs := make([]kgo.Record, k)
		wr.recs = make([]*kgo.Record, k)
		for i := range rs {
			wr.recs[i] = &rs[i]
		}
	}
	if env.Timed() {
		wr.start = env.Clock().Now()
	}
	for i := range out.outs {
		fillRecord(wr.recs[i], s.w, wr, m, out, &out.outs[i])
	}
	s.inFlight.Add(1)
	s.send(wr)
	return ctx.Err() == nil
}

// send writes wr's records; the last acknowledgement finishes it.
func (s *writeStage[T]) send(wr *write) {
	cl := s.w.client()
	if cl == nil {
		s.noClient.Do(func() {
			s.env.Logger().Error("kafka sink: records held unsettled", "stage", s.name, "err", ErrNoClient)
		})
		s.env.Handled(s.name, pipeline.OutcomeHeld, wr.records, 0)
		s.release()
		return
	}
	wr.err.Store(nil)
	wr.left.Store(int32(len(wr.recs)))
	for _, r := range wr.recs {
		r.Context = wr // a hook may have wrapped it in an earlier attempt
		cl.Produce(wr, r, writeDone)
	}
}

// writeDone is the promise of every record of a write. It runs in the
// client's goroutine and must not block.
func writeDone(r *kgo.Record, err error) {
	wr := writeOf(r)
	if err != nil {
		e := err
		wr.err.CompareAndSwap(nil, &e)
	}
	if wr.left.Add(-1) == 0 {
		wr.s.finish(wr)
	}
}

// finish settles wr once every record is acknowledged, or hands a failure
// to a goroutine of the partition.
func (s *writeStage[T]) finish(wr *write) {
	env := s.env
	errp := wr.err.Load()
	if errp == nil {
		wr.tok.Settle()
		env.Handled(s.name, pipeline.OutcomeOK, wr.records, s.latency(wr))
		s.release()
		return
	}
	env.Go(func() { s.failed(wr, *errp) })
}

// failed handles a write the client gave up on: dead-letters a refused
// one, and writes a transient failure again after a backoff.
func (s *writeStage[T]) failed(wr *write, err error) {
	env := s.env
	if env.Context().Err() != nil {
		env.Handled(s.name, pipeline.OutcomeAbandoned, wr.records, 0)
		s.release()
		return
	}
	err = fmt.Errorf("kafka sink: write: %w", err)
	if refused(err) {
		o := env.Fail(s.name, wr.tok, pipeline.Permanent(err))
		env.Handled(s.name, o, wr.records, s.latency(wr))
		s.release()
		return
	}
	wr.tries++
	d := backoff(wr.tries)
	env.Logger().Warn("kafka sink: write failed; writing the message's outputs again", "stage", s.name,
		"attempt", wr.tries, "backoff", d, "err", err)
	if !env.Sleep(d) {
		env.Handled(s.name, pipeline.OutcomeAbandoned, wr.records, 0)
		s.release()
		return
	}
	s.send(wr) // still in flight: the new attempt finishes it
}

// backoff is the wait before the n-th new attempt: full jitter under a
// ceiling of 100ms doubling up to 10s.
func backoff(n int) time.Duration {
	ceiling := min(100*time.Millisecond<<min(n-1, 7), 10*time.Second)
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

// latency is how long wr took, if the pipeline is timed.
func (s *writeStage[T]) latency(wr *write) time.Duration {
	if wr.start.IsZero() {
		return 0
	}
	return s.env.Clock().Now().Sub(wr.start)
}

// End waits until every message written is settled or failed, or the
// partition's context is done.
func (s *writeStage[T]) End() {
	for s.inFlight.Load() > 0 {
		select {
		case <-s.idle:
		case <-s.env.Context().Done():
			return
		}
	}
}
