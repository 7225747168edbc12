package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/backpressure"
)

// Handler handles one message. A pipeline sink of type
// func(context.Context, pipeline.Message[T]) error accepts a
// Handler[pipeline.Message[T]] as is.
type Handler[M any] func(ctx context.Context, m M) error

// Middleware wraps a handler in a guard.
type Middleware[M any] func(Handler[M]) Handler[M]

// Chain wraps h in mws, the first outermost: Chain(h, a, b, c) is
// a(b(c(h))).
func Chain[M any](h Handler[M], mws ...Middleware[M]) Handler[M] {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Guard wraps sink in the guards the options configure, in the fixed order
// given in the package documentation, and returns the guarded handler. Call
// it once per sink and share the result: the breaker, the retry budget and
// the rate limiter are per Guard call. Panic recovery and the retry layer
// (which turns give-ups into *FailureError) are always present; every other
// guard only when its option is given. Invalid options are reported as a
// *ConfigError naming the option and field.
func Guard[M any](sink Handler[M], opts ...Opt) (Handler[M], error) {
	c, err := newCfg(opts)
	if err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, &ConfigError{Option: "Guard", Field: "sink", Value: "nil", Reason: "must not be nil"}
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
		layers = append(layers, rateLayer[M](rl))
		needNow = true
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

// Opt configures Guard and the standalone guards. Each standalone guard reads
// only the options that concern it (name, clock, logger, classifier, hooks,
// seed, minimum budget) and ignores the rest.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type cfg struct {
	name       string
	logger     *slog.Logger
	clock      Clock
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
	// DefaultName is the sink name used when WithName is not given.
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
		c.clock = systemClock{}
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

// ErrConfig matches every *ConfigError.
var ErrConfig = errors.New("handlers: invalid configuration")

// ConfigError reports an invalid option.
type ConfigError struct {
	// Option is the option or constructor, such as "WithRetry".
	Option string
	// Field is the offending field or argument.
	Field string
	// Value is the offending value, formatted.
	Value string
	// Reason says what is wrong.
	Reason string
}

// Error names the option, field and value.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("handlers: %s: %s = %s: %s", e.Option, e.Field, e.Value, e.Reason)
}

// Is ties the error to ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func fieldErr(option, field string, value any, reason string) *ConfigError {
	return &ConfigError{Option: option, Field: field, Value: fmt.Sprint(value), Reason: reason}
}

// WithName names the sink in hooks, logs and the breaker. Default
// DefaultName ("sink"); give every guarded sink its own name.
func WithName(name string) Opt {
	return optFunc(func(c *cfg) {
		if name == "" {
			c.fail(fieldErr("WithName", "name", `""`, "must not be empty"))
			return
		}
		c.name = name
	})
}

// WithLogger sets the logger for breaker state changes (info; warn when it
// opens) and recovered panics (error, with the stack). Default (nil):
// slog.Default().
func WithLogger(l *slog.Logger) Opt { return optFunc(func(c *cfg) { c.logger = l }) }

// WithClock replaces the time source of the guards other than the breaker.
// Default: the system clock. Meant for tests.
func WithClock(clk Clock) Opt { return optFunc(func(c *cfg) { c.clock = clk }) }

// WithClassifier replaces DefaultClassifier. Errors marked with Permanent and
// errors implementing the pipeline's Failure protocol stay permanent
// whatever it says.
func WithClassifier(f Classifier) Opt { return optFunc(func(c *cfg) { c.classifier = f }) }

// WithHooks adds observers (see Hook). Each must implement at least one Hook
// interface.
func WithHooks(hs ...Hook) Opt {
	return optFunc(func(c *cfg) { c.rawHooks = append(c.rawHooks, hs...) })
}

// WithSeed seeds the random sources of backoff jitter and chaos, for
// reproducible tests and demos. Default: a random seed.
func WithSeed(seed uint64) Opt {
	return optFunc(func(c *cfg) { c.seed, c.seeded = seed, true })
}

// WithMinBudget sets the minimum remaining budget: no attempt starts, and no
// wait (backoff, breaker, rate limit, limiter) is begun, that would leave
// less than min before the record's deadline; the record is given up with
// class deadline instead. Default DefaultMinBudget (10ms). Larger values give
// up earlier rather than start calls that will likely time out; zero allows
// an attempt with any time left.
func WithMinBudget(min time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if min < 0 {
			c.fail(fieldErr("WithMinBudget", "min", min, "must not be negative"))
			return
		}
		c.minBudget = min
	})
}

// WithBudget caps the record's deadline for this sink at d after the chain is
// entered (see Budget). Default: no cap, the record's own deadline.
func WithBudget(d time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if d <= 0 {
			c.fail(fieldErr("WithBudget", "d", d, "must be positive"))
			return
		}
		c.budget = d
	})
}

// WithRetry enables retries of transient errors (see RetryPolicy). Default:
// no retries; a transient error is given up at once with class error.
func WithRetry(p RetryPolicy) Opt { return optFunc(func(c *cfg) { c.retry = &p }) }

// WithBreaker puts a circuit breaker in front of the sink (see
// BreakerPolicy). Default: none.
func WithBreaker(p BreakerPolicy) Opt { return optFunc(func(c *cfg) { c.breaker = &p }) }

// WithRateLimit limits the attempts on the sink, retries included, to r per
// second with bursts of burst; attempts wait for their turn, never fail for
// it. Default: no rate limit.
func WithRateLimit(r rate.Limit, burst int) Opt {
	return optFunc(func(c *cfg) { c.setRate(ratePolicy{option: "WithRateLimit", limit: r, burst: burst}) })
}

// WithGroupRateLimit limits the attempts of a whole consumer group on the
// sink to total per second: this member allows total / members() per second,
// with bursts of burst / members() (at least 1). members is called on every
// attempt and must be cheap; a result below 1 counts as 1. The application
// wires it to the group's current member count (for example an atomic it
// updates from the consumer's rebalance callbacks). Default: no rate limit.
func WithGroupRateLimit(total rate.Limit, burst int, members func() int) Opt {
	return optFunc(func(c *cfg) {
		if members == nil {
			c.fail(fieldErr("WithGroupRateLimit", "members", "nil", "must not be nil"))
			return
		}
		c.setRate(ratePolicy{option: "WithGroupRateLimit", limit: total, burst: burst, members: members})
	})
}

func (c *cfg) setRate(p ratePolicy) {
	if c.rate != nil {
		c.fail(fieldErr(p.option, "option", p.option, "conflicts with "+c.rate.option))
		return
	}
	c.rate = &p
}

// WithLimiter bounds the sink's concurrent calls with l, typically an
// adaptive limiter from package backpressure shared by nothing else. Every
// attempt acquires a slot; the slot is released with the sink's latency
// alone and the outcome: Success, Overload for timeouts and errors the
// classifier calls overload, Ignore for other errors. Default: none.
func WithLimiter(l backpressure.Limiter) Opt {
	return optFunc(func(c *cfg) {
		if l == nil {
			c.fail(fieldErr("WithLimiter", "l", "nil", "must not be nil"))
			return
		}
		c.limiter = l
	})
}

// WithTimeout bounds each attempt to d, or to the time left before the
// record's deadline if that is shorter. A timed-out attempt is a transient,
// overload error. Default: no per-attempt timeout (the record's deadline
// still applies).
func WithTimeout(d time.Duration) Opt {
	return optFunc(func(c *cfg) {
		if d <= 0 {
			c.fail(fieldErr("WithTimeout", "d", d, "must be positive"))
			return
		}
		c.timeout = d
	})
}

// WithChaos injects failures and latency in front of the sink (see
// ChaosPolicy), for tests and demos. Default: none.
func WithChaos(p ChaosPolicy) Opt { return optFunc(func(c *cfg) { c.chaos = &p }) }
