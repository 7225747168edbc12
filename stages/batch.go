package stages

import (
	"fmt"
	"sync"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// Batch groups messages for bulk sinks: it emits a batch when size messages
// have arrived, or linger after the first message of the batch arrived
// (processing time, on the pipeline's clock), whichever comes first; linger 0
// means wait for size only. The batch is one message whose value is its
// members in arrival order; the members settle when it settles, and are each
// dead-lettered if it is. Members' tokens belong to the batch: do not settle
// them.
//
// When the partition closes, a partial batch is emitted at once so that its
// members can settle before the final commit. When the partition is
// cancelled, it is dropped unsettled.
//
// Batch is safe behind a FanOut only if the fan-out is Unordered.
func Batch[T any](in *pipeline.Stream[T], name string, size int, linger time.Duration) *pipeline.Stream[[]pipeline.Message[T]] {
	info := pipeline.StageInfo{Name: name, Holds: true}
	switch {
	case size < 1:
		info.Err = fmt.Errorf("size must be at least 1, got %d", size)
	case linger < 0:
		info.Err = fmt.Errorf("negative linger %v", linger)
	}
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[[]pipeline.Message[T]]) pipeline.Inlet[T] {
		b := &batch[T]{env: env, out: out, size: size, linger: linger}
		if linger > 0 {
			b.alarm = newAlarm(env, b.fire)
		}
		return b
	})
}

type batch[T any] struct {
	env    *pipeline.Env
	out    pipeline.Inlet[[]pipeline.Message[T]]
	size   int
	linger time.Duration
	alarm  *alarm

	mu      sync.Mutex
	items   []pipeline.Message[T]
	due     time.Time // when the current batch must go
	ended   bool
	stopped bool
}

func (b *batch[T]) Push(m pipeline.Message[T]) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	if len(b.items) == 0 {
		b.items = make([]pipeline.Message[T], 0, min(b.size, 1024))
		if b.alarm != nil {
			b.due = b.env.Clock().Now().Add(b.linger)
			b.alarm.set(b.due)
		}
	}
	b.items = append(b.items, m)
	if len(b.items) == b.size {
		return b.emit()
	}
	return true
}

// emit sends the current batch on. b.mu is held.
func (b *batch[T]) emit() bool {
	items := b.items
	b.items = nil
	if !b.out.Push(pipeline.Group(items, items)) {
		b.stopped = true
		return false
	}
	return true
}

func (b *batch[T]) fire() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended || b.stopped || len(b.items) == 0 {
		return time.Time{}
	}
	if b.env.Clock().Now().Before(b.due) {
		return b.due
	}
	b.emit()
	return time.Time{}
}

func (b *batch[T]) End() {
	b.mu.Lock()
	ok := !b.stopped
	if ok && len(b.items) > 0 {
		ok = b.emit()
	}
	b.ended = true
	b.mu.Unlock()
	if b.alarm != nil {
		b.alarm.stop()
	}
	if ok {
		b.out.End()
	}
}
