package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// DeadlineHeader is the record header that carries an absolute deadline set
// upstream: the decimal Unix time in milliseconds by which the record should be
// handled, for example "1767225600000". When it is present and valid, the
// record's Deadline is the earlier of it and the consumer's per-record budget.
const DeadlineHeader = "sluice-deadline"

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record as a source delivers it: the raw key, value and headers
// plus where it came from. It knows nothing of Kafka clients; the consumer
// fills it in.
//
// A Record is also its own settlement token. The source hands it over with one
// holder; every branch that receives it holds it once; each holder calls
// Settle exactly once when it has finished with the record (its sink
// succeeded, a stage filtered it out, or its dead letter was acknowledged).
// When the last holder settles, the source's Settler is told. A record whose
// handling is abandoned (cancelled by a revoke or shutdown) is never settled,
// so its offset is never committed.
//
// Fields are read-only once the record has been handed to a Partition.
// Key, Value and header values may share memory with other records (the
// consumer does not copy them out of the fetch response they arrived in),
// so a slice of them kept after Settle keeps that memory alive: copy what
// you keep.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Timestamp is the record's own timestamp (producer or broker time).
	Timestamp time.Time
	// Fetched is when the source fetched the record.
	Fetched time.Time
	// Deadline is when handling should be finished; zero means no deadline.
	Deadline time.Time
	// Deliveries is how many times the source has delivered the record,
	// this delivery included, for a source that can deliver it again after
	// a failure (a share group); 0 for a source that does not count (a
	// classic consumer group).
	Deliveries int32
	// DeliveryLimit is the delivery after which the source gives up on the
	// record (a share group's delivery count limit); 0 when there is none.
	// On that delivery a failure must be dead-lettered, not handed back.
	DeliveryLimit int32
	// SinkAttempts, when above 0, caps how many times a plain Sink calls
	// its function for the record before it gives it up as
	// ClassExhausted, when it is below the pipeline's SinkAttempts. A
	// source that can deliver the record again (a share group) sets it,
	// so that a record failing transiently goes back to the source for
	// another delivery instead of being retried in place without end.
	SinkAttempts int32

	holders atomic.Int32
	fate    atomic.Int32
	settler Settler
}

// Fate is what became of a record, for a source that acknowledges records
// one by one (a share group: accept, release for redelivery, reject). A
// classic consumer group ignores it: it commits offsets.
type Fate int32

const (
	// FateDone: handled (a sink succeeded or a stage dropped it on purpose).
	FateDone Fate = iota
	// FateRejected: given up on; its dead letter was acknowledged.
	FateRejected
	// FateReleased: handed back to the source for another delivery (a
	// transient failure a share group redelivers).
	FateReleased
)

// SetFate records what a holder made of the record, before it calls Settle.
// With several holders (Duplicate branches) the record's fate is the
// strongest: released over rejected over done, so that no branch's failure
// is lost by another branch's success.
func (r *Record) SetFate(f Fate) {
	for {
		old := r.fate.Load()
		if int32(f) <= old || r.fate.CompareAndSwap(old, int32(f)) {
			return
		}
	}
}

// Fate returns the record's fate so far (FateDone unless a holder set
// another).
func (r *Record) Fate() Fate { return Fate(r.fate.Load()) }

// Settler is told when a record has settled. The consumer implements it to
// advance the partition's commit watermark. Settled is called exactly once per
// record, from whichever goroutine settled it last; it must be safe for
// concurrent use and must not block.
type Settler interface {
	Settled(r *Record)
}

// Bind makes s the record's settler and gives the record its first holder.
// The source calls Bind once, before handing the record on.
func (r *Record) Bind(s Settler) {
	r.settler = s
	r.holders.Store(1)
	r.fate.Store(0)
}

// Hold adds n holders: a stage that sends the record down n branches instead
// of one calls Hold(n-1) before sending.
func (r *Record) Hold(n int) {
	if n < 0 {
		panic(fmt.Sprintf("pipeline: Hold(%d) on %s", n, r))
	}
	r.holders.Add(int32(n))
}

// Settle releases one holder. When the last holder releases the record, its
// settler is told. Settling more often than the record was held is a bug in
// the caller and panics, because it would let a commit pass unfinished work.
func (r *Record) Settle() {
	switch n := r.holders.Add(-1); {
	case n == 0:
		if r.settler != nil {
			r.settler.Settled(r)
		}
	case n < 0:
		panic(fmt.Sprintf("pipeline: %s settled more often than it was held", r))
	}
}

// Holders reports how many holders have not yet settled the record.
func (r *Record) Holders() int { return int(r.holders.Load()) }

// String names the record by its position, never by its payload.
func (r *Record) String() string {
	return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
}

// Header returns the value of the last header named key, and whether it exists.
func (r *Record) Header(key string) ([]byte, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// Handler is what a source drives. The consumer opens one Partition per
// assigned partition and feeds it that partition's records in offset order.
type Handler interface {
	// OpenPartition starts handling a partition. ctx is cancelled when the
	// partition is lost or its drain timeout passes: every goroutine the
	// partition started must then stop promptly, leaving unfinished records
	// unsettled.
	OpenPartition(ctx context.Context, tp TopicPartition) (Partition, error)
}

// Partition receives the records of one partition.
type Partition interface {
	// Handle takes the next records of the partition, in offset order, each
	// already bound (Bind) to the source's settler. It may block to apply
	// backpressure, and returns ctx.Err() early if ctx is done; records it
	// did not take stay unsettled. The records belong to the partition once
	// handed over; the slice does not, and must not be kept after Handle
	// returns.
	Handle(ctx context.Context, recs []*Record) error
	// Close says no more records will come, finishes the records already
	// handed over (flushing what stages buffer), and returns once every
	// goroutine of the partition has stopped. If the partition's context is
	// cancelled meanwhile, unfinished records are dropped unsettled and Close
	// returns promptly. Close is called once.
	Close()
}
