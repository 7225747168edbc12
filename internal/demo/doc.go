// Package demo is `sluice demo`: the whole story of a Sluice consumer in one
// run, on an embedded broker or on any Kafka.
//
// # What runs
//
//   - A producer writes orders at Config.Rate for Config.Duration, keyed by
//     customer, each customer's orders numbered 1, 2, 3, ... A deterministic
//     share is poison: 0.5% cut short (undecodable), 0.2% with a negative
//     amount (the downstream rejects them with a 422), 0.1% in a currency
//     the downstream's client has no rate for (it panics); 1% are test
//     orders, which the pipeline's filter drops.
//   - The consumer (group "sluice-demo") runs the example pipeline of
//     internal/orders: decode, filter, duplicate, a per-second
//     window on one branch, a key-ordered fan-out to the guarded ship sink on
//     the other, dead letters through a dlq.Publisher to orders.dlq.
//   - The ship sink calls a simulated downstream whose schedule repeats
//     every Config.Cycle (default: the duration): normal for the first 25%
//     of the cycle, slow from 25% (5x the latency and a quarter of the
//     capacity: a backlog builds and the adaptive limiter cuts its limit),
//     down from 45% to 65% (every call fails at once with 503 and a
//     Retry-After of half the outage, at most 1s: the breaker opens, records
//     wait, the partitions pause), then recovered. 0.5% of calls fail
//     with a 503 at any time, so retries are always at work.
//   - /metrics, /healthz and /readyz (packages metrics and health) on
//     Config.MetricsAddr, and a progress display read from the same metrics.
//
// # What it checks
//
// A ledger accounts for every acknowledged record by partition and offset:
// shipped (the downstream accepted it), dead-lettered (the publisher
// acknowledged its dead letter, with a class), or a test order. When the
// group's commit passes a record, its account is settled: a record the commit
// passed that was neither shipped, dead-lettered nor a test order is lost; a
// dead letter whose class its kind does not explain (a good order
// dead-lettered during the outage, say) is unexpected. Settled accounts are
// forgotten, so memory is bounded by the records in flight, however long the
// run. After the run the group's committed offsets are read from the broker
// for the final settlement, and the dead letters are read back from the
// dead-letter topic. Shipping an order after a later order of its customer is
// an order violation; a second delivery is a duplicate.
//
// # Decisions
//
//   - The summary's figures add up: produced = handled (shipped + filtered) +
//     dead-lettered + lost + pending, where pending are records the commit
//     had not passed when the demo stopped (interrupted, or the drain timeout
//     passed): they are not lost, the group's next run handles them.
//   - An outage must not dead-letter anything (DESIGN promise 6), so the ship
//     sink's deadline budget is the outage plus a minute and the consumer sets
//     no per-record budget; the breaker probes about five times per outage.
//     A shorter budget would dead-letter the records waiting out the outage
//     with class deadline, which is what a budget is for.
//   - The embedded broker keeps its data in a directory (Config.DataDir,
//     default a new one under os.TempDir()) rather than staying up after the
//     demo: the summary prints `sluice dev broker --data-dir DIR` and `sluice
//     dlq stats orders.dlq`, which serve and read the same data. A fresh
//     directory per run keeps runs apart; an explicit one may be reused.
//   - On a cluster of the user's (Config.Brokers) the demo uses topics of
//     its own, ForeignTopic ("sluice-demo.orders") and its ".dlq", unless
//     Config.Topic names another. It regards a topic as its own when its
//     group (Group) has committed offsets in it, and commits the start
//     offsets of every topic it creates at once to make it so; a topic that
//     exists and is not its own is refused before anything is written
//     (Config.UseExistingTopic overrides). On such a cluster the group also
//     starts every partition it has no commit for at the run's start, so it
//     never consumes records that were there before.
//   - On a topic the demo already used (a second run, the docker-compose
//     demo restarted) only this run's part of the topic is accounted:
//     records below the end offsets taken at the start are handled by the
//     group if it had not committed them, but not counted. The demo must be
//     the topic's only producer.
//   - Stopping (after the drain, or at Ctrl-C) stops the consumer
//     gracefully: unsettled orders get Config.StopTimeout (default 10s, the
//     consumer's DrainTimeout) to settle, and the display says so, with the
//     downstream's phase and the breaker's state, while it waits. The
//     summary tells how long stopping took, and splits the records the
//     commit had not passed (pending) into those already shipped or
//     dead-lettered (the group's next run handles them again) and the
//     rest. A second Ctrl-C quits at once (`sluice` exits 130): the group
//     has committed only settled records.
//   - The downstream's outage answers carry a Retry-After, as a service in
//     maintenance does. Without it, a record whose first failure was one of
//     the random 503s just before the outage can spend its attempts on the
//     outage before the breaker opens and be dead-lettered as exhausted: the
//     guards count the answers to calls after the record's first failure as
//     proof that the record, not the downstream, is bad (see the handlers
//     package, Outages). The hint spaces the retries so that the breaker
//     opens first.
//   - The unsettled-record water marks are low (two seconds of a
//     partition's orders, at least 200) so that an outage visibly pauses
//     fetching instead of buffering thousands of records. The price shows
//     after the outage: the totals window holds a second of records
//     unsettled, so while the backlog drains a partition pauses whenever its
//     window's second reaches the mark, and the drain runs below the ship
//     sink's rate limit (the consumer's and stages' documented tradeoff).
//   - Logs (breaker changes, recovered panics with their stacks) go to a
//     file, not the terminal, so they do not tear the progress display.
//   - Run returns ErrFailed, and `sluice demo` exits 1, when a record was
//     lost, shipped out of order or dead-lettered unexpectedly.
package demo
