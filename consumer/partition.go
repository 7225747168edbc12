package consumer

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// recordOverhead is the per-record memory counted on top of key, value and
// headers: franz-go's Record, Sluice's pipeline.Record and bookkeeping.
const recordOverhead = 256

// partition is one assignment of one partition to this member: from
// OnPartitionsAssigned until it is revoked, lost, or replaced after its log
// was reset. It owns one goroutine, the feeder, which hands fetched records to
// the handler's Partition in offset order as capacity allows.
//
// It is the pipeline.Settler of every record it hands over, so records of an
// earlier assignment of the same partition settle into their own tracker and
// never into this one.
type partition struct {
	c    *Consumer
	flow *flow
	tp   pipeline.TopicPartition

	// ctx is the work context given to the handler: cancelled when the
	// partition is lost, its drain times out, or the consumer is stopped.
	ctx    context.Context
	cancel context.CancelFunc
	// feedCtx stops the feeder (and interrupts a Handle blocked on
	// backpressure) without cancelling work already handed over.
	feedCtx  context.Context
	stopFeed context.CancelFunc
	part     pipeline.Partition
	fed      chan struct{} // closed when the feeder has exited
	closed   chan struct{} // closed when part.Close has returned

	paused atomic.Bool // fetches paused for this partition's own marks; set under flow.pauseMu

	mu sync.Mutex
	tr *tracker // records handed over and not settled
	// pending are fetched records not handed over, in offset order;
	// pendRecords and pendBytes count them, and the batch the feeder holds.
	pending     []pendingBatch
	pendRecords int64
	pendBytes   int64
	// relRecords and relBytes are settled records not yet taken off the
	// consumer-wide count (flow.out*): it is updated in batches.
	relRecords int64
	relBytes   int64
	waiting    bool          // the feeder waits for pending records or capacity
	wake       chan struct{} // cap 1: poked when waiting and something changed
	finished   bool          // released: late settles are ignored
	committed  int64         // last committed watermark, -1 before any

	progressWM int64     // watermark seen by the last observeProgress
	progressAt time.Time // when the watermark last moved or nothing was unsettled

	enqueued int64 // offset after the last enqueued record; poll loop only
	scratch  []*pipeline.Record
}

// pendingBatch is fetched records of one partition not yet handed over,
// with each record's size (recordSize), computed once when it is enqueued,
// and how many headers they carry.
type pendingBatch struct {
	recs    []*kgo.Record
	sizes   []int32
	headers int
	fetched time.Time
}

// advance drops the first n records.
func (b *pendingBatch) advance(n int) {
	if b.headers > 0 {
		for _, r := range b.recs[:n] {
			b.headers -= len(r.Headers)
		}
	}
	b.recs, b.sizes = b.recs[n:], b.sizes[n:]
}

func newPartition(c *Consumer, tp pipeline.TopicPartition) *partition {
	p := &partition{
		c:          c,
		flow:       c.flow,
		tp:         tp,
		fed:        make(chan struct{}),
		closed:     make(chan struct{}),
		tr:         newTracker(),
		wake:       make(chan struct{}, 1),
		committed:  -1,
		enqueued:   -1,
		progressWM: -1,
		progressAt: time.Now(),
	}
	p.ctx, p.cancel = context.WithCancel(c.workCtx)
	p.feedCtx, p.stopFeed = context.WithCancel(p.ctx)
	return p
}

func recordSize(r *kgo.Record) int64 {
	n := int64(len(r.Key)+len(r.Value)) + recordOverhead
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

// sumSizes adds up sizes.
func sumSizes(sizes []int32) int64 {
	var n int64
	for _, sz := range sizes {
		n += int64(sz)
	}
	return n
}

// enqueue adds fetched records; the poll loop calls it.
func (p *partition) enqueue(recs []*kgo.Record, fetched time.Time) {
	b := pendingBatch{recs: recs, sizes: make([]int32, len(recs)), fetched: fetched}
	var bytes int64
	for i, r := range recs {
		sz := recordSize(r)
		b.sizes[i] = int32(min(sz, math.MaxInt32))
		b.headers += len(r.Headers)
		bytes += int64(b.sizes[i])
	}
	p.enqueued = recs[len(recs)-1].Offset + 1

	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.pending = append(p.pending, b)
	p.pendRecords += int64(len(recs))
	p.pendBytes += bytes
	p.flow.pendRecords.Add(int64(len(recs)))
	p.flow.pendBytes.Add(bytes)
	p.pokeLocked()
	p.mu.Unlock()
	each(p.c.hooks, func(h HookFetched) { h.OnFetched(p.tp, len(recs), bytes) })
}

func (p *partition) pokeLocked() {
	if p.waiting {
		p.waiting = false
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// feed is the feeder goroutine.
func (p *partition) feed() {
	defer close(p.fed)
	defer func() {
		if r := recover(); r != nil {
			p.c.fail(fmt.Errorf("handler of %s panicked: %v", p.tp, r))
		}
	}()
	var batch pendingBatch
	for {
		if len(batch.recs) == 0 {
			var ok bool
			if batch, ok = p.next(); !ok {
				return
			}
		}
		n := p.admit(batch)
		if n == 0 {
			p.unbuffer(batch)
			return
		}
		recs := p.convert(batch, n)
		batch.advance(n)
		err := p.part.Handle(p.feedCtx, recs)
		// The scratch slice must not keep handed-over records reachable:
		// each one keeps its whole slab, and through its key and value the
		// whole fetch response it was read from, alive.
		clear(recs)
		if err != nil {
			// Records the handler did not take stay unsettled.
			p.unbuffer(batch)
			if p.feedCtx.Err() == nil {
				p.c.fail(fmt.Errorf("handler of %s: %w", p.tp, err))
			}
			return
		}
	}
}

// next waits for the next pending batch; false means the feeder must stop.
func (p *partition) next() (pendingBatch, bool) {
	for {
		p.mu.Lock()
		if len(p.pending) > 0 {
			b := p.pending[0]
			p.pending[0] = pendingBatch{}
			p.pending = p.pending[1:]
			p.mu.Unlock()
			return b, true
		}
		p.waiting = true
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.feedCtx.Done():
			return pendingBatch{}, false
		}
	}
}

// admit waits until at least one of b's records fits under the water
// marks, tracks the largest prefix that fits, and returns its length; 0
// means stop: the feeder was stopped, or the partition was released while
// a Handle that outlived CloseGrace held the feeder.
func (p *partition) admit(b pendingBatch) int {
	f := p.flow
	for {
		f.blockMu.Lock()
		p.mu.Lock()
		if p.finished {
			p.mu.Unlock()
			f.unblockLocked(p)
			f.blockMu.Unlock()
			return 0
		}
		p.flushLocked()
		n, bytes, totalFull := p.fit(b.sizes)
		if n > 0 {
			for i, r := range b.recs[:n] {
				p.tr.add(r.Offset, r.LeaderEpoch, b.sizes[i])
			}
			p.pendRecords -= int64(n)
			p.pendBytes -= bytes
			f.pendRecords.Add(-int64(n))
			f.pendBytes.Add(-bytes)
			f.outRecords.Add(int64(n))
			f.outBytes.Add(bytes)
			p.mu.Unlock()
			f.unblockLocked(p)
			f.blockMu.Unlock()
			return n
		}
		if totalFull && f.blockLocked(p) {
			// Register before sleeping, then look once more: a settle
			// elsewhere that freed room before we registered flushes
			// (it sees blockedN) or is flushed here; one after wakes us.
			p.mu.Unlock()
			f.flushAll()
			f.blockMu.Unlock()
			continue
		}
		p.waiting = true
		p.mu.Unlock()
		f.blockMu.Unlock()
		select {
		case <-p.wake:
		case <-p.feedCtx.Done():
			f.unblock(p)
			return 0
		}
	}
}

// fit returns how many records of these sizes fit under the marks now,
// their bytes, and whether the consumer-wide marks are what stopped the
// first record.
func (p *partition) fit(sizes []int32) (n int, bytes int64, totalFull bool) {
	f := p.flow
	part, total := f.partHigh, f.totalHigh
	outR, outB := f.outRecords.Load(), f.outBytes.Load()
	for n < len(sizes) {
		sz := int64(sizes[n])
		partFits := p.tr.unsettled+n+1 <= part.Records && p.tr.unsettledBytes+bytes+sz <= part.Bytes
		totalFits := outR+int64(n+1) <= int64(total.Records) && outB+bytes+sz <= total.Bytes
		// A record larger than the byte mark goes alone into an empty
		// partition, or it could never go.
		if n == 0 && p.tr.unsettled == 0 && sz > part.Bytes {
			return 1, sz, false
		}
		if !partFits || !totalFits {
			return n, bytes, n == 0 && partFits
		}
		n++
		bytes += sz
	}
	return n, bytes, false
}

// convert turns b's first n records, tracked, into pipeline records bound
// to p, with one allocation for the records and one for all their headers.
func (p *partition) convert(b pendingBatch, n int) []*pipeline.Record {
	krs, fetched := b.recs[:n], b.fetched
	slab := make([]pipeline.Record, len(krs))
	var hslab []pipeline.Header
	if b.headers > 0 {
		nh := 0
		for _, kr := range krs {
			nh += len(kr.Headers)
		}
		hslab = make([]pipeline.Header, nh)
	}
	var budgetDeadline time.Time
	if b := p.c.cfg.recordBudget; b > 0 {
		budgetDeadline = fetched.Add(b)
	}
	out := p.scratch[:0]
	for i, kr := range krs {
		r := &slab[i]
		r.Topic, r.Partition, r.Offset = kr.Topic, kr.Partition, kr.Offset
		r.Key, r.Value = kr.Key, kr.Value
		r.Timestamp, r.Fetched = kr.Timestamp, fetched
		if k := len(kr.Headers); k > 0 {
			hs := hslab[:k:k]
			hslab = hslab[k:]
			for j, h := range kr.Headers {
				hs[j] = pipeline.Header(h)
			}
			r.Headers = hs
		}
		r.Deadline = budgetDeadline
		if v, ok := r.Header(pipeline.DeadlineHeader); ok {
			if ms, ok := parseMillis(v); ok {
				if d := time.UnixMilli(ms); r.Deadline.IsZero() || d.Before(r.Deadline) {
					r.Deadline = d
				}
			} else {
				p.malformedDeadline(r.Offset, v)
			}
		}
		r.Bind(p)
		out = append(out, r)
	}
	p.scratch = out
	return out
}

// malformedDeadline reports a record whose pipeline.DeadlineHeader is not a
// Unix time in milliseconds: the header is ignored (the record keeps the
// RecordBudget deadline, if any), the hooks are told, and it is logged at
// most every fetchErrorEvery per partition.
func (p *partition) malformedDeadline(offset int64, v []byte) {
	each(p.c.hooks, func(h HookMalformedDeadline) { h.OnMalformedDeadline(p.tp, offset) })
	if p.c.errLog.due("deadline/"+p.tp.String(), time.Now()) {
		p.c.log.Warn("malformed deadline header ignored (want Unix milliseconds)", "header", pipeline.DeadlineHeader,
			"partition", p.tp.String(), "offset", offset, "value", string(v[:min(len(v), 32)]))
	}
}

// parseMillis parses a non-negative decimal integer without allocating.
func parseMillis(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Settled implements pipeline.Settler.
func (p *partition) Settled(r *pipeline.Record) {
	f := p.flow
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	size, ok := p.tr.settle(r.Offset)
	if !ok {
		p.mu.Unlock()
		return
	}
	p.pokeLocked()
	p.relRecords++
	p.relBytes += int64(size)
	// Give the room back to the consumer-wide count in batches, at once
	// when someone waits for it.
	waiting := f.waiting(p)
	if waiting || p.relRecords >= releaseBatch {
		p.flushLocked()
	}
	p.mu.Unlock()
	if waiting {
		f.released(p)
	}
}

// releaseBatch is how many settles a partition gathers before it gives their
// room back to the consumer-wide count, when nobody waits for it.
const releaseBatch = 32

// flushLocked takes settled records off the consumer-wide count; p.mu is held.
func (p *partition) flushLocked() {
	if p.relRecords != 0 {
		p.flow.outRecords.Add(-p.relRecords)
		p.flow.outBytes.Add(-p.relBytes)
		p.relRecords, p.relBytes = 0, 0
	}
}

// buffered is p's fetched and unsettled work: pending plus handed over.
func (p *partition) buffered() (records, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pendRecords + int64(p.tr.unsettled), p.pendBytes + p.tr.unsettledBytes
}

// unbuffer forgets fetched records that will not be handed over. After
// finish it does nothing: finish forgot them already.
func (p *partition) unbuffer(b pendingBatch) {
	recs := b.recs
	if len(recs) == 0 {
		return
	}
	bytes := sumSizes(b.sizes)
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.pendRecords -= int64(len(recs))
	p.pendBytes -= bytes
	p.flow.pendRecords.Add(-int64(len(recs)))
	p.flow.pendBytes.Add(-bytes)
	p.mu.Unlock()
	p.flow.released(p)
}

// watermark returns what to commit for p, if anything moved since the last
// successful commit.
func (p *partition) watermark() (kgo.EpochOffset, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	off, epoch, ok := p.tr.watermark()
	if !ok || off <= p.committed {
		return kgo.EpochOffset{}, false
	}
	return kgo.EpochOffset{Epoch: epoch, Offset: off}, true
}

// observeProgress notes whether the watermark moved since the last call.
func (p *partition) observeProgress(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	wm, _, _ := p.tr.watermark()
	if wm != p.progressWM || p.tr.unsettled == 0 {
		p.progressWM, p.progressAt = wm, now
	}
}

// stalledSince reports whether p has had unsettled records and no watermark
// progress for longer than after.
func (p *partition) stalledSince(now time.Time, after time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tr.unsettled > 0 && now.Sub(p.progressAt) > after
}

func (p *partition) markCommitted(off int64) {
	p.mu.Lock()
	p.committed = max(p.committed, off)
	p.mu.Unlock()
}

// finish forgets p's remaining work once it has stopped: unsettled and
// pending records give their room back to the consumer-wide counts, and
// late settles, admits and unbuffers are ignored. flow.remove calls it,
// and wakes whoever the freed room lets go.
func (p *partition) finish() {
	f := p.flow
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	p.flushLocked()
	f.outRecords.Add(-int64(p.tr.unsettled))
	f.outBytes.Add(-p.tr.unsettledBytes)
	f.pendRecords.Add(-p.pendRecords)
	f.pendBytes.Add(-p.pendBytes)
	p.pending, p.pendRecords, p.pendBytes = nil, 0, 0
}
