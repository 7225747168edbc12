package stages

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sluice-go/sluice/pipeline"
)

// FanOutOpt configures FanOut.
type FanOutOpt interface{ applyFanOut(*fanOutCfg) }

type fanOutCfg struct {
	buffer    int
	unordered bool
}

type unorderedOpt struct{}

func (unorderedOpt) applyFanOut(c *fanOutCfg) { c.unordered = true }

// Unordered makes a FanOut hand each message to the next free worker, in
// offset order but with no ordering between their completions.
func Unordered() FanOutOpt { return unorderedOpt{} }

// FanOut runs what follows it (stages up to and including the sink) in
// workers goroutines, so that a slow sink is called for several messages at
// once.
//
// By default it is key-ordered: messages with the same key are handled one
// at a time, in offset order, while different keys run in parallel. It does
// not hash keys to fixed lanes (a hot lane would idle the others); it keeps
// a FIFO queue per key and a free worker takes the head of any key that has
// no message in flight, as Confluent's Parallel Consumer does. A key is in
// flight from the moment a worker takes its message until that message has
// settled downstream (FanOut learns it through a token that wraps the
// message's: pipeline.Wrapper). Records without a key (nil) carry no order
// and go to any free worker. Unordered drops key order altogether. With one
// worker, FanOut hands messages on in offset order: partition order, which
// includes key order.
//
// At most Buffer messages (default 1024) wait for a worker; Push blocks
// beyond that, which backpressures the partition. Messages handed to workers
// are not counted: at most workers of them are being pushed on at once.
// Memory per idle key is a small struct kept for reuse, trimmed when more
// than Buffer+workers keys are idle.
//
// A message that stays unsettled keeps its key in flight: a failure held for
// lack of a DeadLetterer (pipeline.OutcomeHeld) stops its key, and the
// fan-out's Close then waits for the partition's drain timeout.
//
// Stages that hold messages (Window, Batches) may not follow a key-ordered
// FanOut (a build error): the fan-out would wait for them to settle before
// handing out the next message of their key.
func FanOut[T any](in *pipeline.Stream[T], name string, workers int, opts ...FanOutOpt) *pipeline.Stream[T] {
	cfg := fanOutCfg{buffer: 1024}
	for _, o := range opts {
		o.applyFanOut(&cfg)
	}
	// One worker taking messages in offset order keeps every order there
	// is: partition order, hence key order, without leases.
	keyed := !cfg.unordered && workers > 1
	info := pipeline.StageInfo{Name: name, Leases: keyed}
	switch {
	case workers < 1:
		info.Err = fmt.Errorf("needs at least 1 worker, got %d", workers)
	case cfg.buffer < 1:
		info.Err = fmt.Errorf("Buffer must be at least 1, got %d", cfg.buffer)
	}
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[T]) pipeline.Inlet[T] {
		f := &fanOut[T]{
			env:   env,
			out:   out,
			limit: cfg.buffer,
			keyed: keyed,
			lanes: map[string]*lane[T]{},
			loose: &lane[T]{loose: true},
		}
		f.maxIdle = cfg.buffer + workers
		f.work.L, f.space.L, f.drained.L = &f.mu, &f.mu, &f.mu
		env.AfterCancel(f.stop)
		for range workers {
			env.Go(f.worker)
		}
		return f
	})
}

type fanOut[T any] struct {
	env   *pipeline.Env
	out   pipeline.Inlet[T]
	limit int
	keyed bool

	mu      sync.Mutex
	work    sync.Cond // workers wait for a ready lane
	space   sync.Cond // Push waits for room
	drained sync.Cond // End waits for the last message to be handed out

	lanes   map[string]*lane[T]
	ready   deque[*lane[T]] // lanes with a message a worker may take, oldest first
	loose   *lane[T]        // messages without order
	queued  int             // messages waiting in lanes
	active  int             // workers pushing a message on
	idle    int             // lanes in lanes with nothing queued and nothing in flight
	maxIdle int
	ended   bool
	stopped bool
	leases  []*lease[T] // free list
	spare   []*lane[T]  // free list
}

// lane is one key's queue.
type lane[T any] struct {
	key     string
	q       deque[pipeline.Message[T]]
	busy    bool // a message of the key is in flight
	inReady bool
	loose   bool
}

func (f *fanOut[T]) Push(m pipeline.Message[T]) bool {
	f.mu.Lock()
	for f.queued >= f.limit && !f.stopped {
		f.space.Wait()
	}
	if f.stopped {
		f.mu.Unlock()
		return false
	}
	l := f.loose
	if k := m.Key(); f.keyed && k != nil {
		l = f.lane(k)
	}
	l.q.push(m)
	f.queued++
	if !l.busy {
		if !l.inReady {
			l.inReady = true
			f.ready.push(l)
		}
		f.work.Signal()
	}
	f.mu.Unlock()
	return true
}

// lane returns the lane of key k, making it if needed. f.mu is held.
func (f *fanOut[T]) lane(k []byte) *lane[T] {
	if l, ok := f.lanes[string(k)]; ok {
		if !l.busy && l.q.len() == 0 {
			f.idle--
		}
		return l
	}
	if f.idle > f.maxIdle {
		f.trim()
	}
	var l *lane[T]
	if n := len(f.spare); n > 0 {
		l, f.spare = f.spare[n-1], f.spare[:n-1]
	} else {
		l = &lane[T]{}
	}
	l.key = string(k)
	f.lanes[l.key] = l
	return l
}

// trim forgets idle lanes, keeping a few for reuse. f.mu is held.
func (f *fanOut[T]) trim() {
	for k, l := range f.lanes {
		if !l.busy && l.q.len() == 0 {
			delete(f.lanes, k)
			if len(f.spare) < f.limit {
				l.key = ""
				f.spare = append(f.spare, l)
			}
		}
	}
	f.idle = 0
}

func (f *fanOut[T]) worker() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		for f.ready.len() == 0 && !f.stopped && !(f.ended && f.queued == 0) {
			f.work.Wait()
		}
		if f.stopped || f.ready.len() == 0 {
			return
		}
		l := f.ready.pop()
		m := l.q.pop()
		f.queued--
		f.space.Signal()
		if f.ended && f.queued == 0 {
			f.work.Broadcast() // idle workers may leave
		}
		if l.loose {
			if l.q.len() > 0 {
				f.ready.push(l)
			} else {
				l.inReady = false
			}
		} else {
			l.inReady, l.busy = false, true
			m = m.WithToken(f.lease(l, m.Token()))
		}
		f.active++
		f.mu.Unlock()
		ok := f.out.Push(m)
		f.mu.Lock()
		f.active--
		if !ok {
			f.stopLocked()
			return
		}
		if f.ended && f.queued == 0 && f.active == 0 {
			f.drained.Broadcast()
		}
	}
}

func (f *fanOut[T]) End() {
	f.mu.Lock()
	f.ended = true
	f.work.Broadcast()
	for !f.stopped && (f.queued > 0 || f.active > 0) {
		f.drained.Wait()
	}
	stopped := f.stopped
	f.mu.Unlock()
	if !stopped {
		f.out.End()
	}
}

// stop runs when the partition's context is done.
func (f *fanOut[T]) stop() {
	f.mu.Lock()
	f.stopLocked()
	f.mu.Unlock()
}

func (f *fanOut[T]) stopLocked() {
	f.stopped = true
	f.work.Broadcast()
	f.space.Broadcast()
	f.drained.Broadcast()
}

// lease is the token a key-ordered FanOut puts around a message it hands
// out; when it settles, the key may hand out its next message.
type lease[T any] struct {
	f       *fanOut[T]
	l       *lane[T]
	inner   pipeline.Token
	holders atomic.Int32
}

var _ pipeline.Wrapper = (*lease[int])(nil)

// lease returns a lease of lane l around inner. f.mu is held.
func (f *fanOut[T]) lease(l *lane[T], inner pipeline.Token) *lease[T] {
	var ls *lease[T]
	if n := len(f.leases); n > 0 {
		ls, f.leases = f.leases[n-1], f.leases[:n-1]
	} else {
		ls = &lease[T]{f: f}
	}
	ls.l, ls.inner = l, inner
	ls.holders.Store(1)
	return ls
}

func (ls *lease[T]) Hold(n int) {
	if n < 0 {
		panic(fmt.Sprintf("stages: Hold(%d) on a fan-out lease", n))
	}
	ls.holders.Add(int32(n))
}

func (ls *lease[T]) Settle() {
	switch n := ls.holders.Add(-1); {
	case n == 0:
		ls.f.release(ls)
	case n < 0:
		panic("stages: fan-out lease settled more often than it was held")
	}
}

func (ls *lease[T]) Unwrap() pipeline.Token { return ls.inner }

// release frees the lease's key, recycles the lease and settles what it
// wrapped.
func (f *fanOut[T]) release(ls *lease[T]) {
	inner := ls.inner
	f.mu.Lock()
	l := ls.l
	l.busy = false
	if l.q.len() > 0 {
		l.inReady = true
		f.ready.push(l)
		f.work.Signal()
	} else {
		f.idle++
	}
	ls.l, ls.inner = nil, nil
	f.leases = append(f.leases, ls)
	f.mu.Unlock()
	inner.Settle()
}

// deque is a growable ring buffer.
type deque[T any] struct {
	buf  []T
	head int
	n    int
}

func (d *deque[T]) len() int { return d.n }

func (d *deque[T]) push(v T) {
	if d.n == len(d.buf) {
		buf := make([]T, max(2, 2*len(d.buf)))
		for i := range d.n {
			buf[i] = d.buf[(d.head+i)&(len(d.buf)-1)]
		}
		d.buf, d.head = buf, 0
	}
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = v
	d.n++
}

func (d *deque[T]) pop() T {
	var zero T
	v := d.buf[d.head]
	d.buf[d.head] = zero
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return v
}
