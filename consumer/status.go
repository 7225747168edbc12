package consumer

import (
	"sort"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// Status is a snapshot of the consumer's health, for readiness checks.
//
// A share group member (ShareGroup) owns no partitions: the broker hands
// records of any partition to any member. For it, Assigned are the
// partitions of the records of its current batch (the last poll's, kept
// while it is handled and until a poll comes back empty); Unsettled (and
// Buffered, the same: no records wait in a buffer) are the records of the
// batch not acknowledged yet, which the member holds acquired; Stalled are
// the partitions of the batch's unacknowledged records when no record of
// the batch has been acknowledged for StallAfter; Joined is true once a
// share group heartbeat was answered.
type Status struct {
	// Running is true between Run's start and its return.
	Running bool
	// Joined is true once the group assigned this member its partitions
	// (possibly none), until they are lost or the consumer stops.
	Joined bool
	// Assigned and Paused are the partitions owned, and those whose
	// fetching is paused by the water marks.
	Assigned, Paused []pipeline.TopicPartition
	// Stalled are owned partitions with unsettled records whose commit
	// watermark has not moved for StallAfter: a stuck record or a sink that
	// is down.
	Stalled []pipeline.TopicPartition
	// Unsettled are records handed to the handler and not settled;
	// Buffered adds those fetched and not yet handed over.
	Unsettled, Buffered int64
	// Err is the fatal error that stopped the consumer, if any.
	Err error
	// ConnectErr is the last failure to connect to a broker, if the last
	// attempt failed: why a consumer that is not joined cannot join.
	ConnectErr error
	// AuthErr is the latest authentication or authorization failure (an
	// *AuthError) that no success of its kind has cleared since.
	AuthErr error
}

// Status returns a snapshot of the consumer's health.
func (c *Consumer) Status() Status {
	c.stateMu.Lock()
	st := Status{Running: c.state == running, Err: c.fatalErr}
	c.stateMu.Unlock()
	st.Joined = st.Running && c.joined.Load()
	st.Paused = c.Paused()
	now := time.Now()
	if c.cfg.share != nil {
		c.shareStatus(&st, now)
	} else {
		st.Assigned = c.Assigned()
		for _, p := range c.ownedPartitions() {
			if p.stalledSince(now, c.cfg.stallAfter) {
				st.Stalled = append(st.Stalled, p.tp)
			}
		}
		sortTPs(st.Stalled)
		st.Unsettled, st.Buffered = c.Unsettled()
	}
	st.ConnectErr = c.conns.last()
	st.AuthErr = c.auth.lastErr()
	return st
}

// Unsettled reports the records handed to the handler and not yet settled,
// and the records buffered (fetched and not settled), across partitions.
func (c *Consumer) Unsettled() (handed, buffered int64) {
	handed = c.flow.outRecords.Load()
	return handed, handed + c.flow.pendRecords.Load()
}

// Assigned returns the partitions this member owns now, sorted.
func (c *Consumer) Assigned() []pipeline.TopicPartition {
	c.mu.Lock()
	tps := make([]pipeline.TopicPartition, 0, len(c.owned))
	for tp := range c.owned {
		tps = append(tps, tp)
	}
	c.mu.Unlock()
	sortTPs(tps)
	return tps
}

// Paused returns the partitions whose fetching is paused now, sorted.
func (c *Consumer) Paused() []pipeline.TopicPartition {
	return flatten(c.cl.PauseFetchPartitions(nil))
}

func flatten(m map[string][]int32) []pipeline.TopicPartition {
	var tps []pipeline.TopicPartition
	for t, ps := range m {
		for _, p := range ps {
			tps = append(tps, pipeline.TopicPartition{Topic: t, Partition: p})
		}
	}
	sortTPs(tps)
	return tps
}

func sortTPs(tps []pipeline.TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}

func partitionsOf(ps []*partition) []pipeline.TopicPartition {
	tps := make([]pipeline.TopicPartition, len(ps))
	for i, p := range ps {
		tps[i] = p.tp
	}
	return tps
}

func tpStrings(tps []pipeline.TopicPartition) []string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = tp.String()
	}
	return s
}
