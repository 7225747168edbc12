package sluicefx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/sluice-go/sluice/consumer"
)

// Runner runs a consumer under a start/stop lifecycle, such as fx's: Start
// starts consumer.Run in a goroutine and returns at once; Stop drains and
// commits within its context's deadline and stops at once if that passes.
// It needs no fx.
type Runner struct {
	c      *consumer.Consumer
	log    *slog.Logger
	onExit func(error)

	startOnce sync.Once
	started   chan struct{} // closed by Start
	stopping  atomic.Bool   // Stop was called
	exited    atomic.Bool   // onExit was called
	done      chan struct{} // closed when Run has returned
	err       error         // Run's error; read after done
}

// NewRunner returns a Runner of c. onExit, if not nil, is called from the
// Run goroutine when Run returns an error that Stop did not ask for (a
// fatal error: the handler failed to open a partition or panicked); the
// fx module uses it to shut the application down with exit code 1. log
// (nil: slog.Default()) reports a drain cut short by Stop's deadline.
func NewRunner(c *consumer.Consumer, log *slog.Logger, onExit func(error)) *Runner {
	if log == nil {
		log = slog.Default()
	}
	return &Runner{c: c, log: log, onExit: onExit, started: make(chan struct{}), done: make(chan struct{})}
}

// Start starts consuming in a goroutine and returns at once; the group is
// joined in the background (watch Status, or /readyz). The context is not
// used: the consumer runs until Stop. Calling Start again does nothing.
func (r *Runner) Start(context.Context) error {
	r.startOnce.Do(func() {
		close(r.started)
		go func() {
			defer close(r.done)
			err := r.c.Run(context.Background())
			if errors.Is(err, consumer.ErrClosed) && r.stopping.Load() {
				// Stop closed the consumer before Run began: a
				// requested stop, not a failure.
				err = nil
			}
			r.err = err
			if err != nil && !r.stopping.Load() && r.onExit != nil {
				r.exited.Store(true)
				r.onExit(err)
			}
		}()
	})
	return nil
}

// Stop shuts the consumer down gracefully, as consumer.Close does: fetching
// stops, in-flight records settle within the consumer's drain timeout, the
// settled offsets are committed and the group is left. If ctx ends first,
// Stop falls back to consumer.Stop, which cancels in-flight work and
// commits only what has settled, and returns an error saying so. It waits
// for the consumer's goroutines either way. It returns nil for a consumer
// that already stopped on its own (its fatal error went to onExit), and
// the consumer's error when the stop itself did not end cleanly (a
// *consumer.CommitError: the final commits did not land). Start followed
// at once by Stop is a clean stop, whatever order the consumer sees them in.
func (r *Runner) Stop(ctx context.Context) error {
	r.stopping.Store(true)
	select {
	case <-r.started:
	default:
		r.c.Close() // never started: release the client
		return nil
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		r.c.Close()
	}()
	select {
	case <-closed:
		<-r.done
		if r.err != nil && !r.exited.Load() {
			return fmt.Errorf("sluicefx: stop: %w", r.err)
		}
		return nil
	case <-ctx.Done():
	}
	r.log.Warn("sluicefx: graceful drain did not finish before the stop deadline; cancelling in-flight records (they stay uncommitted and are handled again)")
	r.c.Stop()
	<-closed
	<-r.done
	return fmt.Errorf("sluicefx: stop: drain cut short: %w", ctx.Err())
}

// Done is closed once the consumer has stopped.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Err is the error Run returned once Done is closed: nil after a requested
// stop, the fatal error otherwise. It is nil while the consumer runs.
func (r *Runner) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}
