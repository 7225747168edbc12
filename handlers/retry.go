package handlers

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/deadline"
	"github.com/sluice-go/sluice/pipeline"
)

// RetryPolicy configures retries of transient errors. Zero fields take their
// defaults.
type RetryPolicy struct {
	// MaxAttempts is the most calls of the sink per record, the first
	// included. Default 5. More attempts ride out longer blips but hold the
	// record's key lane longer before it is dead-lettered. Attempts that
	// fail during an outage of the sink do not count (see the package
	// documentation, Outages).
	MaxAttempts int
	// BaseDelay is the backoff ceiling after the first failure; it doubles
	// with every further failure up to MaxDelay. The actual wait is drawn
	// uniformly from [0, ceiling] ("full jitter"), which spreads retries of
	// many records apart. Default 100ms.
	BaseDelay time.Duration
	// MaxDelay caps the backoff ceiling. Default 10s. A Retry-After hint
	// from the downstream is honoured even if it is longer, but never past
	// the record's deadline.
	MaxDelay time.Duration
	// Budget bounds the extra load retries put on the sink.
	Budget RetryBudget
}

// RetryBudget is a token bucket shared by all records of one sink, as in
// Finagle's retry budgets and gRPC's retry throttling: every record that
// enters the chain deposits Ratio tokens, the bucket also refills at
// PerSecond tokens a second, it holds at most Burst tokens, and every retry
// takes one token. When it is empty a failed record is given up with class
// budget instead of retried. Under 100% failure over a period T with N
// records, retries are therefore at most Burst + Ratio*N + PerSecond*T: a
// failing downstream sees about Ratio extra load plus a small floor, never
// MaxAttempts times the load. Zero fields take their defaults.
type RetryBudget struct {
	// Ratio is the share of records that may be retried. Default 0.2.
	Ratio float64
	// PerSecond is the floor of retries per second, so that a sink with
	// little traffic can still retry. Default 10.
	PerSecond float64
	// Burst is the most tokens the bucket holds, and holds at the start.
	// Default 10 * PerSecond.
	Burst float64
	// Unlimited disables the budget: only MaxAttempts and the deadline bound
	// retries.
	Unlimited bool
}

// Retry defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
	DefaultBudgetRatio = 0.2
	DefaultBudgetFloor = 10.0
)

type retrier struct {
	name     string
	clock    sluice.Clock
	classify Classifier
	hooks    *hooks
	min      time.Duration
	enabled  bool // false: one attempt, transient errors give up as pipeline.ClassError
	max      int
	base     time.Duration
	cap      time.Duration
	budget   *retryBudget // nil: unlimited
	health   health       // the sink's breaker, if the chain has one
	// within is Guard's Budget, applied here so that the deadline it
	// sets costs no clock read of its own; 0: none. passBudget: a timeout
	// layer follows, and the deadline goes down in the attempt instead of
	// a context of its own.
	within     time.Duration
	passBudget bool

	mu  sync.Mutex
	rnd *rand.Rand
}

// health tells an outage of the sink from a record that keeps failing; the
// breaker implements it.
type health interface {
	// mark returns a token of the sink's state now: the latest call
	// started.
	mark() uint64
	// open reports whether the breaker is not closed.
	open() bool
	// answeredSince reports whether a call started after mark was
	// answered. Calls in flight when the sink went down do not count,
	// however late they finish.
	answeredSince(mark uint64) bool
	// failingCalls is how many calls failed since the latest answer.
	failingCalls() int64
}

// newRetrier validates p; a nil p means no retries. Without retries the
// backoff still has its defaults, for waits during an outage.
func newRetrier(c *cfg, p *RetryPolicy) (*retrier, error) {
	r := &retrier{
		name: c.name, clock: c.clock, classify: c.classifier, hooks: &c.hooks, min: c.minBudget,
		max: 1, base: DefaultBaseDelay, cap: DefaultMaxDelay, rnd: c.rand(1),
	}
	if p == nil {
		return r, nil
	}
	q := *p
	const opt = "Retry"
	switch {
	case q.MaxAttempts < 0:
		return nil, configErr(opt, "MaxAttempts", q.MaxAttempts, "must not be negative")
	case q.BaseDelay < 0:
		return nil, configErr(opt, "BaseDelay", q.BaseDelay, "must not be negative")
	case q.MaxDelay < 0:
		return nil, configErr(opt, "MaxDelay", q.MaxDelay, "must not be negative")
	case q.Budget.Ratio < 0:
		return nil, configErr(opt, "Budget.Ratio", q.Budget.Ratio, "must not be negative")
	case q.Budget.PerSecond < 0:
		return nil, configErr(opt, "Budget.PerSecond", q.Budget.PerSecond, "must not be negative")
	case q.Budget.Burst < 0:
		return nil, configErr(opt, "Budget.Burst", q.Budget.Burst, "must not be negative")
	}
	if q.MaxAttempts == 0 {
		q.MaxAttempts = DefaultMaxAttempts
	}
	if q.BaseDelay == 0 {
		q.BaseDelay = DefaultBaseDelay
	}
	if q.MaxDelay == 0 {
		q.MaxDelay = max(DefaultMaxDelay, q.BaseDelay)
	}
	if q.MaxDelay < q.BaseDelay {
		return nil, configErr(opt, "MaxDelay", q.MaxDelay, "must not be below BaseDelay "+q.BaseDelay.String())
	}
	r.enabled, r.max, r.base, r.cap = true, q.MaxAttempts, q.BaseDelay, q.MaxDelay
	if !q.Budget.Unlimited {
		r.budget = newRetryBudget(q.Budget, c.clock.Now())
	}
	return r, nil
}

// ceiling is the backoff ceiling after the n-th failure (n >= 1):
// min(cap, base * 2^(n-1)).
func (r *retrier) ceiling(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n-1 >= 62 || r.base > r.cap>>(n-1) {
		return r.cap
	}
	return r.base << (n - 1)
}

// backoff draws the wait after the n-th failure uniformly from
// [0, ceiling(n)].
func (r *retrier) backoff(n int) time.Duration {
	c := int64(r.ceiling(n))
	r.mu.Lock()
	d := r.rnd.Int64N(c + 1)
	r.mu.Unlock()
	return time.Duration(d)
}

// retry is the retry layer around next, the layers below it. needNow: a
// layer below uses the time, so it is read at the start of every attempt
// and passed down.
//
// A record's life in it is a loop over attempts: check that its deadline
// leaves room for one, call the layers below, classify the failure (give up
// if it is final), back off (give up if no further attempt is allowed),
// again.
func retry[M any](r *retrier, next step[M], needNow bool) Guarded[M] {
	return func(ctx context.Context, m M) error {
		var rec record
		if c := rec.begin(r, ctx, needNow); c != nil {
			defer c.Cancel()
		}
		for {
			if !rec.room(0) {
				return rec.give(pipeline.ClassDeadline)
			}
			rec.at.now = rec.now
			end, err := next(rec.ctx, m, rec.at)
			if err == nil {
				r.report(OutcomeOK, rec.t.attempts+1, rec.start)
				return nil
			}
			rec.now = orNow(r.clock, end)
			v, final := rec.classify(err)
			if final != nil {
				return final
			}
			if final := rec.backOff(v, err); final != nil {
				return final
			}
		}
	}
}

// record is what the retry layer knows of the record it is retrying.
type record struct {
	r   *retrier
	ctx context.Context
	// dl is the record's deadline for this sink, if hasDeadline: ctx's, or
	// the Budget option's if that is earlier.
	dl          time.Time
	hasDeadline bool
	at          attempt // passed down with every attempt
	start       time.Time
	now         time.Time // the time of the latest event: attempt start or end, wake-up
	t           tally
}

// begin starts a record: it deposits the record's share in the retry
// budget, reads the clock if anything needs the time (on a virtual machine
// a read can cost more than the rest of this layer) and applies the Budget
// option's deadline. The context it returns, if not nil, carries that
// deadline and must be cancelled when the record is done.
func (rec *record) begin(r *retrier, ctx context.Context, needNow bool) (budget *deadline.Ctx) {
	if r.budget != nil {
		r.budget.deposit()
	}
	rec.r, rec.ctx = r, ctx
	rec.dl, rec.hasDeadline = ctx.Deadline()
	if needNow || rec.hasDeadline || r.within > 0 || len(r.hooks.outcome) > 0 {
		rec.start = r.clock.Now()
		rec.now = rec.start
	}
	if r.within > 0 {
		if b := rec.now.Add(r.within); !rec.hasDeadline || b.Before(rec.dl) {
			rec.dl, rec.hasDeadline = b, true
			if r.passBudget {
				// The timeout layer puts it in the attempt's context.
				rec.at.dl = b
			} else if budget = deadline.New(ctx, b); budget != nil { // no timer until someone waits
				rec.ctx = budget
			}
		}
	}
	if r.health != nil {
		rec.t.since = r.health.mark()
		rec.t.prev = rec.t.since
	}
	return budget
}

// room reports whether the deadline leaves the minimum budget after waiting
// d from now.
func (rec *record) room(d time.Duration) bool {
	return !rec.hasDeadline || !rec.now.Add(rec.r.min+d).After(rec.dl)
}

// classify counts a failed attempt and reports the error that ends the
// record, if its failure is final: a cancellation (returned as is), too
// little time to have started, the deadline passed, or a permanent error.
// Otherwise it returns the classifier's verdict on err.
func (rec *record) classify(err error) (Verdict, error) {
	r, t := rec.r, &rec.t
	if errors.Is(rec.ctx.Err(), context.Canceled) {
		r.report(OutcomeAbandoned, t.attempts, rec.start)
		return Verdict{}, err
	}
	if errors.Is(err, errNoBudget) {
		return Verdict{}, rec.give(pipeline.ClassDeadline)
	}
	t.failed(err, rec.now)
	if r.health != nil {
		if r.health.answeredSince(t.prev) {
			t.run = 1
		} else {
			t.run++
		}
	}
	if rec.ctx.Err() != nil || rec.hasDeadline && !rec.now.Before(rec.dl) {
		return Verdict{}, rec.give(pipeline.ClassDeadline)
	}
	v := verdict(r.classify, err)
	if v.Permanent {
		return v, rec.give(finalClass(err))
	}
	return v, nil
}

// backOff waits before the next attempt after a transient failure err with
// verdict v, or reports the error that ends the record: attempts exhausted
// (unless the sink is in an outage), no time for the wait and another
// attempt, the retry budget empty, or the context done while waiting.
func (rec *record) backOff(v Verdict, err error) error {
	r, t := rec.r, &rec.t
	exhausted := t.attempts-t.spent >= r.max
	if exhausted && !r.inOutage(t) {
		if !r.enabled {
			return rec.give(pipeline.ClassError)
		}
		return rec.give(pipeline.ClassExhausted)
	}
	delay := v.RetryAfter
	if delay <= 0 {
		delay = r.backoff(t.attempts)
	}
	if !rec.room(delay) {
		return rec.give(pipeline.ClassDeadline)
	}
	if !exhausted && r.budget != nil && !r.budget.withdraw(rec.now) && !r.inOutage(t) {
		return rec.give(pipeline.ClassBudget)
	}
	for _, h := range r.hooks.retry {
		h.OnRetry(r.name, t.attempts, delay, err)
	}
	if r.health != nil {
		t.prev = r.health.mark() // the next backoff's start
	}
	werr := sleep(rec.ctx, r.clock, delay)
	rec.now = r.clock.Now()
	switch {
	case werr == nil:
		return nil
	case errors.Is(werr, context.Canceled):
		r.report(OutcomeAbandoned, t.attempts, rec.start)
		return werr
	}
	return rec.give(pipeline.ClassDeadline)
}

// give builds the final error of the record with class and reports the
// outcome.
func (rec *record) give(class string) error {
	return rec.r.give(class, &rec.t, rec.start, rec.now)
}

// tally is what the retry layer remembers of one record's failed attempts.
type tally struct {
	attempts    int
	spent       int    // attempts written off to an outage
	since       uint64 // health mark at the first attempt or the last write-off
	prev        uint64 // health mark at the start of the last backoff
	run         int    // own failures in a row with no call answered between
	first, last time.Time
	err         error
}

// inOutage reports whether the sink looks down rather than the record bad.
// It does if the breaker is not closed, or if no call was answered during
// the record's last backoff and either none has been answered since its
// first failure (or last write-off), or calls other than its own have
// failed since the latest answer. So answers from before an outage do not
// condemn a record whose retries met the outage, a record that fails while
// others succeed is given up, and a record alone on its lane cannot be told
// from an outage (its deadline ends it). If the sink looks down, the
// record's failures are the outage's: they are written off, so that the
// record gets a fresh allowance of attempts, and it keeps waiting.
func (r *retrier) inOutage(t *tally) bool {
	h := r.health
	if h == nil {
		return false
	}
	down := h.open() || !h.answeredSince(t.prev) &&
		(!h.answeredSince(t.since) || h.failingCalls() > int64(t.run))
	if !down {
		return false
	}
	t.spent, t.since = t.attempts, h.mark()
	return true
}

func (t *tally) failed(err error, now time.Time) {
	t.attempts++
	if t.attempts == 1 {
		t.first = now
	}
	t.last, t.err = now, err
}

// give builds the final error and reports the outcome.
func (r *retrier) give(class string, t *tally, start, now time.Time) error {
	r.report(class, t.attempts, start)
	cause := t.err
	if fe, ok := cause.(*pipeline.FailureError); ok && fe.Class == class {
		cause = fe.Err // an inner guard's verdict (a recovered panic): say it once
	}
	e := &pipeline.FailureError{Class: class, Attempts: t.attempts, First: t.first, Last: t.last, Err: cause}
	if t.attempts == 0 {
		e.First, e.Last = now, now
	}
	if e.Err == nil {
		e.Err = pipeline.ErrDeadline
	}
	return e
}

func (r *retrier) report(outcome string, attempts int, start time.Time) {
	if len(r.hooks.outcome) == 0 {
		return
	}
	elapsed := r.clock.Now().Sub(start)
	for _, h := range r.hooks.outcome {
		h.OnOutcome(r.name, outcome, attempts, elapsed)
	}
}

// retryBudget is the token bucket of RetryBudget.
type retryBudget struct {
	ratio, perSecond, burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
	// full is set while tokens == burst, so that deposits into a full
	// bucket (the healthy case: nothing is being retried) only read it,
	// without taking the lock that every record would otherwise share.
	full atomic.Bool
}

func newRetryBudget(p RetryBudget, now time.Time) *retryBudget {
	if p.Ratio == 0 {
		p.Ratio = DefaultBudgetRatio
	}
	if p.PerSecond == 0 {
		p.PerSecond = DefaultBudgetFloor
	}
	if p.Burst == 0 {
		p.Burst = max(10*p.PerSecond, 1)
	}
	b := &retryBudget{ratio: p.Ratio, perSecond: p.PerSecond, burst: p.Burst, tokens: p.Burst, last: now}
	b.full.Store(true)
	return b
}

// refill adds the floor's tokens for the time since the last call; b.mu is
// held.
func (b *retryBudget) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+b.perSecond*now.Sub(b.last).Seconds())
		b.last = now
	}
}

// deposit adds a record's share. The floor's refill waits for the next
// withdrawal, so a deposit needs no clock read.
func (b *retryBudget) deposit() {
	if b.full.Load() {
		return
	}
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+b.ratio)
	b.full.Store(b.tokens >= b.burst)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	b.full.Store(false)
	return true
}
