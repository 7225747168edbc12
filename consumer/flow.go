package consumer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// fetchPauser pauses and resumes fetching: the franz-go client.
type fetchPauser interface {
	PauseFetchPartitions(map[string][]int32) map[string][]int32
	ResumeFetchPartitions(map[string][]int32)
}

// flow is the consumer's flow control: the water marks, the consumer-wide
// counts of buffered work, which partitions' fetches are paused, and the
// feeders waiting for consumer-wide room. Partitions keep their own counts
// under their own lock and call flow to admit records, give room back, and
// pause or resume.
//
// # Lock order
//
// Outer to inner: flow.pauseMu, then flow.blockMu, then one partition.mu,
// then flow.memMu. Nothing else is ever held while taking one of them:
//
//   - No flow method is called with a partition.mu held; a partition
//     releases its lock first (Settled, enqueue, unbuffer, finish).
//   - Methods that take pauseMu (afterFetch, maybeResume, add, remove)
//     never call each other; their shared parts are *Locked helpers.
//   - memMu guards only the member set and is a leaf.
//   - franz-go's PauseFetchPartitions and ResumeFetchPartitions are called
//     with pauseMu held (they take only franz-go's own locks), and so are
//     HookPaused hooks, so that hooks see pauses and resumes in the order
//     they happened. Hooks must not call back into the consumer.
type flow struct {
	partHigh, totalHigh Water
	low                 float64
	fetches             fetchPauser
	hooks               hooks

	// out* count records handed to the handler and not settled
	// (partitions give settled ones back in batches, so they may run a
	// little high, never low); pend* count fetched records not handed
	// over. Buffered work is the sum.
	outRecords  atomic.Int64
	outBytes    atomic.Int64
	pendRecords atomic.Int64
	pendBytes   atomic.Int64

	pauseMu   sync.Mutex
	allPaused atomic.Bool // written under pauseMu; partition.paused too

	blockMu  sync.Mutex
	blocked  map[*partition]struct{} // feeders waiting for consumer-wide room
	blockedN atomic.Int64            // len(blocked), read without blockMu

	memMu   sync.Mutex
	members map[*partition]struct{} // partitions added and not yet removed

	// A barrier (exactly-once mode) waits for every fetched record to be
	// handed over and settled: while it waits, settles give their room
	// back at once and kick it.
	barrier atomic.Bool
	kick    chan struct{} // cap 1
}

func newFlow(c *cfg, fetches fetchPauser, hs hooks) *flow {
	return &flow{
		partHigh:  c.partHigh,
		totalHigh: c.totalHigh,
		low:       c.lowWater,
		fetches:   fetches,
		hooks:     hs,
		blocked:   make(map[*partition]struct{}),
		members:   make(map[*partition]struct{}),
		kick:      make(chan struct{}, 1),
	}
}

// buffered is the consumer-wide fetched and unsettled work.
func (f *flow) buffered() (records, bytes int64) {
	return f.pendRecords.Load() + f.outRecords.Load(), f.pendBytes.Load() + f.outBytes.Load()
}

// waiting reports whether anyone waits for room that a settle frees: a
// paused fetch or a blocked feeder.
func (f *flow) waiting(p *partition) bool {
	return p.paused.Load() || f.allPaused.Load() || f.blockedN.Load() > 0 || f.barrier.Load()
}

// waitIdle waits until every fetched record was handed over and settled,
// for at most timeout or until stop is closed, and reports whether it got
// there.
func (f *flow) waitIdle(timeout time.Duration, stop <-chan struct{}) bool {
	f.barrier.Store(true)
	defer f.barrier.Store(false)
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		f.flushAll()
		if records, _ := f.buffered(); records == 0 {
			return true
		}
		select {
		case <-f.kick:
		case <-t.C:
			return false
		case <-stop:
			return false
		}
	}
}

// add makes p a member: its fetches pause at once if the consumer-wide mark
// holds every partition.
func (f *flow) add(p *partition) {
	f.pauseMu.Lock()
	defer f.pauseMu.Unlock()
	f.memMu.Lock()
	f.members[p] = struct{}{}
	f.memMu.Unlock()
	if f.allPaused.Load() {
		f.fetches.PauseFetchPartitions(map[string][]int32{p.tp.Topic: {p.tp.Partition}})
	}
}

// remove takes stopped partitions out: what they held is given back, their
// fetch pauses are cleared so that a later assignment starts unpaused, and
// paused fetches or blocked feeders that the freed room lets go are woken.
func (f *flow) remove(ps []*partition) {
	var resume fetchChange
	f.pauseMu.Lock()
	f.memMu.Lock()
	for _, p := range ps {
		delete(f.members, p)
	}
	f.memMu.Unlock()
	for _, p := range ps {
		p.finish()
		if p.paused.Swap(false) || f.allPaused.Load() {
			// Reported resumed: the partition is no longer ours.
			resume.add(p.tp)
		} else {
			resume.byTopicOnly(p.tp)
		}
	}
	f.apply(resume, false)
	f.resumeAllLocked()
	f.pauseMu.Unlock()
	f.wakeBlocked()
	f.kickBarrier()
}

// kickBarrier tells a waiting barrier that work was given back.
func (f *flow) kickBarrier() {
	if f.barrier.Load() {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// afterFetch pauses fetching of partitions whose buffered work reached the
// high-water mark, and of every partition when the total did.
func (f *flow) afterFetch(touched []*partition) {
	f.pauseMu.Lock()
	defer f.pauseMu.Unlock()
	var change fetchChange
	for _, p := range touched {
		if records, bytes := p.buffered(); !p.paused.Load() && (records >= int64(f.partHigh.Records) || bytes >= f.partHigh.Bytes) {
			p.paused.Store(true)
			change.add(p.tp)
		}
	}
	if records, bytes := f.buffered(); !f.allPaused.Load() && (records >= int64(f.totalHigh.Records) || bytes >= f.totalHigh.Bytes) {
		f.allPaused.Store(true)
		f.addSelfUnpaused(&change)
	}
	f.apply(change, true)
}

// released is called after room was given back: it resumes fetching p, or
// every partition, once buffered work fell to the low-water mark, and wakes
// blocked feeders.
func (f *flow) released(p *partition) {
	if p.paused.Load() || f.allPaused.Load() {
		f.maybeResume(p)
	}
	f.wakeBlocked()
	f.kickBarrier()
}

// maybeResume resumes fetching p, or every partition, once buffered work
// fell to the low-water mark.
func (f *flow) maybeResume(p *partition) {
	f.pauseMu.Lock()
	defer f.pauseMu.Unlock()
	var change fetchChange
	if p.paused.Load() && f.below(f.partHigh)(p.buffered()) {
		p.paused.Store(false)
		if !f.allPaused.Load() {
			change.add(p.tp)
		}
	}
	f.apply(change, false)
	f.resumeAllLocked()
}

// resumeAllLocked lifts the consumer-wide pause once the total fell to the
// low-water mark; f.pauseMu is held.
func (f *flow) resumeAllLocked() {
	if !f.allPaused.Load() || !f.below(f.totalHigh)(f.buffered()) {
		return
	}
	f.allPaused.Store(false)
	var change fetchChange
	f.addSelfUnpaused(&change)
	f.apply(change, false)
}

// below returns whether work is at or under the low-water mark of w.
func (f *flow) below(w Water) func(records, bytes int64) bool {
	return func(records, bytes int64) bool {
		return float64(records) <= f.low*float64(w.Records) && float64(bytes) <= f.low*float64(w.Bytes)
	}
}

// addSelfUnpaused adds the members not paused for their own marks: the ones
// the consumer-wide marks pause and resume.
func (f *flow) addSelfUnpaused(change *fetchChange) {
	for _, p := range f.snapshot() {
		if !p.paused.Load() {
			change.add(p.tp)
		}
	}
}

// snapshot returns the members.
func (f *flow) snapshot() []*partition {
	f.memMu.Lock()
	defer f.memMu.Unlock()
	ps := make([]*partition, 0, len(f.members))
	for p := range f.members {
		ps = append(ps, p)
	}
	return ps
}

// apply pauses or resumes the fetching of change's partitions and tells
// the hooks of those it reports; f.pauseMu is held.
func (f *flow) apply(change fetchChange, pause bool) {
	if len(change.byTopic) == 0 {
		return
	}
	if pause {
		f.fetches.PauseFetchPartitions(change.byTopic)
	} else {
		f.fetches.ResumeFetchPartitions(change.byTopic)
	}
	for _, tp := range change.tps {
		each(f.hooks, func(h HookPaused) { h.OnPaused(tp, pause) })
	}
}

// fetchChange collects partitions whose fetching pauses or resumes together,
// and those of them whose change the hooks are told of.
type fetchChange struct {
	byTopic map[string][]int32
	tps     []pipeline.TopicPartition
}

func (c *fetchChange) add(tp pipeline.TopicPartition) {
	c.byTopicOnly(tp)
	c.tps = append(c.tps, tp)
}

// byTopicOnly adds tp without reporting it to the hooks.
func (c *fetchChange) byTopicOnly(tp pipeline.TopicPartition) {
	if c.byTopic == nil {
		c.byTopic = map[string][]int32{}
	}
	c.byTopic[tp.Topic] = append(c.byTopic[tp.Topic], tp.Partition)
}

// block registers p as waiting for consumer-wide room; f.blockMu is held.
// It reports false if p was registered already.
func (f *flow) blockLocked(p *partition) bool {
	if _, ok := f.blocked[p]; ok {
		return false
	}
	f.blocked[p] = struct{}{}
	f.blockedN.Add(1)
	return true
}

// unblockLocked removes p from the blocked set; f.blockMu is held.
func (f *flow) unblockLocked(p *partition) {
	if _, ok := f.blocked[p]; ok {
		delete(f.blocked, p)
		f.blockedN.Add(-1)
	}
}

// unblock removes p from the blocked set.
func (f *flow) unblock(p *partition) {
	f.blockMu.Lock()
	f.unblockLocked(p)
	f.blockMu.Unlock()
}

// wakeBlocked wakes feeders waiting for consumer-wide room.
func (f *flow) wakeBlocked() {
	if f.blockedN.Load() == 0 {
		return
	}
	f.blockMu.Lock()
	for p := range f.blocked {
		p.mu.Lock()
		p.pokeLocked()
		p.mu.Unlock()
	}
	f.blockMu.Unlock()
}

// flushAll makes every member give back the room of its settled records, so
// that a feeder about to wait for room sees the exact count.
func (f *flow) flushAll() {
	for _, p := range f.snapshot() {
		p.mu.Lock()
		p.flushLocked()
		p.mu.Unlock()
	}
}
