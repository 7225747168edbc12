package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/deadline"
	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/pipeline"
)

// Phase is what the simulated downstream is doing.
type Phase int

// Phases of the downstream, in the order a cycle goes through them.
const (
	// PhaseNormal: fast, with room for the load and a trickle of 503s.
	PhaseNormal Phase = iota
	// PhaseSlow: every call is several times slower and the downstream
	// serves a quarter of the calls at once, below what the load needs.
	PhaseSlow
	// PhaseDown: every call fails at once with 503 and a Retry-After.
	PhaseDown
	// PhaseRecovered: normal again, with the backlog to work off.
	PhaseRecovered
)

func (p Phase) String() string {
	return [...]string{"normal", "slow", "DOWN", "recovered"}[p]
}

// Schedule places the phases in a cycle of the downstream: normal for the
// first quarter, slow until 45%, down until 65%, then recovered. The cycle
// repeats, so a long run (the docker-compose demo) goes through an outage
// every cycle.
type Schedule struct {
	Start time.Time
	Cycle time.Duration
}

// Phase boundaries as fractions of the cycle.
const (
	slowAt      = 0.25
	downAt      = 0.45
	recoveredAt = 0.65
)

// At returns the phase at t.
func (s Schedule) At(t time.Time) Phase {
	if s.Cycle <= 0 {
		return PhaseNormal
	}
	f := float64(t.Sub(s.Start)%s.Cycle) / float64(s.Cycle)
	switch {
	case f < slowAt:
		return PhaseNormal
	case f < downAt:
		return PhaseSlow
	case f < recoveredAt:
		return PhaseDown
	}
	return PhaseRecovered
}

// Outage is how long the downstream is down in each cycle.
func (s Schedule) Outage() time.Duration {
	return time.Duration(float64(s.Cycle) * (recoveredAt - downAt))
}

// Downstream model. Latency grows with concurrency above the servers
// (processor sharing), so that the adaptive limiter has a knee to find.
const (
	baseLatency     = 4 * time.Millisecond
	normalServers   = 32
	slowFactor      = 5 // latency x5 ...
	slowServers     = 8 // ... and a quarter of the servers
	transientShare  = 0.005
	downCallLatency = time.Millisecond
)

// downstream simulates the warehouse service orders are shipped to.
// It rejects orders with a non-positive amount (HTTP 422, permanent), and its
// client panics on a currency it has no rate for. ok is called for every
// order it accepted, before the call returns.
type downstream struct {
	phase    func(time.Time) Phase
	now      func() time.Time
	inFlight atomic.Int64
	ok       func(m pipeline.Message[orders.Order])
	// retryAfter is the Retry-After of the 503s the downstream answers
	// while it is down, as a service in maintenance does.
	retryAfter time.Duration

	mu  sync.Mutex
	rnd *rand.Rand
}

var rates = map[string]*float64{"EUR": ptr(1.0), "USD": ptr(0.92), "GBP": ptr(1.17)}

func ptr[T any](v T) *T { return &v }

func (d *downstream) float() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rnd.Float64()
}

// ship is the call the guards wrap.
func (d *downstream) ship(ctx context.Context, m pipeline.Message[orders.Order]) error {
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	phase := d.phase(d.now())
	if phase == PhaseDown {
		if err := deadline.Sleep(ctx, downCallLatency); err != nil {
			return err
		}
		return &handlers.HTTPError{Status: http.StatusServiceUnavailable, Hint: d.retryAfter}
	}
	latency, servers := baseLatency, int64(normalServers)
	if phase == PhaseSlow {
		latency, servers = slowFactor*baseLatency, slowServers
	}
	if n > servers {
		latency = latency * time.Duration(n) / time.Duration(servers)
	}
	r := d.float()
	latency = time.Duration(float64(latency) * (0.8 + 0.4*r))
	if err := deadline.Sleep(ctx, latency); err != nil {
		return err
	}
	if r < transientShare {
		return &handlers.HTTPError{Status: http.StatusServiceUnavailable}
	}
	o := m.Value()
	if o.Amount <= 0 {
		return fmt.Errorf("order %s: amount %.2f: %w", o.ID, o.Amount, &handlers.HTTPError{Status: http.StatusUnprocessableEntity})
	}
	// The warehouse client's bug: no rate for the currency, a nil
	// pointer, a panic. The guards recover it and the order is
	// dead-lettered with class panic.
	_ = o.Amount * *rates[o.Currency]
	d.ok(m)
	return nil
}
