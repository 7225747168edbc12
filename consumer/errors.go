package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// ErrNotCommitted is wrapped by a *CommitError.
var ErrNotCommitted = errors.New("consumer: final commit failed")

// CommitError is returned by Run when the commits of a shutdown did not
// land (a rebalance kept the member from committing past the final commit
// timeout, or the broker rejected the commit: the member was fenced or its
// session ended). The shutdown was otherwise complete, but each partition's
// next owner handles the records after the last committed offset again.
type CommitError struct {
	// Offsets are the watermarks that were not committed, by partition.
	Offsets map[pipeline.TopicPartition]int64
	// Err is the first partition's error, in partition order.
	Err error
}

func newCommitError(failed map[pipeline.TopicPartition]commitFailure) *CommitError {
	e := &CommitError{Offsets: make(map[pipeline.TopicPartition]int64, len(failed))}
	tps := make([]pipeline.TopicPartition, 0, len(failed))
	for tp, f := range failed {
		e.Offsets[tp] = f.offset
		tps = append(tps, tp)
	}
	sortTPs(tps)
	e.Err = failed[tps[0]].err
	return e
}

func (e *CommitError) Error() string {
	return fmt.Sprintf("consumer: final commit of %d partitions failed, their next owners handle settled records again: %v", len(e.Offsets), e.Err)
}

// Unwrap ties the error to ErrNotCommitted and to the commit's error.
func (e *CommitError) Unwrap() []error { return []error{ErrNotCommitted, e.Err} }

// fetchErrorEvery is how often one partition's same fetch error is logged.
const fetchErrorEvery = 10 * time.Second

// errLog rate-limits logs by key: a key is logged at most once per every.
// It forgets keys once their time has passed, so it holds only the errors
// of the last period.
type errLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

func newErrLog(every time.Duration) *errLog {
	return &errLog{every: every, last: map[string]time.Time{}}
}

// due reports whether key should be logged now.
func (l *errLog) due(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, seen := l.last[key]; seen && now.Sub(last) <= l.every {
		return false
	}
	if len(l.last) >= 64 {
		for k, t := range l.last {
			if now.Sub(t) > l.every {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	return true
}

// size is how many keys the log holds.
func (l *errLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}

// fetchError logs a fetch error at most every fetchErrorEvery per partition
// and error.
func (c *Consumer) fetchError(topic string, partition int32, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	tp := pipeline.TopicPartition{Topic: topic, Partition: partition}
	each(c.hooks, func(h HookFetchError) { h.OnFetchError(tp, err) })
	if errors.Is(err, kerr.UnknownTopicID) {
		c.markRecreated(topic)
	}
	if e := classifyFetch(topic, err); e != nil {
		c.authFailed(e)
		return
	}
	if !c.errLog.due(tp.String()+err.Error(), time.Now()) {
		return
	}
	msg := "fetch error; the consumer keeps going"
	switch {
	case topic == "":
		// franz-go reports errors of the group session as fetches
		// without a topic.
		c.log.Warn("group error; the consumer keeps trying to rejoin", "err", err)
		return
	case errors.Is(err, kerr.UnknownTopicID):
		msg = "topic was deleted and recreated; the consumer resets it"
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		msg = "topic or partition does not exist (deleted?); the consumer waits for it"
	}
	c.log.Warn(msg, "topic", topic, "partition", partition, "err", err)
}
