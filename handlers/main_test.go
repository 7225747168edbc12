package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is a logger that discards everything.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// epoch is where fake clocks start: far enough in the future that a real
// context deadline set in fake time never fires while a test runs.
var epoch = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a sluice.Clock whose timers fire at once: NewTimer(d)
// advances the time by d and returns a timer that has fired, so a guard's
// wait (a backoff, a rate-limit wait, chaos latency) takes no real time.
// The waits are recorded.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []sleep
}

type sleep struct {
	at time.Time
	d  time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) sluice.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, sleep{at: c.now, d: d})
	if d > 0 {
		c.now = c.now.Add(d)
	}
	t := firedTimer{make(chan time.Time, 1)}
	t.ch <- c.now
	return t
}

// firedTimer is a timer that has fired.
type firedTimer struct{ ch chan time.Time }

func (t firedTimer) C() <-chan time.Time { return t.ch }
func (t firedTimer) Stop() bool          { return false }

var _ sluice.Clock = (*fakeClock)(nil)

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) NumSleeps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sleeps)
}

func (c *fakeClock) Sleeps() []sleep {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sleep(nil), c.sleeps...)
}

// msg is the message type of most tests.
type msg struct{ id int }

// fixedLimiter is a bulkhead of n slots that records every release.
type fixedLimiter struct {
	slots chan struct{}

	mu       sync.Mutex
	releases []release
}

type release struct {
	latency time.Duration
	outcome backpressure.Signal
}

func newFixedLimiter(n int) *fixedLimiter { return &fixedLimiter{slots: make(chan struct{}, n)} }

func (l *fixedLimiter) Acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *fixedLimiter) Release(latency time.Duration, o backpressure.Signal) {
	l.mu.Lock()
	l.releases = append(l.releases, release{latency, o})
	l.mu.Unlock()
	<-l.slots
}

func (l *fixedLimiter) Limit() int    { return cap(l.slots) }
func (l *fixedLimiter) InFlight() int { return len(l.slots) }

func (l *fixedLimiter) Releases() []release {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]release(nil), l.releases...)
}

var _ backpressure.Limiter = (*fixedLimiter)(nil)

// recorder implements every hook and keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	attempts []error
	retries  []time.Duration
	states   []stateChange
	waits    []time.Duration
	outcomes []outcome
}

type stateChange struct {
	at       time.Time
	from, to handlers.BreakerState
}

func (sc stateChange) String() string {
	return fmt.Sprintf("%s->%s at %s", sc.from, sc.to, sc.at.Format("15:04:05.000"))
}

type outcome struct {
	outcome  string
	attempts int
}

var (
	_ handlers.HookAttempt      = (*recorder)(nil)
	_ handlers.HookRetry        = (*recorder)(nil)
	_ handlers.HookBreakerState = (*recorder)(nil)
	_ handlers.HookRateWait     = (*recorder)(nil)
	_ handlers.HookOutcome      = (*recorder)(nil)
)

func (r *recorder) OnAttempt(_ string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, err)
}

func (r *recorder) OnRetry(_ string, _ int, d time.Duration, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, d)
}

func (r *recorder) OnBreakerState(_ string, from, to handlers.BreakerState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, stateChange{time.Now(), from, to})
}

func (r *recorder) OnRateWait(_ string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
}

func (r *recorder) OnOutcome(_ string, o string, attempts int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, outcome{o, attempts})
}

func (r *recorder) States() []stateChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stateChange(nil), r.states...)
}

func (r *recorder) Outcomes() []outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]outcome(nil), r.outcomes...)
}

// mustGuard builds a guarded sink or fails t.
func mustGuard[M any](t testing.TB, sink func(context.Context, M) error, opts ...handlers.Opt) handlers.Guarded[M] {
	t.Helper()
	h, err := handlers.Guard(sink, append([]handlers.Opt{handlers.Logger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("Guard: %v", err)
	}
	return h
}

func asFailure(err error, fe **pipeline.FailureError) bool { return errors.As(err, fe) }
