package backpressure

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluice-go/sluice"
)

// ErrUnknownFlow is returned by Flow for a name that was not configured with
// Partitions.
var ErrUnknownFlow = errors.New("unknown flow")

func configErr(option, field string, value any, reason string) *sluice.ConfigError {
	return &sluice.ConfigError{Package: "backpressure", Option: option, Field: field, Value: value, Reason: reason}
}

// Opt configures any limiter of this package (Fixed and Adaptive).
type Opt interface {
	AdaptiveOpt
	commonOpt()
}

// AdaptiveOpt configures an Adaptive limiter. Every Opt is also an
// AdaptiveOpt.
type AdaptiveOpt interface {
	apply(*cfg)
	adaptiveOpt()
}

type commonOpt func(*cfg)

func (o commonOpt) apply(c *cfg) { o(c) }
func (commonOpt) commonOpt()     {}
func (commonOpt) adaptiveOpt()   {}

type adaptiveOpt func(*cfg)

func (o adaptiveOpt) apply(c *cfg) { o(c) }
func (adaptiveOpt) adaptiveOpt()   {}

type cfg struct {
	clock sluice.Clock
	hooks []Hook
	hk    hooks // hooks split by interface, once validated
	parts []Partition
	seed  uint64
	// seeded is set by Seed; otherwise the jitter source is random.
	seeded bool

	initial           int
	minLimit          int
	maxLimit          int
	tolerance         float64
	quantile          float64
	windowMin         time.Duration
	windowSamples     int
	probeInterval     time.Duration
	probeJitter       float64
	demandFactor      float64
	overloadThreshold float64
}

func defaultCfg() cfg {
	return cfg{
		clock:             sluice.SystemClock{},
		initial:           20,
		minLimit:          1,
		maxLimit:          1000,
		tolerance:         1.2,
		quantile:          0.5,
		windowMin:         100 * time.Millisecond,
		windowSamples:     100,
		probeInterval:     30 * time.Second,
		probeJitter:       0.5,
		demandFactor:      2,
		overloadThreshold: 0.05,
	}
}

// Clock sets the clock that timestamps windows and schedules probes. The
// limiters only ever call its Now: they start no timers. Default (nil):
// sluice.SystemClock. Tests and simulators pass a virtual clock (such as
// pipelinetest.Clock) so that every rule runs deterministically.
func Clock(c sluice.Clock) Opt { return commonOpt(func(cf *cfg) { cf.clock = c }) }

// Hooks adds observers of the limit, the in-flight count and (Adaptive)
// every decision; each must implement at least one of HookLimit,
// HookInFlight and HookDecision, or the constructor returns a
// *sluice.ConfigError naming Hooks. Default: none.
func Hooks(hs ...Hook) Opt {
	return commonOpt(func(cf *cfg) { cf.hooks = append(cf.hooks, hs...) })
}

// Partitions splits the limit between flows, listed highest priority
// first. Each flow is guaranteed Share of the limit whenever it has work
// waiting; share it does not use may be borrowed by the others. The limiter's
// own methods act as a last, lowest-priority flow holding the share left
// over (possibly none: it then only borrows). Default: no partitions.
func Partitions(p ...Partition) Opt {
	return commonOpt(func(cf *cfg) { cf.parts = append([]Partition(nil), p...) })
}

// Seed seeds the random source of the probe jitter, for reproducible runs.
// Default: a random seed.
func Seed(seed uint64) Opt {
	return commonOpt(func(cf *cfg) { cf.seed, cf.seeded = seed, true })
}

// InitialLimit is the limit before the first decision. Default 20. Too high
// a start only costs the first few windows: the start-up probe halves the
// concurrency until latency stops responding to it.
func InitialLimit(n int) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.initial = n }) }

// MinLimit is the lowest limit the adaptive limiter sets. Default 1.
func MinLimit(n int) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.minLimit = n }) }

// MaxLimit is the highest limit the adaptive limiter sets. Default 1000.
func MaxLimit(n int) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.maxLimit = n }) }

// Tolerance is how much the window's latency may exceed the no-load
// latency before the limit is cut, as a ratio (> 1). Default 1.2: the
// limiter holds while the latency is between 1.1x and 1.2x the no-load
// latency, grows below, cuts above. Higher values buy throughput on noisy
// downstreams at the cost of more queueing in the downstream.
func Tolerance(t float64) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.tolerance = t }) }

// Quantile is the latency quantile a window is summarised by, in (0, 1).
// Default 0.5: the median moves by the full queueing delay and is the most
// stable estimate from a small window; 0.9 reacts to tail latency but needs
// larger windows.
func Quantile(q float64) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.quantile = q }) }

// Window sets when a decision window closes: after at least minDuration and
// at least minSamples samples from calls that started inside the window.
// Defaults 100ms and 100. Longer windows decide on better estimates but react
// later; the targets of the limiter are stated in windows.
func Window(minDuration time.Duration, minSamples int) AdaptiveOpt {
	return adaptiveOpt(func(cf *cfg) { cf.windowMin, cf.windowSamples = minDuration, minSamples })
}

// Probe sets how often the no-load latency is re-measured: every interval
// plus a random delay of up to jitter*interval (jitter in [0, 1]), so that
// many limiters in front of one downstream do not probe together. A probe
// halves the concurrency for one or a few windows. Defaults 30s and 0.5.
func Probe(interval time.Duration, jitter float64) AdaptiveOpt {
	return adaptiveOpt(func(cf *cfg) { cf.probeInterval, cf.probeJitter = interval, jitter })
}

// DemandFactor caps the limit at this multiple of the highest in-flight
// count seen in the last window, so the limit cannot grow without bound
// while the caller, not the downstream, is the bottleneck. In [1, 5].
// Default 2: room to absorb a burst twice the recent demand at once, more
// only after a window.
func DemandFactor(f float64) AdaptiveOpt { return adaptiveOpt(func(cf *cfg) { cf.demandFactor = f }) }

// OverloadThreshold is the fraction of Overload signals in a window above
// which the limit is cut by that fraction (at most halved). In [0, 1).
// Default 0.05, so a downstream with a trickle of 503s is not pinned to the
// minimum.
func OverloadThreshold(f float64) AdaptiveOpt {
	return adaptiveOpt(func(cf *cfg) { cf.overloadThreshold = f })
}

func (c *cfg) validateCommon() error {
	if c.clock == nil {
		c.clock = sluice.SystemClock{}
	}
	hk, err := newHooks(c.hooks)
	if err != nil {
		return err
	}
	c.hk = hk
	seen := make(map[string]bool, len(c.parts))
	sum := 0.0
	for _, p := range c.parts {
		switch {
		case p.Name == "":
			return configErr("Partitions", "Name", p, "each partition needs a name")
		case seen[p.Name]:
			return configErr("Partitions", "Name", p.Name, "partition names must be unique")
		case !(p.Share > 0 && p.Share <= 1):
			return configErr("Partitions", "Share", p.Share, fmt.Sprintf("share of %q must be in (0, 1]", p.Name))
		}
		seen[p.Name] = true
		sum += p.Share
	}
	if sum > 1+1e-9 {
		return configErr("Partitions", "Share", sum, "shares must add up to at most 1")
	}
	return nil
}

func (c *cfg) validateAdaptive() error {
	if err := c.validateCommon(); err != nil {
		return err
	}
	checks := []struct {
		ok     bool
		option string
		field  string
		value  any
		reason string
	}{
		{c.minLimit >= 1, "MinLimit", "", c.minLimit, "must be at least 1"},
		{c.maxLimit >= c.minLimit, "MaxLimit", "", c.maxLimit, fmt.Sprintf("must be at least MinLimit (%d)", c.minLimit)},
		{c.initial >= c.minLimit && c.initial <= c.maxLimit, "InitialLimit", "", c.initial, fmt.Sprintf("must be within [MinLimit, MaxLimit] = [%d, %d]", c.minLimit, c.maxLimit)},
		{c.tolerance > 1 && !math.IsInf(c.tolerance, 0), "Tolerance", "", c.tolerance, "must be a finite ratio greater than 1"},
		{c.quantile > 0 && c.quantile < 1, "Quantile", "", c.quantile, "must be in (0, 1)"},
		{c.windowMin >= 0, "Window", "minDuration", c.windowMin, "must not be negative"},
		{c.windowSamples >= 10, "Window", "minSamples", c.windowSamples, "must be at least 10: decisions are never taken on a handful of samples"},
		{c.probeInterval > 0, "Probe", "interval", c.probeInterval, "must be positive"},
		{c.probeJitter >= 0 && c.probeJitter <= 1, "Probe", "jitter", c.probeJitter, "must be in [0, 1]"},
		{c.demandFactor >= 1 && c.demandFactor <= 5, "DemandFactor", "", c.demandFactor, "must be in [1, 5]"},
		{c.overloadThreshold >= 0 && c.overloadThreshold < 1, "OverloadThreshold", "", c.overloadThreshold, "must be in [0, 1)"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return configErr(ch.option, ch.field, ch.value, ch.reason)
		}
	}
	return nil
}
