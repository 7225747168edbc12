package handlers

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// ChaosPolicy injects failures and latency in front of a sink, for tests and
// demos. Draws come from a random source seeded by Seed, so a run can be
// repeated. Rates are probabilities in [0, 1].
type ChaosPolicy struct {
	// LatencyRate is the probability that a call is delayed by Latency
	// first. The delay honours the context and counts as the sink's
	// latency.
	LatencyRate float64
	// Latency is the injected delay.
	Latency time.Duration
	// ErrorRate is the probability that a call fails with Err (transient)
	// without reaching the sink.
	ErrorRate float64
	// PermanentRate is the probability that a call fails with
	// pipeline.Permanent(Err) without reaching the sink. It is drawn after ErrorRate.
	PermanentRate float64
	// Err is the injected error. Default ErrInjected.
	Err error
}

type chaosGuard struct {
	p     ChaosPolicy
	clock sluice.Clock

	mu  sync.Mutex
	rnd *rand.Rand
}

func newChaos(c *cfg, p ChaosPolicy) (*chaosGuard, error) {
	const opt = "Chaos"
	for _, f := range []struct {
		name string
		v    float64
	}{{"LatencyRate", p.LatencyRate}, {"ErrorRate", p.ErrorRate}, {"PermanentRate", p.PermanentRate}} {
		if !(f.v >= 0 && f.v <= 1) {
			return nil, configErr(opt, f.name, f.v, "must be in [0, 1]")
		}
	}
	if p.Latency < 0 {
		return nil, configErr(opt, "Latency", p.Latency, "must not be negative")
	}
	if p.Err == nil {
		p.Err = ErrInjected
	}
	return &chaosGuard{p: p, clock: c.clock, rnd: c.rand(2)}, nil
}

// draw decides one call's fate.
func (g *chaosGuard) draw() (delay bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delay = g.rnd.Float64() < g.p.LatencyRate
	switch {
	case g.rnd.Float64() < g.p.ErrorRate:
		err = g.p.Err
	case g.rnd.Float64() < g.p.PermanentRate:
		err = pipeline.Permanent(g.p.Err)
	}
	return delay, err
}

func chaosLayer[M any](g *chaosGuard) layer[M] {
	return func(next step[M]) step[M] {
		return func(ctx context.Context, m M, at attempt) (time.Time, error) {
			delay, err := g.draw()
			if delay {
				if err := sleep(ctx, g.clock, g.p.Latency); err != nil {
					return time.Time{}, err
				}
				at.now = time.Time{}
			}
			if err != nil {
				return time.Time{}, err
			}
			return next(ctx, m, at)
		}
	}
}
