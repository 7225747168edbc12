package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// cow is a copy-on-write map for the series that hooks on the hot path
// update: a lookup is an atomic load and a map index, with no lock, no
// hashing of label values and no allocation, so that hooks called for
// every record on many goroutines do not contend. Adding a key (a new sink,
// stage or partition: rare) copies the map.
type cow[K comparable, V any] struct {
	p  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

func (c *cow[K, V]) get(k K, create func(K) V) V {
	if m := c.p.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if m := c.p.Load(); m != nil {
		old = *m
		if v, ok := old[k]; ok {
			return v
		}
	}
	n := make(map[K]V, len(old)+1)
	for ok, ov := range old {
		n[ok] = ov
	}
	v := create(k)
	n[k] = v
	c.p.Store(&n)
	return v
}

// sinkSeries are the series of one guarded sink.
type sinkSeries struct {
	attemptOK, attemptErr prometheus.Counter
	attemptSeconds        prometheus.Observer
	retries               prometheus.Counter
	rateWait              prometheus.Observer
	outcomes              cow[string, prometheus.Counter]
}

func (m *Metrics) sink(name string) *sinkSeries {
	return m.sinks.get(name, func(name string) *sinkSeries {
		return &sinkSeries{
			attemptOK:      m.attempts.WithLabelValues(name, ResultOK),
			attemptErr:     m.attempts.WithLabelValues(name, ResultError),
			attemptSeconds: m.attemptSeconds.WithLabelValues(name),
			retries:        m.retries.WithLabelValues(name),
			rateWait:       m.rateWait.WithLabelValues(name),
		}
	})
}

func (m *Metrics) sinkOutcome(s *sinkSeries, sink, outcome string) prometheus.Counter {
	return s.outcomes.get(outcome, func(outcome string) prometheus.Counter { return m.outcomes.WithLabelValues(sink, outcome) })
}

// stageSeries are the series of one pipeline stage or sink. Its handled
// counters exist, at zero, for every outcome once the stage is seen.
type stageSeries struct {
	handled [numOutcomes]prometheus.Counter
	seconds atomic.Pointer[prometheus.Observer] // created at the first latency
}

const numOutcomes = int(pipeline.OutcomeReleased) + 1

func (m *Metrics) stage(name string) *stageSeries {
	return m.stages.get(name, func(name string) *stageSeries {
		s := &stageSeries{}
		for o := range s.handled {
			s.handled[o] = m.handled.WithLabelValues(name, pipeline.Outcome(o).String())
		}
		return s
	})
}

func (m *Metrics) stageSeconds(s *stageSeries, stage string) prometheus.Observer {
	if o := s.seconds.Load(); o != nil {
		return *o
	}
	o := m.handleSeconds.WithLabelValues(stage)
	// Only sinks report a latency, and only sinks retry: their retry
	// counter exists, at zero, from their first message, so that rate()
	// and alerts on it work before the first retry.
	m.stageRetries.WithLabelValues(stage)
	s.seconds.Store(&o)
	return o
}

// partitionSeries are the fetch counters of one partition.
type partitionSeries struct {
	records, bytes prometheus.Counter
}

func (m *Metrics) partition(tp pipeline.TopicPartition) *partitionSeries {
	return m.partitions.get(partitionKey{tp.Topic, tp.Partition}, func(k partitionKey) *partitionSeries {
		p := partitionLabel(k.partition)
		return &partitionSeries{records: m.consumed.WithLabelValues(k.topic, p), bytes: m.consumedBytes.WithLabelValues(k.topic, p)}
	})
}

// shareKey names the acknowledgement counter of one topic and kind.
type shareKey struct{ topic, kind string }

func (m *Metrics) shareAck(topic, kind string) prometheus.Counter {
	return m.shareSeries.get(shareKey{topic, kind}, func(k shareKey) prometheus.Counter {
		// The topic's other series exist from its first acknowledgement,
		// at zero, so that rates and ratios of them work.
		for _, other := range []string{consumer.ShareAccept, consumer.ShareRelease, consumer.ShareReject} {
			m.shareAcks.WithLabelValues(k.topic, other)
		}
		m.shareAckErrs.WithLabelValues(k.topic)
		return m.shareAcks.WithLabelValues(k.topic, k.kind)
	})
}
