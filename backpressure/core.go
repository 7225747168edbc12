package backpressure

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
)

// Partition configures one flow of a limiter shared by several flows; see
// Partitions.
type Partition struct {
	// Name identifies the flow, for Flow.
	Name string
	// Share is the fraction of the limit reserved for the flow, in (0, 1].
	Share float64
}

// flow is the accounting of one partition.
type flow struct {
	name     string
	share    float64
	reserve  atomic.Int64 // floor(share * limit); written under core.mu
	inFlight atomic.Int64
	// Waiters in arrival order; under core.mu.
	head, tail *waiter
	waiters    int
}

// waiter is a caller queued for a slot. Waiters are recycled: ready has a
// buffer of one, so a grant never blocks and the channel is reused.
type waiter struct {
	ready chan struct{}
	// done is the caller's ctx.Done(); watch, if set, cancels the waiter
	// when it closes, and the waiter blocks on ready alone. Under core.mu.
	done      <-chan struct{}
	watch     *watch
	granted   bool // under core.mu
	cancelled bool // by its watch; under core.mu
	prev      *waiter
	next      *waiter
}

// watch cancels the queued waiters whose context it watches, through one
// context.AfterFunc, so that callers sharing a context (the pipeline's
// workers do) wait on their own channel alone: a waiter that selected on
// its ready channel and the shared Done channel would contend for the
// shared channel's lock with every other waiter, twice per wait, and that
// lock was the largest cost of the slow path (BenchmarkFixedBinding*).
// A context is watched once two waiters in a row in a flow's queue share
// it while at least watchDepth wait in that flow (a short queue contends
// little, and a watch costs three allocations and the context's lock to
// start and to stop); the watch ends when its last waiter leaves. A caller
// with a context of its own (a deadline per attempt) selects, as before:
// one AfterFunc per wait would cost more than the select.
type watch struct {
	done <-chan struct{}
	n    int // waiters using it; under core.mu
	stop func() bool
}

const watchDepth = 8

var waiters = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

func (f *flow) push(w *waiter) {
	w.prev, w.next = f.tail, nil
	if f.tail != nil {
		f.tail.next = w
	} else {
		f.head = w
	}
	f.tail = w
	f.waiters++
}

func (f *flow) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		f.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		f.tail = w.prev
	}
	w.prev, w.next = nil, nil
	f.waiters--
}

// The state word packs the slots held (low 32 bits) and the callers waiting
// (high 32 bits), so that admitting and releasing without waiters is one
// compare-and-swap, and a caller never overtakes a waiter: the fast path
// admits only while nobody waits.
const (
	inMask  = 1<<32 - 1
	waitOne = 1 << 32
	// minusWait added to the state word takes one waiter off.
	minusWait = ^uint64(waitOne - 1)
)

func unpack(s uint64) (in, wait int64) { return int64(s & inMask), int64(s >> 32) }

// core is the admission gate shared by Fixed and Adaptive: a counting
// semaphore whose size can change. Without waiters, Acquire and Release are
// a compare-and-swap each on one atomic word; the mutex is taken only to
// queue, to hand a slot to a waiter and to change the limit. Waiters are
// served by flow (reserved share first, then priority) and, within a flow,
// in arrival order.
type core struct {
	st    atomic.Uint64 // see unpack
	limit atomic.Int64
	clock sluice.Clock
	hooks hooks
	quiet bool // no HookInFlight

	mu      sync.Mutex // waiter queues, grants, limit changes, watches
	flows   []*flow    // highest priority first; the default flow is last
	def     *flow
	watches map[<-chan struct{}]*watch // by Done channel; made on first use

	// obsMu serialises HookInFlight reports; see reportInFlight.
	obsMu sync.Mutex

	ctl *controller // nil for Fixed
}

func (c *core) init(cf *cfg, limit int) {
	c.clock, c.hooks = cf.clock, cf.hk
	c.quiet = len(c.hooks.inFlight) == 0
	c.limit.Store(int64(limit))
	left := 1.0
	for _, p := range cf.parts {
		c.flows = append(c.flows, &flow{name: p.Name, share: p.Share})
		left -= p.Share
	}
	c.def = &flow{share: math.Max(0, left)}
	c.flows = append(c.flows, c.def)
	c.reserve(limit)
	c.hooks.onLimit(limit)
}

func (c *core) reserve(limit int) {
	for _, f := range c.flows {
		f.reserve.Store(int64(f.share*float64(limit) + 1e-9))
	}
}

func (c *core) lookup(name string) (*Flow, error) {
	for _, f := range c.flows {
		if f != c.def && f.name == name {
			return &Flow{c: c, f: f}, nil
		}
	}
	return nil, &FlowError{Name: name}
}

// fast admits a caller of f if a slot is free and nobody waits.
func (c *core) fast(f *flow) bool {
	for {
		s := c.st.Load()
		in, wait := unpack(s)
		if wait != 0 || in >= c.limit.Load() {
			return false
		}
		if c.st.CompareAndSwap(s, s+1) {
			f.inFlight.Add(1)
			c.reportInFlight()
			return true
		}
	}
}

func (c *core) acquire(ctx context.Context, f *flow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.fast(f) {
		return nil
	}
	done := ctx.Done()
	c.mu.Lock()
	for {
		s := c.st.Load()
		in, wait := unpack(s)
		if wait == 0 && in < c.limit.Load() {
			if c.st.CompareAndSwap(s, s+1) {
				f.inFlight.Add(1)
				c.mu.Unlock()
				c.reportInFlight()
				return nil
			}
			continue
		}
		if c.st.CompareAndSwap(s, s+waitOne) {
			break
		}
	}
	w := waiters.Get().(*waiter)
	w.granted, w.cancelled, w.done, w.watch = false, false, done, nil
	if done != nil {
		c.watchFor(ctx, f, w)
	}
	watched := w.watch != nil
	f.push(w)
	c.mu.Unlock()

	if watched || done == nil {
		<-w.ready
		cancelled := w.cancelled // written before the send on ready
		waiters.Put(w)
		if cancelled {
			return ctx.Err()
		}
		return nil
	}
	select {
	case <-w.ready:
		w.done = nil
		waiters.Put(w)
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		granted := w.granted
		if !granted {
			f.remove(w)
			c.st.Add(minusWait)
		}
		w.done = nil
		c.mu.Unlock()
		if granted {
			// Granted while the context was being cancelled: give the
			// slot to the next waiter, as Acquire's contract promises.
			<-w.ready
			f.inFlight.Add(-1)
			c.free()
		}
		waiters.Put(w)
		return ctx.Err()
	}
}

// watchFor gives w, about to queue in f, the watch of its context: the
// existing one, or a new one if the waiter queued last in f shares the
// context. Called with mu held.
func (c *core) watchFor(ctx context.Context, f *flow, w *waiter) {
	wt := c.watches[w.done]
	if wt == nil {
		if f.waiters < watchDepth || f.tail.done != w.done {
			return
		}
		if c.watches == nil {
			c.watches = make(map[<-chan struct{}]*watch)
		}
		wt = &watch{done: w.done}
		wt.stop = context.AfterFunc(ctx, func() { c.cancelWatched(wt) })
		c.watches[w.done] = wt
	}
	wt.n++
	w.watch = wt
}

// unwatch ends w's use of its watch, and the watch with its last waiter.
// Called with mu held.
func (c *core) unwatch(w *waiter) {
	wt := w.watch
	w.watch, w.done = nil, nil
	if wt.n--; wt.n == 0 {
		wt.stop()
		if c.watches[wt.done] == wt {
			delete(c.watches, wt.done)
		}
	}
}

// cancelWatched runs when a watched context is done: its waiters leave
// their queues and return the context's error. A waiter granted a slot
// first has left its queue and keeps the slot; one cancelled here gets
// none, so no slot can be lost between the two.
func (c *core) cancelWatched(wt *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.flows {
		for w := f.head; w != nil; {
			next := w.next
			if w.watch == wt {
				f.remove(w)
				c.st.Add(minusWait)
				c.unwatch(w)
				w.cancelled = true
				w.ready <- struct{}{}
			}
			w = next
		}
	}
}

func (c *core) tryAcquire(f *flow) bool { return c.fast(f) }

// release frees a slot of f and returns the slots held just before.
func (c *core) release(f *flow) int64 {
	if f.inFlight.Add(-1) < 0 {
		f.inFlight.Add(1)
		panic("backpressure: Release without a matching Acquire")
	}
	return c.free()
}

// free gives a slot back: to the next waiter if there is one and the limit
// allows, otherwise to the pool. It returns the slots held before.
func (c *core) free() int64 {
	for {
		s := c.st.Load()
		in, wait := unpack(s)
		if wait != 0 {
			break
		}
		if c.st.CompareAndSwap(s, s-1) {
			c.reportInFlight()
			return in
		}
	}
	c.mu.Lock()
	var (
		in   int64
		next *waiter
	)
	for {
		s := c.st.Load()
		var wait int64
		in, wait = unpack(s)
		if wait > 0 && in <= c.limit.Load() {
			// The slot passes to a waiter: held count unchanged.
			if c.st.CompareAndSwap(s, s-waitOne) {
				next = c.wake()
				break
			}
			continue
		}
		if c.st.CompareAndSwap(s, s-1) {
			c.grant()
			break
		}
	}
	c.mu.Unlock()
	if next != nil {
		// Woken outside the lock: readying a goroutine may wake a thread,
		// and the lock would be held meanwhile. The waiter is off its
		// queue and granted, so nothing else can touch it; if its context
		// ended meanwhile, it waits for this send (see acquire).
		next.ready <- struct{}{}
	}
	c.reportInFlight()
	return in
}

// wake gives a slot already counted as held to the next waiter and takes
// it off its queue. The caller must then send on the waiter's ready
// channel, which it may do after unlocking mu. Called with mu held, after
// the state word counted one waiter less.
func (c *core) wake() *waiter {
	f := c.next()
	w := f.head
	f.remove(w)
	f.inFlight.Add(1)
	w.granted = true
	if w.watch != nil {
		c.unwatch(w)
	}
	return w
}

// grant admits waiters while slots are free. Called with mu held.
func (c *core) grant() {
	for {
		s := c.st.Load()
		in, wait := unpack(s)
		if wait == 0 || in >= c.limit.Load() {
			return
		}
		if c.st.CompareAndSwap(s, s+1-waitOne) {
			c.wake().ready <- struct{}{}
		}
	}
}

// next picks the flow whose waiter gets the next slot: a flow below its
// reserved share first, then by priority. Called with mu held and a waiter
// queued.
func (c *core) next() *flow {
	for _, f := range c.flows {
		if f.waiters > 0 && f.inFlight.Load() < f.reserve.Load() {
			return f
		}
	}
	for _, f := range c.flows {
		if f.waiters > 0 {
			return f
		}
	}
	panic("backpressure: waiting count out of sync")
}

// setLimit changes the limit and admits waiters it makes room for. The
// adaptive controller calls it with its decision lock held, so changes are
// reported in order.
func (c *core) setLimit(l int) {
	if int64(l) == c.limit.Load() {
		return
	}
	c.mu.Lock()
	c.limit.Store(int64(l))
	c.reserve(l)
	c.grant()
	c.hooks.onLimit(l)
	c.mu.Unlock()
	c.reportInFlight()
}

// reportInFlight tells the HookInFlight hooks the number of slots held. Reports are
// serialised without making anyone wait: a caller that finds another one
// reporting leaves it to that one, which reads the count again after its
// report and reports once more if it moved. So the hooks may miss
// intermediate values under contention, but its last report is always the
// current count.
func (c *core) reportInFlight() {
	if c.quiet {
		return
	}
	for c.obsMu.TryLock() {
		in, _ := unpack(c.st.Load())
		for _, h := range c.hooks.inFlight {
			h.OnInFlight(int(in))
		}
		c.obsMu.Unlock()
		if now, _ := unpack(c.st.Load()); now == in {
			return
		}
	}
}

// sample passes a released call to the adaptive controller, if any.
func (c *core) sample(now time.Time, latency time.Duration, o Signal, in int64) {
	if c.ctl == nil {
		return
	}
	if now.IsZero() {
		now = c.clock.Now()
	}
	c.ctl.sample(c, now, latency, o, in)
}

// Acquire waits for a slot of the default flow. It returns ctx.Err() if ctx
// is done first (also when ctx was done on entry), and then the caller must
// not Release.
func (c *core) Acquire(ctx context.Context) error { return c.acquire(ctx, c.def) }

// TryAcquire takes a slot of the default flow if one is free and nobody is
// waiting, without blocking. It reports whether it did; if so the caller
// must Release.
func (c *core) TryAcquire() bool { return c.tryAcquire(c.def) }

// Release frees a slot of the default flow and reports the call's load
// signal.
// It panics if no slot of the default flow is held.
func (c *core) Release(latency time.Duration, o Signal) {
	c.sample(time.Time{}, latency, o, c.release(c.def))
}

// ReleaseAt is Release for a caller that has just read the clock: end is
// when the call ended (latency before it). It saves the limiter a clock
// read; the guards of package handlers use it.
func (c *core) ReleaseAt(end time.Time, latency time.Duration, o Signal) {
	c.sample(end, latency, o, c.release(c.def))
}

// Limit is the current limit, shared by all flows.
func (c *core) Limit() int { return int(c.limit.Load()) }

// InFlight is the number of slots held now, by all flows together.
func (c *core) InFlight() int {
	in, _ := unpack(c.st.Load())
	return int(in)
}

// Flow returns the limiter of the partition named name (see
// Partitions), or an error wrapping ErrUnknownFlow.
func (c *core) Flow(name string) (*Flow, error) { return c.lookup(name) }

// FlowError reports a flow name that was not configured.
type FlowError struct {
	// Name is the unknown name.
	Name string
}

func (e *FlowError) Error() string { return "backpressure: unknown flow " + strconv.Quote(e.Name) }

// Unwrap returns ErrUnknownFlow.
func (e *FlowError) Unwrap() error { return ErrUnknownFlow }

// Flow is one partition of a shared limiter. It is a Limiter: its slots
// count against the shared limit, and its waiters are served before lower
// priorities while it holds less than its share.
type Flow struct {
	c *core
	f *flow
}

var (
	_ Limiter = (*Flow)(nil)
	_ Limiter = (*Fixed)(nil)
	_ Limiter = (*Adaptive)(nil)
)

// Name is the partition's name.
func (f *Flow) Name() string { return f.f.name }

// Acquire waits for a slot for this flow; see Limiter.
func (f *Flow) Acquire(ctx context.Context) error { return f.c.acquire(ctx, f.f) }

// TryAcquire takes a slot for this flow if one is free and nobody waits.
func (f *Flow) TryAcquire() bool { return f.c.tryAcquire(f.f) }

// Release frees a slot of this flow; see Limiter. Samples of every flow
// feed the one shared adaptive limit.
func (f *Flow) Release(latency time.Duration, o Signal) {
	f.c.sample(time.Time{}, latency, o, f.c.release(f.f))
}

// ReleaseAt is Release with the time the call ended; see Fixed.ReleaseAt.
func (f *Flow) ReleaseAt(end time.Time, latency time.Duration, o Signal) {
	f.c.sample(end, latency, o, f.c.release(f.f))
}

// Limit is the shared limit, all of which the flow may use when the others
// leave it idle.
func (f *Flow) Limit() int { return f.c.Limit() }

// InFlight is the number of slots this flow holds.
func (f *Flow) InFlight() int { return int(f.f.inFlight.Load()) }

// Reserved is the number of slots guaranteed to this flow at the current
// limit: floor(Share * Limit).
func (f *Flow) Reserved() int { return int(f.f.reserve.Load()) }
