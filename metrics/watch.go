package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// Source is a consumer as Watch reads it; *consumer.Consumer is one.
type Source interface {
	// Status is the consumer's health snapshot.
	Status() consumer.Status
	// Client is the consumer's franz-go client, used for admin requests
	// (end offsets, committed offsets); its ConsumerGroup option names the
	// group.
	Client() *kgo.Client
}

var _ Source = (*consumer.Consumer)(nil)

// Watch makes m export what it reads from c: sluice_partitions_stalled,
// from c.Status() at every scrape, and sluice_consumer_lag for every
// partition c owns. The lag is computed with kadm in a goroutine that Watch
// starts, every LagInterval (the partitions' end offsets minus the group's
// committed offsets: two or three admin requests, each refresh bounded by
// LagTimeout), so that a scrape never waits for the brokers; a scrape shows
// the last refresh. A failed refresh drops the lag (no stale values) and
// counts sluice_consumer_lag_errors_total. Nothing is requested while c is
// not running or owns no partitions, nor for a share group member
// (consumer.ShareGroup), which has no committed offsets.
//
// A later Watch replaces c. The returned stop ends the refresh goroutine and
// waits for it (a refresh in progress ends when its timeout passes or c's
// client closes) and stops exporting c; call it before or after closing c.
// It may be called more than once. Watch(nil) stops exporting the watched
// consumer without stopping its goroutine.
func (m *Metrics) Watch(c Source) (stop func()) {
	w := m.watch
	if c == nil {
		w.mu.Lock()
		w.src, w.lags = nil, nil
		w.mu.Unlock()
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.mu.Lock()
	w.src, w.lags = c, nil
	w.mu.Unlock()
	go func() {
		defer close(done)
		w.loop(ctx, c)
	}()
	return sync.OnceFunc(func() {
		cancel()
		<-done
		w.mu.Lock()
		if w.src == c {
			w.src, w.lags = nil, nil
		}
		w.mu.Unlock()
	})
}

// watcher is the collector of the metrics read from a watched consumer.
type watcher struct {
	m       *Metrics
	stalled *prometheus.Desc
	lag     *prometheus.Desc

	mu   sync.Mutex
	src  Source
	lags map[pipeline.TopicPartition]int64

	lastLog time.Time // of a refresh failure; only the loop uses it
}

func newWatcher(m *Metrics) *watcher {
	return &watcher{
		m:       m,
		stalled: prometheus.NewDesc(PartitionsStalled, "Owned partitions with unsettled records whose commit has not moved for the consumer's StallAfter: a stuck record or a sink that is down.", nil, nil),
		lag:     prometheus.NewDesc(ConsumerLag, "Records of an owned partition after the group's committed offset (end offset minus committed offset; minus the log start when nothing is committed), as of the last refresh.", []string{LabelTopic, LabelPartition}, nil),
	}
}

func (w *watcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.stalled
	ch <- w.lag
}

func (w *watcher) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	src, lags := w.src, w.lags
	w.mu.Unlock()
	if src == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(w.stalled, prometheus.GaugeValue, float64(len(src.Status().Stalled)))
	for tp, lag := range lags {
		ch <- prometheus.MustNewConstMetric(w.lag, prometheus.GaugeValue, float64(lag), tp.Topic, partitionLabel(tp.Partition))
	}
}

// loop refreshes the lag of src every interval until ctx is done.
func (w *watcher) loop(ctx context.Context, src Source) {
	t := time.NewTicker(w.m.lagEvery)
	defer t.Stop()
	for {
		w.refresh(ctx, src)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) refresh(ctx context.Context, src Source) {
	st := src.Status()
	var lags map[pipeline.TopicPartition]int64
	// A share group member has no committed offsets, and its Assigned are
	// the partitions of its current batch: it has no lag to compute.
	share, _ := src.Client().OptValue(kgo.ShareGroup).(string)
	if st.Running && len(st.Assigned) > 0 && share == "" {
		rctx, cancel := context.WithTimeout(ctx, w.m.lagTTL)
		var err error
		lags, err = computeLag(rctx, src.Client(), st.Assigned)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // stopping
			}
			lags = nil
			w.m.lagErrors.Inc()
			w.logFailure(err)
		}
	}
	w.mu.Lock()
	if w.src == src {
		w.lags = lags
	}
	w.mu.Unlock()
}

// logFailure logs refresh failures at most once a minute: the cause is
// usually the same for a while.
func (w *watcher) logFailure(err error) {
	now := time.Now()
	if now.Sub(w.lastLog) < time.Minute {
		return
	}
	w.lastLog = now
	w.m.log.Warn("metrics: consumer lag not computed; sluice_consumer_lag is missing until a refresh succeeds", "err", err)
}

// computeLag returns the lag of each partition of tps it could compute, and
// an error if it could not compute them all.
func computeLag(ctx context.Context, cl *kgo.Client, tps []pipeline.TopicPartition) (map[pipeline.TopicPartition]int64, error) {
	group, _ := cl.OptValue(kgo.ConsumerGroup).(string)
	if group == "" {
		return nil, errors.New("the client has no consumer group")
	}
	var topics []string
	seen := map[string]bool{}
	for _, tp := range tps {
		if !seen[tp.Topic] {
			seen[tp.Topic] = true
			topics = append(topics, tp.Topic)
		}
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	commits, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	var starts kadm.ListedOffsets
	lags := make(map[pipeline.TopicPartition]int64, len(tps))
	var errs []error
	for _, tp := range tps {
		end, ok := ends.Lookup(tp.Topic, tp.Partition)
		if !ok || end.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s: %v", tp, end.Err))
			continue
		}
		from := int64(-1)
		if c, ok := commits.Lookup(tp.Topic, tp.Partition); ok && c.Err == nil {
			from = c.At
		}
		if from < 0 {
			if starts == nil {
				if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
					return lags, errors.Join(append(errs, fmt.Errorf("list start offsets: %w", err))...)
				}
			}
			s, ok := starts.Lookup(tp.Topic, tp.Partition)
			if !ok || s.Err != nil {
				errs = append(errs, fmt.Errorf("start offset of %s: %v", tp, s.Err))
				continue
			}
			from = s.Offset
		}
		lags[tp] = max(0, end.Offset-from)
	}
	return lags, errors.Join(errs...)
}
