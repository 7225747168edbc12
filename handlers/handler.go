package handlers

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
)

// Guarded is a sink wrapped in its guards, as Guard returns it. A
// pipeline sink of type func(context.Context, pipeline.Message[T]) error
// accepts a Guarded[pipeline.Message[T]] as is:
//
//	store, err := handlers.Guard(save, handlers.Name("store"), handlers.Retry(handlers.RetryPolicy{}))
//	...
//	pipeline.Sink(orders, "store", store)
//
// It returns nil, a *pipeline.FailureError (the record was given up, with
// its class), or the record's context error if the context was cancelled.
type Guarded[M any] func(ctx context.Context, m M) error

// Guard wraps sink in the guards the options configure, in the fixed order
// given in the package documentation, and returns the guarded sink. Call it
// once per sink and share the result: the breaker, the retry budget and the
// rate limiter are per Guard call. Panic recovery and the retry layer
// (which turns give-ups into *pipeline.FailureError) are always present;
// every other guard only when its option is given. Invalid options are
// reported as a *sluice.ConfigError naming the option and field.
func Guard[M any](sink func(ctx context.Context, m M) error, opts ...Opt) (Guarded[M], error) {
	c, err := newCfg(opts)
	if err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, &sluice.ConfigError{Package: "handlers", Option: "Guard", Field: "sink", Reason: "must not be nil"}
	}
	r, err := newRetrier(c, c.retry)
	if err != nil {
		return nil, err
	}
	r.within, r.passBudget = c.budget, c.timeout > 0
	// The layers below the retry layer, outer to inner. needNow: a layer
	// uses the time at the start of an attempt, so the retry layer reads it
	// once and passes it down.
	var layers []layer[M]
	needNow := len(c.hooks.attempt) > 0
	if c.breaker != nil {
		b, err := newBreaker(c, *c.breaker)
		if err != nil {
			return nil, err
		}
		r.health = b
		layers = append(layers, breakerLayer[M](b))
	}
	if c.rate != nil {
		rl, err := newRateLimiter(c, *c.rate)
		if err != nil {
			return nil, err
		}
		if rl.total != rate.Inf || len(c.hooks.rate) > 0 {
			layers = append(layers, rateLayer[M](rl))
			needNow = needNow || rl.total != rate.Inf
		}
	}
	if c.limiter != nil {
		layers = append(layers, limitLayer[M](c, c.limiter))
		needNow = true
	}
	if c.timeout > 0 {
		layers = append(layers, timeoutLayer[M](c, c.timeout))
		needNow = true
	}
	layers = append(layers, recoverLayer[M](c))
	if c.chaos != nil {
		ch, err := newChaos(c, *c.chaos)
		if err != nil {
			return nil, err
		}
		layers = append(layers, chaosLayer[M](ch))
	}
	s := sinkStep(sink)
	for i := len(layers) - 1; i >= 0; i-- {
		s = layers[i](s)
	}
	return retry(r, s, needNow), nil
}

// Opt configures Guard.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type cfg struct {
	name       string
	logger     *slog.Logger
	clock      sluice.Clock
	classifier Classifier
	rawHooks   []Hook
	hooks      hooks
	seed       uint64
	seeded     bool
	minBudget  time.Duration

	budget  time.Duration
	retry   *RetryPolicy
	breaker *BreakerPolicy
	rate    *ratePolicy
	limiter backpressure.Limiter
	timeout time.Duration
	chaos   *ChaosPolicy

	errs []error
}

// Defaults of the shared options.
const (
	// DefaultName is the sink name used when Name is not given.
	DefaultName = "sink"
	// DefaultMinBudget is the minimum remaining budget for an attempt.
	DefaultMinBudget = 10 * time.Millisecond
)

func newCfg(opts []Opt) (*cfg, error) {
	c := &cfg{name: DefaultName, minBudget: DefaultMinBudget}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.clock == nil {
		c.clock = sluice.SystemClock{}
	}
	if c.classifier == nil {
		c.classifier = DefaultClassifier
	}
	if !c.seeded {
		c.seed = rand.Uint64()
	}
	h, err := newHooks(c.rawHooks)
	if err != nil {
		return nil, err
	}
	c.hooks = h
	return c, nil
}

// rand returns a new random source for one guard, derived from the seed.
func (c *cfg) rand(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(c.seed, stream))
}

func (c *cfg) fail(err error) { c.errs = append(c.errs, err) }

// configErr is the *sluice.ConfigError of option, field (empty for an
// option of one argument) and the refused value (nil: not worth showing).
func configErr(option, field string, value any, reason string) *sluice.ConfigError {
	return &sluice.ConfigError{Package: "handlers", Option: option, Field: field, Value: value, Reason: reason}
}

// Name names the sink in hooks, logs and the breaker. Default DefaultName
// ("sink"); give every guarded sink its own name.
func Name(name string) Opt {
	return optFunc(func(c *cfg) {
		if name == "" {
			c.fail(configErr("Name", "", nil, "must not be empty"))
			return
		}
		c.name = name
	})
}

// Logger sets the logger for breaker state changes (info; warn when it
// opens) and recovered panics (error, with the stack). Default (nil):
// slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *cfg) { c.logger = l }) }

// Clock replaces the time source of the guards other than the breaker:
// backoffs, rate-limit waits, budgets, the limiter's latencies and chaos
// latency read it and wait on its timers. Default: sluice.SystemClock.
// Meant for tests.
func Clock(clk sluice.Clock) Opt { return optFunc(func(c *cfg) { c.clock = clk }) }

// Classify replaces DefaultClassifier. Errors marked with
// pipeline.Permanent and errors implementing pipeline.Failure stay
// permanent whatever it says.
func Classify(f Classifier) Opt { return optFunc(func(c *cfg) { c.classifier = f }) }

// Hooks adds observers (see Hook). Each must implement at least one Hook
// interface; Guard refuses a value that implements none.
func Hooks(hs ...Hook) Opt {
	return optFunc(func(c *cfg) { c.rawHooks = append(c.rawHooks, hs...) })
}

// Seed seeds the random sources of backoff jitter and chaos, for
// reproducible tests and demos. Default: a random seed.
func Seed(seed uint64) Opt {
	return optFunc(func(c *cfg) { c.seed, c.seeded = seed, true })
}

// MinBudget sets the minimum remaining budget: no attempt starts, and no
// wait (backoff, breaker, rate limit, limiter) is begun, that would leave
// less than min before the record's deadline; the record is given up with
// class deadline instead. Default DefaultMinBudget (10ms). Larger values give
// up earlier rather than start calls that will likely time out; zero allows
// an attempt with any time left.
func MinBudget(min time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if min < 0 {
			c.fail(configErr("MinBudget", "", min, "must not be negative"))
			return
		}
		c.minBudget = min
	})
}

// Budget caps the record's deadline for this sink at d after the chain is
// entered, for a sink that must not take the record's whole budget (a side
// branch, a cache write). d must be positive. Default: no cap, the record's
// own deadline.
func Budget(d time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if d <= 0 {
			c.fail(configErr("Budget", "", d, "must be positive"))
			return
		}
		c.budget = d
	})
}

// Retry enables retries of transient errors (see RetryPolicy). Default: no
// retries; a transient error is given up at once with class error (which a
// pipeline.Sink then retries with its own backoff).
func Retry(p RetryPolicy) Opt { return optFunc(func(c *cfg) { c.retry = &p }) }

// Breaker puts a circuit breaker in front of the sink (see BreakerPolicy).
// Default: none.
//
// While the breaker is open or its half-open probes are taken, an attempt
// waits (it does not fail, spends no attempt and is never dead-lettered)
// until a probe may go through, or its context is done; a record whose
// deadline would pass before the breaker half-opens is given up with class
// deadline at once. The breaker's timing follows the wall clock, as
// gobreaker does.
func Breaker(p BreakerPolicy) Opt { return optFunc(func(c *cfg) { c.breaker = &p }) }

// RateLimit limits the attempts on the sink, retries included, to r per
// second with bursts of burst; attempts wait for their turn, never fail for
// it. An attempt whose wait would leave less than the minimum budget before
// its deadline is not started (class deadline) and gives its reservation
// back. Default: no rate limit.
func RateLimit(r rate.Limit, burst int) Opt {
	return optFunc(func(c *cfg) { c.setRate(ratePolicy{option: "RateLimit", limit: r, burst: burst}) })
}

// GroupRateLimit limits the attempts of a whole consumer group on the
// sink to total per second: this member allows total / members() per second,
// with bursts of burst / members() (at least 1). members is called on every
// attempt and must be cheap; a result below 1 counts as 1. The application
// wires it to the group's current member count (for example an atomic it
// updates from the consumer's rebalance callbacks). Default: no rate limit.
func GroupRateLimit(total rate.Limit, burst int, members func() int) Opt {
	return optFunc(func(c *cfg) {
		if members == nil {
			c.fail(configErr("GroupRateLimit", "members", nil, "must not be nil"))
			return
		}
		c.setRate(ratePolicy{option: "GroupRateLimit", limit: total, burst: burst, members: members})
	})
}

func (c *cfg) setRate(p ratePolicy) {
	if c.rate != nil {
		c.fail(configErr(p.option, "", nil, "conflicts with "+c.rate.option+": give one rate limit"))
		return
	}
	c.rate = &p
}

// Limiter bounds the sink's concurrent calls with l, typically an adaptive
// limiter from package backpressure shared by nothing else. Every attempt
// acquires a slot; the slot is released with the sink's latency alone and
// the outcome: Success, Overload for timeouts and errors the classifier
// calls overload, Ignore for other errors. A slot acquired too late, with
// less than the minimum budget left, is released unused. Default: none.
func Limiter(l backpressure.Limiter) Opt {
	return optFunc(func(c *cfg) {
		if l == nil {
			c.fail(configErr("Limiter", "", nil, "must not be nil"))
			return
		}
		c.limiter = l
	})
}

// Timeout bounds each attempt to d, or to the time left before the record's
// deadline if that is shorter. A timed-out attempt is a transient, overload
// error. Default: no per-attempt timeout (the record's deadline still
// applies).
func Timeout(d time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if d <= 0 {
			c.fail(configErr("Timeout", "", d, "must be positive"))
			return
		}
		c.timeout = d
	})
}

// Chaos injects failures and latency in front of the sink (see
// ChaosPolicy), for tests and demos. Default: none.
func Chaos(p ChaosPolicy) Opt { return optFunc(func(c *cfg) { c.chaos = &p }) }
