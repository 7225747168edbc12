// Package metrics is the Prometheus instrumentation of Sluice. A *Metrics
// implements the hook interfaces of packages consumer, pipeline, handlers
// and dlq; it registers its collectors on the prometheus.Registerer given to
// New, never on the default registry, and never in init.
//
//	m, err := metrics.New(reg)
//	lim, _ := backpressure.NewAdaptive(backpressure.Hooks(m.Limiter("store")))
//	store, _ := handlers.Guard(save, handlers.Name("store"), handlers.Hooks(m), handlers.Limiter(lim), ...)
//	p := pipeline.New(pipeline.Hooks(m), pipeline.DeadLetters(pub)) // pub: dlq.New(..., dlq.Hooks(m), dlq.ClientOpts(m.KafkaClient("dlq")))
//	c, err := consumer.New(..., consumer.Hooks(m), consumer.ClientOpts(m.KafkaClient("consumer")))
//	stop := m.Watch(c) // lag and stalled partitions
//	defer stop()
//
// Package sluicefx does this wiring under fx, in one place: MetricsModule
// hooks the consumer and its client, DeadLetterModule the dead-letter
// publisher and its client, and its Kit the pipeline (Kit.Pipeline), the
// guards (Kit.Guard) and the limiters (Kit.LimiterHooks).
//
// # Options of New
//
//	Buckets(b...)    histogram buckets, in seconds; default DefaultBuckets (1ms to 60s)
//	LagInterval(d)   how often Watch refreshes the lag; default 15s
//	LagTimeout(d)    bound of one lag refresh; default 5s
//	Logger(l)        where lag and registration failures are logged; default slog.Default()
//
// A bad option is a *sluice.ConfigError naming it.
//
// # Metrics
//
// Names are stable: dashboards and alerts are built on them, and each is
// also a constant of this package (Names lists them). Durations are in
// seconds, histograms use DefaultBuckets (1ms to 60s) unless Buckets says
// otherwise. Labels: topic and partition name a Kafka partition; stage is
// the name given to a pipeline stage or sink; sink is the name given to a
// guard chain (handlers.Name) or to Limiter.
//
// Consumer (consumer hooks):
//
//	sluice_records_consumed_total{topic,partition}      counter    records fetched
//	sluice_consumed_bytes_total{topic,partition}        counter    bytes fetched (key, value, headers, per-record overhead)
//	sluice_fetch_errors_total{topic,partition}          counter    fetch errors the consumer logged and survived
//	sluice_partitions_assigned                          gauge      partitions this member owns
//	sluice_partitions_paused                            gauge      owned partitions whose fetching is paused by the water marks
//	sluice_committed_offset{topic,partition}            gauge      last committed offset (the next to read) of an owned partition
//	sluice_commit_errors_total{topic,partition}         counter    failed commits (a periodic one is retried; a final one means records are handled again)
//	sluice_rebalances_total{kind}                       counter    rebalance events: kind is assigned, revoked or lost
//	sluice_rebalance_drain_seconds                      histogram  time a revoke (or shutdown) took to drain in-flight records
//	sluice_rebalance_drain_timeouts_total               counter    drains cut short by the drain timeout
//	sluice_malformed_deadlines_total                    counter    records whose sluice-deadline header was not Unix milliseconds (ignored)
//	sluice_auth_errors_total{kind}                      counter    authentication and authorization failures: sasl, tls, group-authorization, topic-authorization
//
// Consumer in share mode (consumer.ShareGroup; its records are also counted
// by sluice_records_consumed_total and _consumed_bytes_total):
//
//	sluice_share_acks_total{topic,kind}                 counter    acknowledgements given: kind is accept (handled), release
//	                                                               (delivered again, to any member) or reject (dead-lettered);
//	                                                               all three exist from a topic's first acknowledgement
//	sluice_share_ack_errors_total{topic}                counter    acknowledgements the broker refused or that could not be
//	                                                               sent (an expired lock, a lost connection): delivered again
//
// Consumer, read from the consumer given to Watch:
//
//	sluice_partitions_stalled                           gauge      owned partitions whose commit has not moved for StallAfter
//	                                                               (share mode: partitions of the batch's unacknowledged
//	                                                               records when none was acknowledged for StallAfter)
//	sluice_consumer_lag{topic,partition}                gauge      end offset minus committed offset of an owned partition
//	sluice_consumer_lag_errors_total                    counter    lag refreshes that failed
//
// Pipeline (pipeline hooks):
//
//	sluice_records_handled_total{stage,outcome}         counter    records a stage or sink finished with; outcome is
//	                                                               ok, dead_lettered, filtered, held, abandoned or released
//	                                                               (handed back to a share group for another delivery)
//	sluice_handle_duration_seconds{stage}               histogram  time a sink took per message, guards included
//	sluice_dead_letters_total{stage,reason}             counter    records dead-lettered and acknowledged; reason is the
//	                                                               failure class: decode, panic, permanent, exhausted,
//	                                                               budget, deadline, error or delivery-limit (a share
//	                                                               group record's last delivery)
//	sluice_dead_letter_errors_total{stage}              counter    failed dead-letter writes (retried; the record stays unsettled)
//	sluice_stage_retries_total{stage}                   counter    transient sink failures the pipeline retries (see pipeline.Sink);
//	                                                               zero from a sink's first message
//
// Dead-letter publisher (dlq hooks):
//
//	sluice_dead_letter_write_duration_seconds{topic,result}  histogram  time of a write to dead-letter topic until
//	                                                                    acknowledged (result ok) or failed (error)
//
// Sink guards (handlers hooks):
//
//	sluice_sink_attempts_total{sink,result}             counter    calls of the sink; result is ok or error
//	sluice_sink_attempt_duration_seconds{sink}          histogram  latency of one call, as the limiter sees it
//	sluice_sink_outcomes_total{sink,outcome}            counter    records the chain finished with; outcome is ok,
//	                                                               retried (ok after more than one attempt), abandoned,
//	                                                               or the failure class it gave up with
//	sluice_retries_total{sink}                          counter    retries (backoffs started)
//	sluice_breaker_state{sink}                          gauge      0 closed, 1 half-open, 2 open
//	sluice_breaker_transitions_total{sink,state}        counter    state changes, by the state entered
//	                                                               (closed, half-open, open)
//	sluice_rate_limit_wait_seconds{sink}                histogram  time each attempt waited for the rate limiter
//
// Concurrency limiters (backpressure hooks from Limiter):
//
//	sluice_concurrency_limit{sink}                      gauge      the limiter's current limit
//	sluice_concurrency_in_flight{sink}                  gauge      calls holding a slot
//
// Kafka client (plugin/kprom through KafkaClient): kprom's metrics under
// the namespace sluice_kafka, with the constant label client (the role given
// to KafkaClient) and node_id, plus topic on fetch and produce metrics:
//
//	sluice_kafka_connects_total, _connect_errors_total, _disconnects_total,
//	_write_bytes_total, _write_errors_total, _read_bytes_total,
//	_read_errors_total                                   per broker
//	sluice_kafka_request_duration_e2e_seconds,
//	_request_throttled_seconds                           histograms per broker
//	sluice_kafka_fetch_records_total, _fetch_batches_total,
//	_fetch_uncompressed_bytes_total, _fetch_compressed_bytes_total,
//	and the same four for produce                        per broker and topic
//	sluice_kafka_buffered_fetch_records_total, _buffered_fetch_bytes,
//	_buffered_produce_records_total, _buffered_produce_bytes    gauges
//
// The two buffered ..._records_total are gauges despite their suffix
// (kprom's naming, reported by the linter); see the kprom documentation
// for the rest.
//
// # Decisions
//
//   - Two sources report what became of a record, and they are kept apart
//     so that nothing is counted twice: sluice_records_handled_total is the
//     pipeline's verdict per stage (did the record settle, and how), and
//     sluice_sink_outcomes_total is the guard chain's view per sink (did
//     it succeed at once, after retries, or why it gave up). "retried" is
//     therefore an outcome of the second, not the first.
//   - sluice_handle_duration_seconds observes sinks only: stages report no
//     latency, and a sink reporting exactly zero (a fake clock) is not
//     observed either.
//   - A sink's breaker gauge appears at its first state change; until then
//     the breaker is closed (query with "or vector(0)").
//   - The lag is computed in the background (Watch), every LagInterval,
//     not at scrape time: a scrape never waits for the brokers, and a slow
//     or unreachable cluster shows as sluice_consumer_lag_errors_total and
//     a missing lag, never as a stale one. Only partitions this member owns
//     are exported, so the lag of a group is the sum over its members.
//   - Series of partitions this member no longer owns are deleted from the
//     gauges (committed offset, lag); counters keep them, as Prometheus
//     expects of counters.
//   - Several consumers in one process: give each its own Metrics on a
//     registerer wrapped with prometheus.WrapRegistererWith and a
//     distinguishing label, and each client its own KafkaClient role.
package metrics
