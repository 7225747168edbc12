// Package backpressure holds concurrency limiters: a fixed bulkhead and
// adaptive limiters that find a downstream's capacity and follow it.
//
// # Limiters
//
// [Fixed] is a bulkhead: at most N calls at once. [Adaptive] learns the
// limit from the calls it admits. Both implement [Limiter]; both can be
// partitioned between flows ([Partitions], [Fixed.Flow]). Callers
// Acquire before a call and Release after it with the latency of the call
// alone (around the downstream call: never across backoff sleeps, queueing
// for a slot or rate-limit waits) and a [Signal]: Success, Overload (a
// timeout, 429, 503: the downstream is telling us about load) or Ignore (a
// bad request, a decode error, a cancelled context: says nothing about load,
// and the sample is dropped). In Sluice's guard chain the limiter sits
// between the rate limit and the per-attempt timeout, so it sees every
// attempt, retries included.
//
// Nothing here starts a goroutine or a timer: time is read from the [Clock]
// option's Now (default: the system clock) when calls are released, so a virtual clock
// drives every rule deterministically in tests and in the simulator
// (bench/limitersim). Callers that have just read the clock pass the time
// with ReleaseAt and save the limiter its read.
//
// # Cost
//
// Admitting and releasing take no lock while nobody waits: the slots held
// and the callers waiting share one atomic word, so Acquire and Release are
// one compare-and-swap each, and a caller never overtakes a waiter (the
// fast path admits only while nobody waits). The mutex is taken to queue,
// to hand a freed slot to a waiter (directly, so the slot stays counted)
// and to change the limit. Waiters are recycled, so waiting allocates
// nothing. Adaptive adds, on Release, one of eight randomly chosen sample
// shards, each with its own lock, and one atomic counter; a decision, once
// a window, holds them all.
//
// # How Adaptive decides
//
// The ideal limit of a downstream is the largest concurrency it serves
// without queueing: by Little's law its throughput times its no-load
// latency (c for c servers). Below it throughput grows with concurrency;
// above it throughput stays flat and latency grows in proportion to
// concurrency. Adaptive looks for that knee, and it judges a step up in
// concurrency by the throughput it bought, not by latency: below the knee
// latency also rises when it is the caller that is busy (a consumer running
// hundreds of goroutines on two cores), and a limiter that read that as
// queueing would throttle a downstream that keeps up.
//
// Decision window. Samples are collected into a window that closes at the
// first Release at which at least the minimum duration has passed and at
// least the minimum number of samples (Success or Overload signals of calls
// that started inside the window) were taken; see [Window], defaults 100ms
// and 100. Calls that started before the window ran under the previous limit
// and are not counted; windows that set the no-load latency (the first one
// and probes) take four times the samples, and windows that test a cut or a
// rebaseline twice. A window is summarised by a latency quantile q
// ([Quantile], default the median), the mean in-flight count n seen by its
// releases while its limit was in force, and its throughput x (releases per
// second). Only calls that started inside the window count towards q, so a
// window is not polluted by the previous limit; with an unfair downstream
// queue that serves newcomers first, that would show only the fast calls,
// so when Little's law (mean in-flight / throughput, which holds whatever
// the serving order) gives a mean latency above twice the quantile, the
// window uses it instead. Each window ends in exactly one decision, reported
// to any [HookDecision]. No rule ever acts on a single sample.
//
// Throughput noise. Windows differ for reasons of their own (a garbage
// collection, a fetch that arrives late). Whenever two consecutive windows
// ran at one limit and used all of it, the difference of their throughputs
// updates a running estimate of that noise. A step from window lo to window
// hi is judged by throughput only if it is resolvable: the noise (or the
// counting noise of the windows' completions, if larger) sits 2.5 times
// inside the gap between the decision threshold and either answer. A 25%
// step needs windows that agree within about 4%; a doubling, within 16%.
// Steps the windows cannot resolve are judged by latency alone, as are all
// steps of a caller too slow to fill its windows with completions.
//
// The baseline B is the no-load latency quantile. With r = q/B (taken as 1
// while q and B differ by less than 50 microseconds: scheduling moves a
// call's latency by that much whatever the downstream does, so the latency
// of a sink that takes microseconds says nothing about its load) and the
// [Tolerance] t (default 1.2), each window is judged by the first rule that
// applies:
//
//   - Overload: if more than [OverloadThreshold] of the window's signals
//     were Overload (default 5%), the limit is cut by that fraction, at most
//     by half.
//   - Step up: if n is at least 20% above the previous window's and the two
//     windows resolve the step, its elasticity e (how much of the step in
//     concurrency showed up in throughput: 1 in proportion, 0 not at all)
//     decides. With e >= 0.8 the step paid in full: the window is below the
//     knee, its latency is taken as the baseline if r > 1+(t-1)/2 (it is not
//     queueing, whatever caused it), and the limit grows again if the
//     window used all of it, doubling if r is low. With e >= 0.5 and r <= t
//     it grows by 25% (doubles in slow start). Otherwise (Knee) the knee is where throughput stopped:
//     k = lo.n*hi.x/lo.x, and the limit goes back to k*m, with m the middle
//     of the tolerance band, never below lo.n.
//   - Slow start: from the start until the first step that did not pay,
//     or the first cut, the limit doubles every window that used all of it: from the initial limit of 20, 640 five windows after the
//     start-up probe.
//   - Grow: if r <= 1+(t-1)/2 and the window used the whole limit, the limit
//     grows by 25% (at least 1).
//   - Explore: after 8 windows held at a limit they use in full, one step up
//     (of 25%, or more if the noise needs a larger step to resolve)
//     tests whether more concurrency pays; if it does not (Knee), the next
//     test waits twice as long, up to 64 windows.
//   - Hold: if r is within the tolerance band, or demand was below the limit.
//   - Cut: if r > t, the limit becomes n*m/r, but never less than half of n:
//     a latency rise may not be queueing, so one window never more than
//     halves the limit, and a run of such cuts never goes below half of
//     where it started until queueing is confirmed. A window with r between
//     t and 2t is only suspect: the limit is cut if the next window is above
//     tolerance too, so one slow window (a stall of the caller's own) costs
//     nothing.
//   - Confirm or rebaseline. The window after a cut tests it. From the window
//     hi before and lo after, knee = hi.n*lo.q/hi.q estimates where queueing
//     starts; so does lo.n*hi.x/lo.x with x the windows' throughputs
//     (Little's law), which a ramping window or an unfair queue does not
//     bias, and the lower estimate counts (a window that straddles a
//     capacity drop counts completions from before it, so throughput alone
//     would call the drop a slowdown). If knee is within 20% of lo.n,
//     latency fell in proportion to
//     concurrency (throughput did not rise with it): both windows queued, the
//     downstream lost capacity, and the full gradient applies. Otherwise lo
//     was below the knee: latency rose for another reason (slower calls, a
//     new network path), lo.q is the new no-load latency, and the limit goes
//     back up to knee*m. That rebaseline is itself tested by the next window
//     at the higher limit; if latency then rises in proportion to
//     concurrency, the old baseline is restored and the limit cut: by the
//     full gradient if the rebaseline's window was itself more than twice
//     the tolerance above the old baseline (two windows then confirm a large
//     loss of capacity; a window that straddles a capacity drop sees mostly
//     the calls that started before it and can make the first test look
//     like a slowdown), at most by half otherwise. It also
//     brings the next probe forward to an eighth of the probe interval, in
//     case the rise was a passing disturbance. This is how a latency x3 with
//     no capacity loss costs at most one halving, while a capacity drop
//     32 -> 8 is followed within about three windows.
//   - Faster: a whole window below B/t lowers B to it. One fast sample, or
//     a burst of fast errors, never does (Vegas resets its minimum on a
//     single sample; errors here are Overload or Ignore and never enter the
//     latency quantile).
//   - Demand cap: after every decision the limit is capped at
//     [DemandFactor] (default 2) times the highest in-flight count of the
//     window, so it cannot grow while the caller, not the downstream, is the
//     bottleneck, and it never exceeds 5x the in-flight demand.
//   - Probe: every [Probe] interval plus up to jitter*interval (defaults 30s
//     and 0.5), when no cut or rebaseline is under test, the limit is halved
//     for one window to re-measure B. If latency fell in proportion, the
//     probe window still queued and the probe halves again (at most four
//     times); otherwise its latency becomes B and the learned limit is
//     restored. The jitter keeps many consumers of one downstream from
//     probing together (Envoy's minRTT window); probing at half the limit
//     rather than at a tiny concurrency bounds what a probe costs.
//
// Windows and their targets are measured in bench/limitersim (virtual time)
// and on a real consumer in bench/live; the results and the exact commands
// are in docs/BENCHMARKS.md.
//
// # Known failures of other designs, and what is done here instead
//
//   - Netflix Gradient2 compares against a long-term average of latency: a
//     latency rise with no capacity loss drags the limit down until the
//     average catches up, and sustained queueing drifts the average (and the
//     limit) up. Here the baseline changes only on evidence: a probe, a
//     whole faster window, or a rebaseline that survived a test.
//   - Netflix Vegas takes the minimum single RTT as no-load latency: one
//     fast error resets it and halves the limit. Here only window quantiles
//     of successes move the baseline.
//   - Envoy's gradient controller measures minRTT at a concurrency of 3,
//     collapsing throughput during every measurement, and grows without a
//     bound while the caller is the bottleneck. Here probes halve the limit
//     and the demand cap bounds growth.
//   - failsafe-go's adaptive limiter tells a shifted workload from overload
//     by lowering the limit and watching; the knee test above is that
//     experiment, bounded so that a shift costs at most one halving.
//
// # Partitions
//
// A limiter shared by several flows (topics of different priority writing
// to one downstream) takes [Partitions]: each flow, listed highest
// priority first, is guaranteed floor(Share*limit) slots whenever it has
// work waiting, and share it does not use is borrowed by the others. The
// total never exceeds the limit: a flow coming back from idle is not given
// slots above the limit (unlike Netflix's partitioned limiter, which lets a
// flow under its share exceed the total); instead every freed slot goes
// first to a waiting flow below its share (by priority), then to the
// highest-priority waiting flow, so a borrowed share returns within one call
// latency. Within a flow, waiters are served in arrival order. Samples of
// every flow feed one adaptive limit, since they share one downstream.
//
// # Observability
//
// [Hooks] takes values implementing [HookLimit] (every limit change),
// [HookInFlight] (the in-flight count) and [HookDecision] (every window's
// [Decision] of an Adaptive limiter), like the hooks of the other packages
// of Sluice; a value implementing none is refused with a
// *sluice.ConfigError. The gauges sluice_concurrency_limit and
// sluice_concurrency_in_flight, by sink, are built on them
// (metrics.Limiter). Without hooks, nothing is reported and nothing is paid.
//
// # Options and errors
//
// Options are plain nouns: Clock, Hooks, Partitions and Seed apply to both
// limiters; InitialLimit, MinLimit, MaxLimit, Tolerance, Quantile, Window,
// Probe, DemandFactor and OverloadThreshold to Adaptive only (the compiler
// refuses them for NewFixed). A constructor given a value it cannot work
// with returns a *sluice.ConfigError naming the option and field
// (errors.Is sluice.ErrConfig).
package backpressure
