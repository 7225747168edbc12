package metrics

import (
	"strconv"
	"time"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

var (
	_ consumer.HookFetched    = (*Metrics)(nil)
	_ consumer.HookFetchError = (*Metrics)(nil)
	_ consumer.HookPaused     = (*Metrics)(nil)
	_ consumer.HookCommitted  = (*Metrics)(nil)
	_ consumer.HookAssigned   = (*Metrics)(nil)
	_ consumer.HookRevoked    = (*Metrics)(nil)
	_ consumer.HookLost       = (*Metrics)(nil)
	_ consumer.HookAuthError  = (*Metrics)(nil)

	_ consumer.HookMalformedDeadline = (*Metrics)(nil)
	_ consumer.HookShareAcked        = (*Metrics)(nil)
	_ consumer.HookShareAckError     = (*Metrics)(nil)

	_ pipeline.HookHandled         = (*Metrics)(nil)
	_ pipeline.HookDeadLetter      = (*Metrics)(nil)
	_ pipeline.HookDeadLetterError = (*Metrics)(nil)
	_ pipeline.HookSinkRetry       = (*Metrics)(nil)

	_ handlers.HookAttempt      = (*Metrics)(nil)
	_ handlers.HookRetry        = (*Metrics)(nil)
	_ handlers.HookBreakerState = (*Metrics)(nil)
	_ handlers.HookRateWait     = (*Metrics)(nil)
	_ handlers.HookOutcome      = (*Metrics)(nil)

	_ dlq.HookWritten     = (*Metrics)(nil)
	_ dlq.HookWriteFailed = (*Metrics)(nil)
)

func partitionLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }

// ---- consumer ----

// OnFetched counts records and bytes fetched (consumer.HookFetched).
func (m *Metrics) OnFetched(tp pipeline.TopicPartition, records int, bytes int64) {
	s := m.partition(tp)
	s.records.Add(float64(records))
	s.bytes.Add(float64(bytes))
}

// OnFetchError counts fetch errors (consumer.HookFetchError).
func (m *Metrics) OnFetchError(tp pipeline.TopicPartition, _ error) {
	m.fetchErrors.WithLabelValues(tp.Topic, partitionLabel(tp.Partition)).Inc()
}

// OnAuthError counts authentication and authorization failures by kind
// (consumer.HookAuthError).
func (m *Metrics) OnAuthError(err *consumer.AuthError) {
	m.authErrors.WithLabelValues(err.Kind).Inc()
}

// OnMalformedDeadline counts records whose deadline header was ignored
// (consumer.HookMalformedDeadline).
func (m *Metrics) OnMalformedDeadline(pipeline.TopicPartition, int64) { m.badDeadlines.Inc() }

// OnShareAcked counts a share group member's acknowledgements by topic and
// kind (consumer.HookShareAcked). A topic's three counters are created at
// zero at its first acknowledgement, so that rate() and ratios work.
func (m *Metrics) OnShareAcked(tp pipeline.TopicPartition, kind string, records int) {
	m.shareAck(tp.Topic, kind).Add(float64(records))
}

// OnShareAckError counts share acknowledgements that failed
// (consumer.HookShareAckError).
func (m *Metrics) OnShareAckError(tp pipeline.TopicPartition, _ error) {
	m.shareAckErrs.WithLabelValues(tp.Topic).Inc()
}

// OnPaused tracks paused partitions (consumer.HookPaused).
func (m *Metrics) OnPaused(tp pipeline.TopicPartition, paused bool) {
	k := partitionKey{tp.Topic, tp.Partition}
	m.partsMu.Lock()
	defer m.partsMu.Unlock()
	if paused {
		m.pausedP[k] = true
	} else {
		delete(m.pausedP, k)
	}
	m.paused.Set(float64(len(m.pausedP)))
}

// OnCommitted records committed offsets and counts failed commits
// (consumer.HookCommitted).
func (m *Metrics) OnCommitted(tp pipeline.TopicPartition, offset int64, err error) {
	p := partitionLabel(tp.Partition)
	if err != nil {
		m.commitErrors.WithLabelValues(tp.Topic, p).Inc()
		return
	}
	m.partsMu.Lock()
	defer m.partsMu.Unlock()
	// A commit that lands after the partition was lost must not resurrect
	// its series.
	if !m.gone[partitionKey{tp.Topic, tp.Partition}] {
		m.committed.WithLabelValues(tp.Topic, p).Set(float64(offset))
	}
}

// OnAssigned counts an assignment (consumer.HookAssigned). The
// per-partition counters of the assigned partitions are created at zero,
// so that they exist, and rate() works, before their first event.
func (m *Metrics) OnAssigned(tps []pipeline.TopicPartition) {
	m.rebalances.WithLabelValues(KindAssigned).Inc()
	for _, tp := range tps {
		m.partition(tp)
		p := partitionLabel(tp.Partition)
		m.fetchErrors.WithLabelValues(tp.Topic, p)
		m.commitErrors.WithLabelValues(tp.Topic, p)
	}
	m.partsMu.Lock()
	defer m.partsMu.Unlock()
	for _, tp := range tps {
		k := partitionKey{tp.Topic, tp.Partition}
		m.owned[k] = true
		delete(m.gone, k)
	}
	m.assigned.Set(float64(len(m.owned)))
}

// OnRevoked counts a revoke and its drain time (consumer.HookRevoked).
func (m *Metrics) OnRevoked(tps []pipeline.TopicPartition, drain time.Duration, timedOut bool) {
	m.rebalances.WithLabelValues(KindRevoked).Inc()
	m.drain.Observe(drain.Seconds())
	if timedOut {
		m.drainTimeouts.Inc()
	}
	m.disown(tps)
}

// OnLost counts a loss of partitions (consumer.HookLost).
func (m *Metrics) OnLost(tps []pipeline.TopicPartition) {
	m.rebalances.WithLabelValues(KindLost).Inc()
	m.disown(tps)
}

// disown forgets the per-partition series of partitions no longer owned:
// their committed offset would otherwise be exported forever. (The consumer
// also reports a paused partition resumed when it lets it go; forgetting it
// here too keeps the gauge right whatever order the hooks arrive in.)
func (m *Metrics) disown(tps []pipeline.TopicPartition) {
	m.partsMu.Lock()
	defer m.partsMu.Unlock()
	for _, tp := range tps {
		k := partitionKey{tp.Topic, tp.Partition}
		delete(m.owned, k)
		delete(m.pausedP, k)
		m.gone[k] = true
		m.committed.DeleteLabelValues(tp.Topic, partitionLabel(tp.Partition))
	}
	m.assigned.Set(float64(len(m.owned)))
	m.paused.Set(float64(len(m.pausedP)))
}

// ---- pipeline ----

// OnHandled counts records by stage and outcome and times sinks
// (pipeline.HookHandled). Stages report no latency; only messages with a
// latency (sinks) are observed in sluice_handle_duration_seconds.
func (m *Metrics) OnHandled(stage string, outcome pipeline.Outcome, records int, latency time.Duration) {
	s := m.stage(stage)
	if int(outcome) < numOutcomes {
		s.handled[outcome].Add(float64(records))
	} else {
		m.handled.WithLabelValues(stage, outcome.String()).Add(float64(records))
	}
	if latency > 0 {
		m.stageSeconds(s, stage).Observe(latency.Seconds())
	}
}

// OnDeadLetter counts acknowledged dead letters (pipeline.HookDeadLetter).
func (m *Metrics) OnDeadLetter(stage, class string, records int) {
	m.deadLetters.WithLabelValues(stage, class).Add(float64(records))
}

// OnDeadLetterError counts failed dead-letter writes
// (pipeline.HookDeadLetterError).
func (m *Metrics) OnDeadLetterError(stage string, _ error) {
	m.deadErrors.WithLabelValues(stage).Inc()
}

// OnSinkRetry counts transient sink failures the pipeline retries
// (pipeline.HookSinkRetry).
func (m *Metrics) OnSinkRetry(stage string, _ int, _ error) {
	m.stageRetries.WithLabelValues(stage).Inc()
}

// ---- dlq ----

// OnDeadLetterWritten times an acknowledged dead-letter write
// (dlq.HookWritten).
func (m *Metrics) OnDeadLetterWritten(w dlq.WriteInfo) {
	m.dlqWrite.WithLabelValues(w.Topic, ResultOK).Observe(w.Latency.Seconds())
}

// OnDeadLetterWriteFailed times a failed dead-letter write
// (dlq.HookWriteFailed). The failure is counted by OnDeadLetterError when
// the pipeline made the write.
func (m *Metrics) OnDeadLetterWriteFailed(w dlq.WriteInfo, _ error) {
	m.dlqWrite.WithLabelValues(w.Topic, ResultError).Observe(w.Latency.Seconds())
}

// ---- handlers ----

// OnAttempt counts and times a sink call (handlers.HookAttempt).
func (m *Metrics) OnAttempt(sink string, latency time.Duration, err error) {
	s := m.sink(sink)
	if err != nil {
		s.attemptErr.Inc()
	} else {
		s.attemptOK.Inc()
	}
	s.attemptSeconds.Observe(latency.Seconds())
}

// OnRetry counts a retry (handlers.HookRetry).
func (m *Metrics) OnRetry(sink string, _ int, _ time.Duration, _ error) {
	m.sink(sink).retries.Inc()
}

// OnBreakerState records a breaker's state (handlers.HookBreakerState) as 0
// closed, 1 half-open, 2 open, and counts the change.
func (m *Metrics) OnBreakerState(sink string, _, to handlers.BreakerState) {
	m.breaker.WithLabelValues(sink).Set(breakerValue(to))
	m.breakerSwitches.WithLabelValues(sink, to.String()).Inc()
}

func breakerValue(s handlers.BreakerState) float64 {
	switch s {
	case handlers.BreakerHalfOpen:
		return 1
	case handlers.BreakerOpen:
		return 2
	}
	return 0
}

// OnRateWait observes the wait at a rate limiter (handlers.HookRateWait).
func (m *Metrics) OnRateWait(sink string, wait time.Duration) {
	m.sink(sink).rateWait.Observe(wait.Seconds())
}

// OnOutcome counts what a guard chain did with a record
// (handlers.HookOutcome); a success after retries is "retried".
func (m *Metrics) OnOutcome(sink string, outcome string, attempts int, _ time.Duration) {
	if outcome == handlers.OutcomeOK && attempts > 1 {
		outcome = OutcomeRetried
	}
	m.sinkOutcome(m.sink(sink), sink, outcome).Inc()
}
