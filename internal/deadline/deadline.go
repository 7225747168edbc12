// Package deadline gives contexts a deadline without arming a timer until
// someone waits for it.
//
// context.WithDeadline starts a runtime timer and registers the child with
// its parent, about half a microsecond and several allocations, even when
// nothing ever waits on Done: the common case for a sink guard that only
// reads the deadline, and for a fast sink. A context from With reports its
// deadline and answers Err against the clock at once, and arms a real timer
// only on the first call to Done (a nested one arms its parent's too, as
// context.WithDeadline would register with it).
//
// It is internal because pipeline and handlers both use it and may not
// import each other; it knows nothing of either.
package deadline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// With returns a context that is done when parent is or when d passes, like
// context.WithDeadline, and its cancel function, which must be called when
// the work is done. If parent's own deadline is not after d, With returns
// parent itself (and a no-op cancel): there is nothing to add.
func With(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	if pd, ok := parent.Deadline(); ok && !pd.After(d) {
		return parent, noop
	}
	c := &lazy{parent: parent, deadline: d}
	return c, c.cancel
}

func noop() {}

// lazy is a deadline context whose timer is armed on the first Done.
type lazy struct {
	parent   context.Context
	deadline time.Time

	once sync.Once
	real atomic.Pointer[armed] // set by the first Done
	dead atomic.Bool           // cancel was called before Done
}

type armed struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *lazy) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *lazy) Done() <-chan struct{} {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.parent, c.deadline)
		c.real.Store(&armed{ctx, cancel})
		// Publish first, then look: a cancel that ran before the store
		// set dead, one after it sees real.
		if c.dead.Load() {
			cancel()
		}
	})
	return c.real.Load().ctx.Done()
}

func (c *lazy) Err() error {
	if a := c.real.Load(); a != nil {
		return a.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if c.dead.Load() {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *lazy) Value(key any) any { return c.parent.Value(key) }

func (c *lazy) cancel() {
	c.dead.Store(true)
	if a := c.real.Load(); a != nil {
		a.cancel()
	}
}

func (c *lazy) String() string { return "deadline.With(" + c.deadline.String() + ")" }

// Sleep waits d, or until ctx is done, and then returns ctx.Err(); it
// returns nil after a full wait. A d of zero or less returns at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
