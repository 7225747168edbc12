package backpressure

import (
	"container/list"
	"context"
	"math"
	"strconv"
	"sync"
	"time"
)

// Partition configures one flow of a limiter shared by several flows; see
// WithPartitions.
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
	reserve  int // floor(share * limit)
	inFlight int
	waiters  list.List // of *waiter, FIFO
}

type waiter struct {
	ready   chan struct{} // closed when granted
	granted bool
	elem    *list.Element
}

// core is the admission gate shared by Fixed and Adaptive: a counting
// semaphore whose size can change, whose waiters are served by flow
// (reserved share first, then priority) and, within a flow, in arrival order.
type core struct {
	mu       sync.Mutex
	clock    Clock
	obs      Observer
	limit    int
	inFlight int
	waiting  int
	flows    []*flow // highest priority first; the default flow is last
	def      *flow
	ctl      *controller // nil for Fixed
}

func (c *core) init(cf *cfg, limit int) {
	c.clock, c.obs, c.limit = cf.clock, cf.obs, limit
	left := 1.0
	for _, p := range cf.parts {
		c.flows = append(c.flows, &flow{name: p.Name, share: p.Share})
		left -= p.Share
	}
	c.def = &flow{share: math.Max(0, left)}
	c.flows = append(c.flows, c.def)
	c.reserve()
	c.obs.LimitChanged(limit)
}

func (c *core) reserve() {
	for _, f := range c.flows {
		f.reserve = int(f.share*float64(c.limit) + 1e-9)
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

func (c *core) acquire(ctx context.Context, f *flow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.waiting == 0 && c.inFlight < c.limit {
		c.admit(f)
		c.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	w.elem = f.waiters.PushBack(w)
	c.waiting++
	c.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.granted {
			// Granted while the context was being cancelled: give the
			// slot to the next waiter, as promised by Acquire's contract.
			c.free(f)
			c.grant()
		} else {
			f.waiters.Remove(w.elem)
			c.waiting--
		}
		return ctx.Err()
	}
}

func (c *core) tryAcquire(f *flow) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting == 0 && c.inFlight < c.limit {
		c.admit(f)
		return true
	}
	return false
}

func (c *core) release(f *flow, latency time.Duration, o Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.inFlight <= 0 {
		panic("backpressure: Release without a matching Acquire")
	}
	now := c.free(f)
	if c.ctl != nil {
		c.setLimit(c.ctl.sample(now, latency, o, c.inFlight))
	}
	c.grant()
}

// admit takes a slot for f. Called with mu held.
func (c *core) admit(f *flow) {
	c.inFlight++
	f.inFlight++
	if c.ctl != nil {
		c.ctl.track(c.clock.Now(), c.inFlight)
	}
	c.obs.InFlightChanged(c.inFlight)
}

// free returns a slot of f and the time it did so. Called with mu held.
func (c *core) free(f *flow) time.Time {
	c.inFlight--
	f.inFlight--
	var now time.Time
	if c.ctl != nil {
		now = c.clock.Now()
		c.ctl.track(now, c.inFlight)
	}
	c.obs.InFlightChanged(c.inFlight)
	return now
}

// grant hands free slots to waiters. Called with mu held.
func (c *core) grant() {
	for c.waiting > 0 && c.inFlight < c.limit {
		f := c.next()
		e := f.waiters.Front()
		w := e.Value.(*waiter)
		f.waiters.Remove(e)
		c.waiting--
		w.granted = true
		c.admit(f)
		close(w.ready)
	}
}

// next picks the flow whose waiter gets the next slot: a flow below its
// reserved share first, then by priority. Called with mu held and waiting > 0.
func (c *core) next() *flow {
	for _, f := range c.flows {
		if f.waiters.Len() > 0 && f.inFlight < f.reserve {
			return f
		}
	}
	for _, f := range c.flows {
		if f.waiters.Len() > 0 {
			return f
		}
	}
	panic("backpressure: waiting count out of sync")
}

func (c *core) setLimit(l int) {
	if l == c.limit {
		return
	}
	c.limit = l
	c.reserve()
	c.obs.LimitChanged(l)
}

// Acquire waits for a slot of the default flow. It returns ctx.Err() if ctx
// is done first (also when ctx was done on entry), and then the caller must
// not Release.
func (c *core) Acquire(ctx context.Context) error { return c.acquire(ctx, c.def) }

// TryAcquire takes a slot of the default flow if one is free and nobody is
// waiting, without blocking. It reports whether it did; if so the caller
// must Release.
func (c *core) TryAcquire() bool { return c.tryAcquire(c.def) }

// Release frees a slot of the default flow and reports the call's outcome.
// It panics if no slot of the default flow is held.
func (c *core) Release(latency time.Duration, o Outcome) { c.release(c.def, latency, o) }

// Limit is the current limit, shared by all flows.
func (c *core) Limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

// InFlight is the number of slots held now, by all flows together.
func (c *core) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// Flow returns the limiter of the partition named name (see
// WithPartitions), or an error wrapping ErrUnknownFlow.
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
func (f *Flow) Release(latency time.Duration, o Outcome) { f.c.release(f.f, latency, o) }

// Limit is the shared limit, all of which the flow may use when the others
// leave it idle.
func (f *Flow) Limit() int { return f.c.Limit() }

// InFlight is the number of slots this flow holds.
func (f *Flow) InFlight() int {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return f.f.inFlight
}

// Reserved is the number of slots guaranteed to this flow at the current
// limit: floor(Share * Limit).
func (f *Flow) Reserved() int {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return f.f.reserve
}
