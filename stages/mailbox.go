package stages

import (
	"sync"

	"github.com/sluice-go/sluice/pipeline"
)

// mailbox is a bounded queue with many producers and one consumer that takes
// everything waiting at once, so that a busy stage pays for one lock and at
// most one wake-up per batch instead of per message, as a channel would.
//
// It holds at most limit messages, counting those the consumer has taken and
// not yet handed on: put blocks beyond that.
type mailbox[T any] struct {
	limit int
	// release is how many handed-on messages the consumer reports at once.
	release int

	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	buf      []T
	n        int // in buf, plus taken and not yet released
	waiting  bool
	putters  int
	closed   bool
	stopped  bool
}

func newMailbox[T any](env *pipeline.Env, limit int) *mailbox[T] {
	q := &mailbox[T]{limit: limit, release: max(1, limit/4)}
	q.notEmpty.L, q.notFull.L = &q.mu, &q.mu
	env.AfterCancel(q.stop)
	return q
}

// put adds v, waiting for room; it returns false if the partition was
// cancelled.
func (q *mailbox[T]) put(v T) bool {
	q.mu.Lock()
	for q.n >= q.limit && !q.stopped {
		q.putters++
		q.notFull.Wait()
		q.putters--
	}
	if q.stopped {
		q.mu.Unlock()
		return false
	}
	q.buf = append(q.buf, v)
	q.n++
	if q.waiting {
		q.notEmpty.Signal()
	}
	q.mu.Unlock()
	return true
}

// close says no more puts will come.
func (q *mailbox[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Signal()
	q.mu.Unlock()
}

func (q *mailbox[T]) stop() {
	q.mu.Lock()
	q.stopped = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
	q.mu.Unlock()
}

// drain runs the consumer: it hands every message to push in order until the
// mailbox is closed and empty (true) or push or the partition gives up
// (false).
func (q *mailbox[T]) drain(push func(T) bool) bool {
	var spare []T
	for {
		q.mu.Lock()
		for len(q.buf) == 0 && !q.closed && !q.stopped {
			q.waiting = true
			q.notEmpty.Wait()
			q.waiting = false
		}
		if q.stopped || len(q.buf) == 0 {
			stopped := q.stopped
			q.mu.Unlock()
			return !stopped
		}
		batch := q.buf
		q.buf = spare[:0]
		q.mu.Unlock()

		done := 0
		for i := range batch {
			if !push(batch[i]) {
				return false
			}
			var zero T
			batch[i] = zero
			if done++; done == q.release {
				q.handed(done)
				done = 0
			}
		}
		q.handed(done)
		spare = batch
	}
}

// handed reports that k taken messages were handed on.
func (q *mailbox[T]) handed(k int) {
	if k == 0 {
		return
	}
	q.mu.Lock()
	q.n -= k
	if q.putters > 0 {
		q.notFull.Broadcast()
	}
	q.mu.Unlock()
}
