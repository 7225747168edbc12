package stages

import (
	"fmt"
	"sync"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// Batch is what Batches emits: its members, in arrival order. Their tokens
// belong to the batch's message: do not settle them.
//
// A sink of batches reads
//
//	func(ctx context.Context, b pipeline.Message[stages.Batch[Order]]) error {
//		for _, m := range b.Value() { ... m.Value() is an Order ... }
//	}
type Batch[T any] []pipeline.Message[T]

// Values returns the members' values, in arrival order, in a new slice.
func (b Batch[T]) Values() []T {
	vs := make([]T, len(b))
	for i, m := range b {
		vs[i] = m.Value()
	}
	return vs
}

// Batches groups messages for bulk sinks: it emits a Batch when size
// messages have arrived, or linger after the first message of the batch
// arrived (processing time, on the pipeline's clock), whichever comes first;
// linger 0 means wait for size only. The batch is one message whose value is
// its members in arrival order; the members settle when it settles, and are
// each dead-lettered if it is.
//
// When the partition closes, a partial batch is emitted at once so that its
// members can settle before the final commit. When the partition is
// cancelled, it is dropped unsettled.
//
// Batches is safe behind a FanOut only if the fan-out is Unordered.
func Batches[T any](in *pipeline.Stream[T], name string, size int, linger time.Duration) *pipeline.Stream[Batch[T]] {
	info := pipeline.StageInfo{Name: name, Holds: true}
	switch {
	case size < 1:
		info.Err = fmt.Errorf("size must be at least 1, got %d", size)
	case linger < 0:
		info.Err = fmt.Errorf("negative linger %v", linger)
	}
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[Batch[T]]) pipeline.Inlet[T] {
		b := &batch[T]{env: env, out: out, size: size, linger: linger}
		if linger > 0 {
			b.alarm = newAlarm(env, b.fire)
		}
		return b
	})
}

type batch[T any] struct {
	env    *pipeline.Env
	out    pipeline.Inlet[Batch[T]]
	size   int
	linger time.Duration
	alarm  *alarm

	mu      sync.Mutex
	items   Batch[T]
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
		b.items = make(Batch[T], 0, min(b.size, 1024))
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
