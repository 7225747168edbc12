package metrics

// Metric names. They are part of the public contract: dashboards and alerts
// are built on them, so they do not change once released. The package
// documentation describes each one.
const (
	// Consumer (consumer hooks).

	RecordsConsumed        = "sluice_records_consumed_total"
	BytesConsumed          = "sluice_consumed_bytes_total"
	FetchErrors            = "sluice_fetch_errors_total"
	PartitionsAssigned     = "sluice_partitions_assigned"
	PartitionsPaused       = "sluice_partitions_paused"
	CommittedOffset        = "sluice_committed_offset"
	CommitErrors           = "sluice_commit_errors_total"
	Rebalances             = "sluice_rebalances_total"
	RebalanceDrain         = "sluice_rebalance_drain_seconds"
	RebalanceDrainTimeouts = "sluice_rebalance_drain_timeouts_total"
	AuthErrors             = "sluice_auth_errors_total"
	MalformedDeadlines     = "sluice_malformed_deadlines_total"

	// Consumer in share mode (consumer share hooks).

	ShareAcks      = "sluice_share_acks_total"
	ShareAckErrors = "sluice_share_ack_errors_total"

	// Consumer (read at scrape time from the consumer given to Watch).

	PartitionsStalled = "sluice_partitions_stalled"
	ConsumerLag       = "sluice_consumer_lag"
	LagErrors         = "sluice_consumer_lag_errors_total"

	// Pipeline (pipeline hooks).

	RecordsHandled   = "sluice_records_handled_total"
	HandleDuration   = "sluice_handle_duration_seconds"
	DeadLetters      = "sluice_dead_letters_total"
	DeadLetterErrors = "sluice_dead_letter_errors_total"
	StageRetries     = "sluice_stage_retries_total"

	// Dead-letter publisher (dlq hooks).

	DeadLetterWriteDuration = "sluice_dead_letter_write_duration_seconds"

	// Sink guards (handlers hooks).

	SinkAttempts        = "sluice_sink_attempts_total"
	SinkAttemptDuration = "sluice_sink_attempt_duration_seconds"
	SinkOutcomes        = "sluice_sink_outcomes_total"
	Retries             = "sluice_retries_total"
	BreakerState        = "sluice_breaker_state"
	BreakerTransitions  = "sluice_breaker_transitions_total"
	RateLimitWait       = "sluice_rate_limit_wait_seconds"

	// Concurrency limiters (backpressure observers, see Limiter).

	ConcurrencyLimit    = "sluice_concurrency_limit"
	ConcurrencyInFlight = "sluice_concurrency_in_flight"

	// KafkaNamespace prefixes the franz-go client metrics of plugin/kprom
	// (see KafkaClient), for example sluice_kafka_connects_total.
	KafkaNamespace = "sluice_kafka"
)

// Label names.
const (
	LabelTopic     = "topic"
	LabelPartition = "partition"
	LabelStage     = "stage"
	LabelSink      = "sink"
	LabelOutcome   = "outcome"
	LabelReason    = "reason"
	LabelKind      = "kind"
	LabelResult    = "result"
	LabelState     = "state"
	// LabelClient is the constant label that tells the franz-go clients of
	// one process apart (KafkaClient's role).
	LabelClient = "client"
)

// Values of the kind label of sluice_rebalances_total.
const (
	KindAssigned = "assigned"
	KindRevoked  = "revoked"
	KindLost     = "lost"
)

// Values of the result label.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// OutcomeRetried is the outcome label of sluice_sink_outcomes_total for a
// record that succeeded after more than one attempt; a first-attempt
// success is "ok".
const OutcomeRetried = "retried"

// Names returns every metric name this package registers (the franz-go
// client metrics under KafkaNamespace excepted), in the order of the package
// documentation.
func Names() []string {
	return []string{
		RecordsConsumed, BytesConsumed, FetchErrors, PartitionsAssigned, PartitionsPaused,
		CommittedOffset, CommitErrors, Rebalances, RebalanceDrain, RebalanceDrainTimeouts, AuthErrors, MalformedDeadlines,
		ShareAcks, ShareAckErrors,
		PartitionsStalled, ConsumerLag, LagErrors,
		RecordsHandled, HandleDuration, DeadLetters, DeadLetterErrors, StageRetries,
		DeadLetterWriteDuration,
		SinkAttempts, SinkAttemptDuration, SinkOutcomes, Retries, BreakerState, BreakerTransitions, RateLimitWait,
		ConcurrencyLimit, ConcurrencyInFlight,
	}
}
