package stages

import (
	"fmt"

	"github.com/sluice-go/sluice/pipeline"
)

// DuplicateOpt configures Duplicate and Duplicate2.
type DuplicateOpt interface{ applyDuplicate(*dupCfg) }

type dupCfg struct{ buffer int }

// Buffer bounds a stage's queue, in messages. For Duplicate it is each
// branch's buffer (default 256): a branch whose buffer is full blocks the
// stage, so the slowest branch sets the pace and no branch falls more than
// Buffer messages behind the fastest. For FanOut it is the number of messages
// waiting for a worker (default 1024).
func Buffer(n int) BufferOpt { return BufferOpt{n} }

// BufferOpt is the option made by Buffer.
type BufferOpt struct{ n int }

func (o BufferOpt) applyDuplicate(c *dupCfg) { c.buffer = o.n }
func (o BufferOpt) applyFanOut(c *fanOutCfg) { c.buffer = o.n }

// Duplicate sends every message of in to each of n branches. Each branch
// holds the message (pipeline.Token.Hold), so it settles only when every
// branch has settled it. Each branch has its own goroutine and a bounded
// buffer (Buffer, default 256 messages, counting those its goroutine has
// taken and is handing on): a slow branch backpressures the stage once its
// buffer is full, so no branch gets more than Buffer+1 messages ahead of
// another; nothing is dropped and memory stays bounded. A branch's goroutine
// takes all the messages waiting at once, so a busy branch costs one lock
// and at most one wake-up per batch.
func Duplicate[T any](in *pipeline.Stream[T], name string, n int, opts ...DuplicateOpt) []*pipeline.Stream[T] {
	cfg := dupCfg{buffer: 256}
	for _, o := range opts {
		o.applyDuplicate(&cfg)
	}
	info := pipeline.StageInfo{Name: name}
	switch {
	case n < 2:
		info.Err = fmt.Errorf("needs at least 2 branches, got %d", n)
	case cfg.buffer < 1:
		info.Err = fmt.Errorf("Buffer must be at least 1, got %d", cfg.buffer)
	}
	return pipeline.ConnectN(in, info, max(n, 1), func(env *pipeline.Env, outs []pipeline.Inlet[T]) pipeline.Inlet[T] {
		d := &duplicate[T]{boxes: make([]*mailbox[pipeline.Message[T]], len(outs))}
		for i, out := range outs {
			q := newMailbox[pipeline.Message[T]](env, cfg.buffer)
			d.boxes[i] = q
			env.Go(func() {
				if q.drain(out.Push) {
					out.End()
				}
			})
		}
		return d
	})
}

// Duplicate2 is Duplicate with two branches.
func Duplicate2[T any](in *pipeline.Stream[T], name string, opts ...DuplicateOpt) (*pipeline.Stream[T], *pipeline.Stream[T]) {
	outs := Duplicate(in, name, 2, opts...)
	return outs[0], outs[1]
}

type duplicate[T any] struct {
	boxes []*mailbox[pipeline.Message[T]]
}

func (d *duplicate[T]) Push(m pipeline.Message[T]) bool {
	m.Hold(len(d.boxes) - 1)
	for _, q := range d.boxes {
		if !q.put(m) {
			return false
		}
	}
	return true
}

func (d *duplicate[T]) End() {
	for _, q := range d.boxes {
		q.close()
	}
}
