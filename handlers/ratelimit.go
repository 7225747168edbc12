package handlers

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
)

type ratePolicy struct {
	option  string
	limit   rate.Limit
	burst   int
	members func() int // nil: a per-member rate
}

// limitName is the name of the rate's argument, for errors.
func (p ratePolicy) limitName() string {
	if p.members != nil {
		return "total"
	}
	return "r"
}

type rateLimiter struct {
	name    string
	clock   sluice.Clock
	hooks   *hooks
	min     time.Duration
	lim     *rate.Limiter
	total   rate.Limit
	burst   int
	members func() int
	current atomic.Int64 // the member count lim is set for
}

func newRateLimiter(c *cfg, p ratePolicy) (*rateLimiter, error) {
	switch {
	case p.limit <= 0:
		return nil, configErr(p.option, p.limitName(), p.limit, "must be positive")
	case p.burst < 1:
		return nil, configErr(p.option, "burst", p.burst, "must be at least 1")
	}
	rl := &rateLimiter{
		name: c.name, clock: c.clock, hooks: &c.hooks, min: c.minBudget,
		lim: rate.NewLimiter(p.limit, p.burst), total: p.limit, burst: p.burst, members: p.members,
	}
	rl.current.Store(1)
	return rl, nil
}

// follow adapts the limiter to the group's current member count.
func (rl *rateLimiter) follow(now time.Time) {
	n := int64(max(rl.members(), 1))
	if rl.current.Swap(n) == n {
		return
	}
	rl.lim.SetLimitAt(now, rl.total/rate.Limit(n))
	rl.lim.SetBurstAt(now, max(rl.burst/int(n), 1))
}

// wait waits for the limiter to allow one attempt; it returns the time
// after the wait.
func (rl *rateLimiter) wait(ctx context.Context, at attempt) (time.Time, error) {
	now := orNow(rl.clock, at.now)
	if rl.members != nil {
		rl.follow(now)
	}
	if rl.lim.AllowN(now, 1) {
		rl.observe(0)
		return now, nil
	}
	r := rl.lim.ReserveN(now, 1)
	if !r.OK() {
		// Unreachable: burst is at least 1.
		return now, errNoBudget
	}
	d := r.DelayFrom(now)
	if !at.room(ctx, now, d+rl.min) {
		r.CancelAt(now)
		return now, errNoBudget
	}
	if err := sleep(ctx, rl.clock, d); err != nil {
		r.CancelAt(rl.clock.Now())
		return now, waitErr(err)
	}
	rl.observe(d)
	return rl.clock.Now(), nil
}

func (rl *rateLimiter) observe(d time.Duration) {
	for _, h := range rl.hooks.rate {
		h.OnRateWait(rl.name, d)
	}
}

func rateLayer[M any](rl *rateLimiter) layer[M] {
	if rl.total == rate.Inf {
		// No limit: every attempt passes at once. Only the hooks are
		// told, and the limiter and its lock are left out.
		return func(next step[M]) step[M] {
			return func(ctx context.Context, m M, at attempt) (time.Time, error) {
				rl.observe(0)
				return next(ctx, m, at)
			}
		}
	}
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (time.Time, error) {
			now, err := rl.wait(ctx, at)
			if err != nil {
				return time.Time{}, err
			}
			at.now = now
			return next(ctx, m, at)
		}
	}
}
