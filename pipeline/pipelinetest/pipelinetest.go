// Package pipelinetest has fakes for testing pipelines, stages and sinks
// without Kafka: a settler that computes each partition's commit watermark, a
// dead letterer that records what it is given, a fake clock, and helpers that
// make records and drive a pipeline.Handler as the consumer would.
package pipelinetest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// Settler is a pipeline.Settler that records which offsets settled and
// computes, per partition, the watermark a consumer would commit: the lowest
// offset not yet settled, counting from the first offset made by Records.
type Settler struct {
	mu      sync.Mutex
	parts   map[pipeline.TopicPartition]*watermark
	total   int
	twice   []string
	changed chan struct{}
	// OnSettled, if set, is called (under no lock) for each settled record
	// before it is counted.
	OnSettled func(r *pipeline.Record)
}

type watermark struct {
	next    int64 // lowest unsettled offset
	settled map[int64]bool
}

// NewSettler returns an empty Settler.
func NewSettler() *Settler {
	return &Settler{parts: map[pipeline.TopicPartition]*watermark{}, changed: make(chan struct{})}
}

var _ pipeline.Settler = (*Settler)(nil)

// Settled records r as settled.
func (s *Settler) Settled(r *pipeline.Record) {
	if s.OnSettled != nil {
		s.OnSettled(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.part(pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition})
	if w.settled[r.Offset] || r.Offset < w.next {
		s.twice = append(s.twice, r.String())
		return
	}
	w.settled[r.Offset] = true
	for w.settled[w.next] {
		delete(w.settled, w.next)
		w.next++
	}
	s.total++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Settler) part(tp pipeline.TopicPartition) *watermark {
	w := s.parts[tp]
	if w == nil {
		w = &watermark{settled: map[int64]bool{}}
		s.parts[tp] = w
	}
	return w
}

// Records makes n records of tp with offsets from, from+1, ..., bound to s.
// fill, if not nil, fills in each record (key, value, timestamp...) given its
// index.
func (s *Settler) Records(tp pipeline.TopicPartition, from int64, n int, fill func(i int, r *pipeline.Record)) []*pipeline.Record {
	s.mu.Lock()
	w := s.part(tp)
	if len(w.settled) == 0 && w.next <= from {
		w.next = from
	}
	s.mu.Unlock()
	recs := slices.Grow([]*pipeline.Record(nil), n)
	for i := range n {
		r := &pipeline.Record{Topic: tp.Topic, Partition: tp.Partition, Offset: from + int64(i)}
		if fill != nil {
			fill(i, r)
		}
		r.Bind(s)
		recs = append(recs, r)
	}
	return recs
}

// Watermark is the offset a consumer would commit for tp: the lowest offset
// not settled.
func (s *Settler) Watermark(tp pipeline.TopicPartition) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part(tp).next
}

// IsSettled reports whether r has settled.
func (s *Settler) IsSettled(r *pipeline.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.part(pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition})
	return r.Offset < w.next || w.settled[r.Offset]
}

// Count is how many records have settled.
func (s *Settler) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Twice lists records whose settler was told more than once; it must stay
// empty.
func (s *Settler) Twice() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.twice)
}

// WaitCount waits until at least n records have settled, or timeout passes,
// and reports whether they did.
func (s *Settler) WaitCount(n int, timeout time.Duration) bool {
	return waitFor(timeout, func() (bool, <-chan struct{}) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.total >= n, s.changed
	})
}

// waitFor waits until check reports true, re-checking whenever the channel
// it returned with is closed, or until timeout passes.
func waitFor(timeout time.Duration, check func() (bool, <-chan struct{})) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ok, changed := check()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// DeadLetters is a pipeline.DeadLetterer that keeps what it is given.
type DeadLetters struct {
	// Fail, if set, is called before each write; a non-nil error fails the
	// write. It may block (on ctx, or on a channel the test controls).
	Fail func(ctx context.Context, dl pipeline.DeadLetter) error

	mu      sync.Mutex
	letters []pipeline.DeadLetter
	tries   int
}

var _ pipeline.DeadLetterer = (*DeadLetters)(nil)

// DeadLetter records dl unless Fail fails it.
func (d *DeadLetters) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	d.mu.Lock()
	d.tries++
	d.mu.Unlock()
	if d.Fail != nil {
		if err := d.Fail(ctx, dl); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.letters = append(d.letters, dl)
	return nil
}

// Letters returns the acknowledged dead letters, in order.
func (d *DeadLetters) Letters() []pipeline.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.letters)
}

// Tries is how many writes were attempted, failed ones included.
func (d *DeadLetters) Tries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tries
}

// Feed drives h as a consumer would for one partition: it opens tp, hands
// over recs in chunks of at most chunk records (all at once if chunk < 1),
// and closes the partition, which drains it.
func Feed(ctx context.Context, h pipeline.Handler, tp pipeline.TopicPartition, recs []*pipeline.Record, chunk int) error {
	p, err := h.OpenPartition(ctx, tp)
	if err != nil {
		return err
	}
	defer p.Close()
	if chunk < 1 {
		chunk = max(1, len(recs))
	}
	for len(recs) > 0 {
		n := min(chunk, len(recs))
		if err := p.Handle(ctx, recs[:n]); err != nil {
			return fmt.Errorf("handle: %w", err)
		}
		recs = recs[n:]
	}
	return nil
}

// Clock is a fake sluice.Clock: time moves only when Advance or Set says
// so, and timers fire then, in order of their due time. Every package's
// Clock option takes it.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	changed chan struct{}
}

var _ sluice.Clock = (*Clock)(nil)

// NewClock returns a clock stopped at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start, changed: make(chan struct{})} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer due d from now; it fires at once if d <= 0.
func (c *Clock) NewTimer(d time.Duration) sluice.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	c.notify()
	return t
}

// Advance moves the clock forward by d, firing the timers that come due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), firing the timers that come due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
			continue
		}
		tm.ch <- tm.at
	}
	clear(c.timers[len(kept):])
	c.timers = kept
	c.notify()
}

// Timers is how many timers are pending.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitTimers waits until at least n timers are pending, or timeout passes,
// and reports whether they were.
func (c *Clock) WaitTimers(n int, timeout time.Duration) bool {
	return waitFor(timeout, func() (bool, <-chan struct{}) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.timers) >= n, c.changed
	})
}

func (c *Clock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

type timer struct {
	c  *Clock
	at time.Time
	ch chan time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

func (t *timer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, tm := range c.timers {
		if tm == t {
			c.timers = slices.Delete(c.timers, i, i+1)
			c.notify()
			return true
		}
	}
	return false
}
