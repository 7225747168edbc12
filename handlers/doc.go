// Package handlers guards sinks: Guard wraps a sink function in guards that
// retry transient failures, stop calling a downstream that is down, pace and
// bound the calls, and keep every record within its deadline.
//
// Guard takes a plain func(ctx, m M) error and returns a Guarded[M], the
// same function wrapped in its guards. The package knows nothing of Kafka:
// a pipeline sink of type func(context.Context, pipeline.Message[T]) error
// accepts a Guarded[pipeline.Message[T]] as is, and a record's deadline
// arrives as the deadline of ctx (the pipeline's sink runner sets it from
// pipeline.DeadlineHeader or the consumer's per-record budget). Failures
// speak package pipeline's vocabulary: pipeline.Permanent marks an error
// that retrying cannot help, and a record given up is a
// *pipeline.FailureError with one of the pipeline.Class constants.
//
//	store, err := handlers.Guard(save,
//		handlers.Name("store"),
//		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 5}),
//		handlers.Breaker(handlers.BreakerPolicy{}),
//		handlers.Timeout(2*time.Second))
//
// # Order
//
// Guard assembles the guards its options enable, always in this order,
// outer to inner:
//
//	budget, retry, breaker, rate limit, limiter, timeout, recover, chaos, sink
//
// Each guard:
//
//   - Budget: caps the record's deadline for this sink.
//   - Retry (always present; retries only with the Retry option): retries
//     transient errors with jittered exponential backoff within the
//     deadline and the sink's retry budget, and turns every give-up into a
//     *pipeline.FailureError. No attempt starts with less than the minimum
//     budget (MinBudget) left, and no backoff starts that would overrun the
//     deadline.
//   - Breaker: gobreaker v2. While it is open, calls wait for a half-open
//     probe: they spend no attempt and are never given up because the
//     downstream is down. Stuck records stop the partition's flow, and the
//     consumer pauses fetching by backpressure.
//   - RateLimit, GroupRateLimit: x/time/rate; waits, never rejects, and
//     paces every attempt, retries included.
//   - Limiter: a backpressure.Limiter (adaptive concurrency) sees every
//     attempt and the sink's own latency, never backoff sleeps or waits.
//   - Timeout: bounds each attempt, capped by the time left.
//   - Recover (always present): a panic in the sink becomes a
//     *pipeline.PanicError, a permanent failure of class panic; the stack is
//     logged.
//   - Chaos: injected failures and latency, for tests and demos.
//
// The guards exist only inside Guard: the order above is what makes the
// promises below hold, and it is what makes them cheap.
//
// # Cost
//
// Guard does not stack independent middleware: below the retry layer the
// guards pass the attempt along, so the clock is read once when an attempt
// starts and once when the sink returns, however many guards need the time
// (gobreaker reads the wall clock twice more on its own), and Budget's
// deadline travels with the attempt until the per-attempt timeout, which
// puts it and its own into one context. Through every guard, a call whose
// record deadline is nearer than the per-attempt timeout allocates nothing;
// otherwise it allocates that one context per attempt. The guards shared by every record of
// a sink avoid writing shared memory while the sink is healthy: the retry
// budget is not touched while its bucket is full, and the limiters of
// package backpressure admit and release with one compare-and-swap each
// while nobody waits.
//
// # Errors
//
// An error from the sink is transient unless it is marked with
// pipeline.Permanent, implements pipeline.Failure (panics, decode errors,
// nested chains), or the Classifier (Classify; DefaultClassifier) says
// permanent.
// RetryAfter attaches a downstream's wait hint; Overloaded marks a load
// signal for the limiter; CheckHTTP and ClassifyHTTPStatus classify HTTP
// responses (4xx permanent, 429 and 5xx transient, Retry-After honoured).
//
// A Guarded sink returns nil, a *pipeline.FailureError, or the record's
// context error:
//
//   - *pipeline.FailureError is a pipeline.Failure with one of the
//     pipeline.Class constants: permanent, panic, decode (kept from the
//     sink's error), exhausted (MaxAttempts failed), budget (the retry
//     budget is empty), deadline (no time for another attempt), error (a
//     transient error in a chain without Retry, which a pipeline.Sink then
//     retries with its own backoff). It matches the sentinel of its class
//     (errors.Is(err, pipeline.ErrExhausted)); the pipeline dead-letters
//     the other classes.
//   - If the record's context is cancelled (revoke, shutdown), the chain
//     stops at once and returns the error it has as is: it is neither
//     transient nor permanent, and the record stays unsettled. The record's
//     deadline passing is not a cancellation: it gives class deadline.
//   - The chain never returns a breaker-open error.
//
// # Outages
//
// An outage is not a poison pill. With a breaker in the chain (Guard links
// the two), a record is given up as exhausted or out of retry budget only if
// the breaker is closed and either the downstream answered a call that
// started during the record's last backoff, or it answered one that started
// after the record's first failure (or after its failures were last written
// off) and no call but the record's own has failed since that answer: then
// the record is bad, not the sink. Otherwise the record's failures are
// written off to the outage: it gets a fresh allowance of attempts and
// keeps waiting, paced by its backoff and the breaker, instead of being
// dead-lettered. Answers from before an outage therefore do not condemn a
// record whose retries met the outage. A record alone on its lane
// (partition order, one worker) that keeps failing transiently cannot be
// told from an outage; it waits until its deadline, so give records a budget
// (the consumer's RecordBudget) if such records must not stall a partition
// for long. Without a breaker, MaxAttempts and the retry budget are hard
// limits.
//
// # Deadlines
//
// The record's budget is read from ctx.Deadline(). Remaining, SetBudgetHeader
// and GRPCTimeoutMetadata pass what is left to the downstream, so it can
// stop working on requests nobody waits for; GRPCTimeout formats the
// grpc-timeout value exactly (at most 8 digits and a unit, rounded up).
// A record whose deadline passes while it waits for an open breaker is given
// up with class deadline: its deadline, not the outage, ended it. Records
// without a deadline wait out any outage.
//
// # Observing
//
// Hooks takes values implementing any of HookAttempt, HookRetry,
// HookBreakerState, HookRateWait and HookOutcome, and refuses a value that
// implements none; the package imports no metrics library. The limiter reports its own limit and in-flight count.
// Breaker state changes are also logged (Logger).
//
// # Decisions
//
//   - Retry budget: a token bucket per sink, not a sliding window: Ratio
//     tokens per record, a floor of PerSecond tokens a second, at most Burst
//     tokens (see RetryBudget for the bound it gives).
//   - A Retry-After hint replaces the backoff for that wait, may exceed
//     MaxDelay, and is ignored above a day (CheckHTTP).
//   - The breaker counts permanent errors as successes (the downstream
//     answered) and does not count cancellations, panics or attempts not
//     started; attempts that time out are failures.
//   - Besides the failure ratio, the breaker opens after ConsecutiveFailures
//     failures while its window holds fewer than MinRequests results, so a
//     single lane whose retries back off still opens it in an outage, while
//     bad luck at high traffic never does.
//   - In group mode the burst is divided by the member count too (at least
//     1), so the whole group's burst stays near the configured one.
//   - Chaos sits inside Recover so that HookAttempt and the limiter see
//     injected latency as the sink's.
//   - The breaker follows the wall clock (gobreaker has no clock hook); the
//     other guards use Clock (a sluice.Clock).
package handlers
