package handlers

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sluice-go/sluice/pipeline"
)

// BreakerPolicy configures a sink's circuit breaker (gobreaker v2). Zero
// fields take their defaults.
//
// The breaker counts the sink's results over a rolling Window of Buckets
// buckets. It opens when at least MinRequests results are in the window and
// at least FailureRatio of them are failures, or, while the window holds
// fewer than MinRequests results, when the last ConsecutiveFailures results
// in it all failed. Open, it lets nothing through
// for OpenTimeout; then it is half-open and lets HalfOpenProbes calls
// through: if all of them succeed it closes, if one fails it opens again.
//
// A success is a nil error, or a permanent error (the downstream answered,
// it just rejects this record). Errors that say nothing about the
// downstream are not counted at all: cancellations, panics and other errors
// implementing pipeline.Failure with a class other than permanent, and
// attempts a guard inside the breaker refused to start for lack of time. Everything else is a failure.
//
// With a failure ratio of one half, a window full of successes and then 100%
// failure at a steady rate, the breaker opens within half a window.
type BreakerPolicy struct {
	// Window is the rolling window over which results are counted.
	// Default 10s.
	Window time.Duration
	// Buckets is how many buckets the window slides by. Default 10.
	Buckets int
	// FailureRatio is the share of failures that opens the breaker, in
	// (0, 1]. Default 0.5.
	FailureRatio float64
	// MinRequests is how many results the window must hold before the
	// breaker may open, so a handful of failures at low traffic does not
	// open it. Default 20.
	MinRequests int
	// ConsecutiveFailures opens the breaker at little traffic, where the
	// window never holds MinRequests results: a sink fed by one lane, whose
	// retries back off, still opens in an outage. It does not apply once
	// the window holds MinRequests results, so random errors at high
	// traffic cannot open the breaker by a run of bad luck. Default 5; a
	// negative value disables it.
	ConsecutiveFailures int
	// OpenTimeout is how long the breaker stays open before probing.
	// Default 5s: longer spares a struggling downstream, shorter resumes
	// sooner after a blip.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many calls the half-open breaker lets through;
	// that many consecutive successes close it. Default 3.
	HalfOpenProbes int
}

// Breaker defaults.
const (
	DefaultBreakerWindow  = 10 * time.Second
	DefaultBreakerBuckets = 10
	DefaultFailureRatio   = 0.5
	DefaultMinRequests    = 20
	DefaultConsecutive    = 5
	DefaultOpenTimeout    = 5 * time.Second
	DefaultHalfOpenProbes = 3
)

// BreakerState is the state of a sink's breaker.
type BreakerState int

// Breaker states; the values suit a metrics gauge.
const (
	BreakerClosed BreakerState = iota
	BreakerHalfOpen
	BreakerOpen
)

// String returns "closed", "half-open" or "open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

func fromGobreaker(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	case gobreaker.StateOpen:
		return BreakerOpen
	}
	return BreakerClosed
}

// Results as the breaker should count them; see judge.
var (
	errCountSuccess  = errors.New("handlers: breaker: counted as success")
	errCountExcluded = errors.New("handlers: breaker: not counted")
)

type breaker struct {
	name        string
	cb          *gobreaker.CircuitBreaker[struct{}]
	classify    Classifier
	hooks       *hooks
	logger      *slog.Logger
	min         time.Duration
	openTimeout time.Duration
	state       atomic.Int32  // BreakerState, mirrored from gobreaker
	calls       atomic.Uint64 // tickets of the calls let through, in start order
	alive       atomic.Uint64 // the latest ticket of a call the downstream answered
	// failing counts the calls that failed, by the breaker's judgement,
	// since the downstream last answered one.
	failing atomic.Int64

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change a waiter may care about
	openUntil time.Time
}

func newBreaker(c *cfg, p BreakerPolicy) (*breaker, error) {
	const opt = "Breaker"
	switch {
	case p.Window < 0:
		return nil, configErr(opt, "Window", p.Window, "must not be negative")
	case p.Buckets < 0:
		return nil, configErr(opt, "Buckets", p.Buckets, "must not be negative")
	case p.FailureRatio < 0 || p.FailureRatio > 1 || math.IsNaN(p.FailureRatio):
		return nil, configErr(opt, "FailureRatio", p.FailureRatio, "must be in (0, 1]")
	case p.MinRequests < 0:
		return nil, configErr(opt, "MinRequests", p.MinRequests, "must not be negative")
	case p.OpenTimeout < 0:
		return nil, configErr(opt, "OpenTimeout", p.OpenTimeout, "must not be negative")
	case p.HalfOpenProbes < 0 || p.HalfOpenProbes > math.MaxUint32:
		return nil, configErr(opt, "HalfOpenProbes", p.HalfOpenProbes, "must be in [1, 2^32)")
	}
	if p.Window == 0 {
		p.Window = DefaultBreakerWindow
	}
	if p.Buckets == 0 {
		p.Buckets = DefaultBreakerBuckets
	}
	if p.FailureRatio == 0 {
		p.FailureRatio = DefaultFailureRatio
	}
	if p.MinRequests == 0 {
		p.MinRequests = DefaultMinRequests
	}
	if p.ConsecutiveFailures == 0 {
		p.ConsecutiveFailures = DefaultConsecutive
	}
	if p.OpenTimeout == 0 {
		p.OpenTimeout = DefaultOpenTimeout
	}
	if p.HalfOpenProbes == 0 {
		p.HalfOpenProbes = DefaultHalfOpenProbes
	}
	period := p.Window / time.Duration(p.Buckets)
	if period <= 0 {
		return nil, configErr(opt, "Buckets", p.Buckets, "leaves buckets shorter than 1ns in Window "+p.Window.String())
	}
	b := &breaker{
		name:        c.name,
		classify:    c.classifier,
		hooks:       &c.hooks,
		logger:      c.logger,
		min:         c.minBudget,
		openTimeout: p.OpenTimeout,
		changed:     make(chan struct{}),
	}
	minReq, ratio := uint32(p.MinRequests), p.FailureRatio
	consecutive := uint32(math.MaxUint32)
	if p.ConsecutiveFailures > 0 {
		consecutive = uint32(min(p.ConsecutiveFailures, math.MaxUint32))
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         c.name,
		MaxRequests:  uint32(p.HalfOpenProbes),
		Interval:     p.Window,
		BucketPeriod: period,
		Timeout:      p.OpenTimeout,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			total := n.TotalFailures + n.TotalSuccesses
			if total < minReq {
				return n.ConsecutiveFailures >= consecutive
			}
			return float64(n.TotalFailures) >= ratio*float64(total)
		},
		OnStateChange: b.onStateChange,
		IsSuccessful:  func(err error) bool { return err == nil || err == errCountSuccess },
		IsExcluded:    func(err error) bool { return err == errCountExcluded },
	})
	return b, nil
}

// onStateChange runs under gobreaker's lock.
func (b *breaker) onStateChange(_ string, from, to gobreaker.State) {
	f, t := fromGobreaker(from), fromGobreaker(to)
	b.state.Store(int32(t))
	if t == BreakerOpen {
		b.mu.Lock()
		b.openUntil = time.Now().Add(b.openTimeout)
		b.mu.Unlock()
	}
	b.wake()
	level := slog.LevelInfo
	if t == BreakerOpen {
		level = slog.LevelWarn
	}
	b.logger.Log(context.Background(), level, "sink breaker state changed", "sink", b.name, "from", f.String(), "to", t.String())
	for _, h := range b.hooks.breaker {
		h.OnBreakerState(b.name, f, t)
	}
}

// wake tells waiters that the state changed, or that a half-open probe
// finished so a probe slot may be free.
func (b *breaker) wake() {
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// judge maps an attempt's error to how the breaker counts it.
func (b *breaker) judge(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.Canceled), errors.Is(err, context.Canceled), errors.Is(err, errNoBudget):
		return errCountExcluded
	}
	var f pipeline.Failure
	if errors.As(err, &f) && f.FailureClass() != pipeline.ClassPermanent {
		return errCountExcluded
	}
	if verdict(b.classify, err).Permanent {
		return errCountSuccess
	}
	return err
}

// await waits after the breaker refused a call with berr, until a call may
// be tried again. It returns ctx.Err() if ctx is cancelled, and errNoBudget
// if the record's deadline passes or would pass first.
func (b *breaker) await(ctx context.Context, at attempt, berr error) error {
	b.mu.Lock()
	ch, until := b.changed, b.openUntil
	b.mu.Unlock()
	// Half-open with every probe slot taken: a probe's end wakes us; the
	// timer is only a safety net.
	now := time.Now()
	wait := b.openTimeout
	if berr == gobreaker.ErrOpenState {
		// gobreaker half-opens strictly after its expiry.
		wait = max(until.Sub(now), 0) + time.Millisecond
		if !at.room(ctx, now, wait+b.min) {
			return errNoBudget
		}
	}
	// A deadline that is not in ctx (Guard's Budget) ends the wait
	// as ctx's own would.
	capped := false
	if !at.dl.IsZero() {
		if left := at.dl.Sub(now); left < wait {
			wait, capped = max(left, 0), true
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		if capped {
			return errNoBudget
		}
		return nil
	case <-ctx.Done():
		return waitErr(ctx.Err())
	}
}

func breakerLayer[M any](b *breaker) layer[M] {
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (time.Time, error) {
			for {
				var (
					called bool
					ticket uint64
					end    time.Time
					err    error
				)
				_, berr := b.cb.Execute(func() (struct{}, error) {
					called = true
					ticket = b.calls.Add(1)
					end, err = next(ctx, m, at)
					return struct{}{}, b.judge(ctx, err)
				})
				if called {
					switch {
					case berr == nil || berr == errCountSuccess:
						b.answered(ticket)
						if b.failing.Load() != 0 {
							b.failing.Store(0) // a read alone while healthy: no write every call shares
						}
					case berr != errCountExcluded:
						b.failing.Add(1)
					}
					if BreakerState(b.state.Load()) == BreakerHalfOpen {
						b.wake()
					}
					return end, err
				}
				if werr := b.await(ctx, at, berr); werr != nil {
					return time.Time{}, werr
				}
				at.now = time.Time{} // it waited: the layers inside read the clock again
			}
		}
	}
}

// answered notes that the downstream answered the call with ticket.
func (b *breaker) answered(ticket uint64) {
	for {
		cur := b.alive.Load()
		if ticket <= cur || b.alive.CompareAndSwap(cur, ticket) {
			return
		}
	}
}

// mark returns the ticket of the latest call started, for outage.
func (b *breaker) mark() uint64 { return b.calls.Load() }

// open reports whether the breaker is not closed.
func (b *breaker) open() bool { return BreakerState(b.state.Load()) != BreakerClosed }

// answeredSince reports whether a call started after mark was answered.
func (b *breaker) answeredSince(mark uint64) bool { return b.alive.Load() > mark }

// failingCalls is how many calls failed since the latest answer.
func (b *breaker) failingCalls() int64 { return b.failing.Load() }
