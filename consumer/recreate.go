package consumer

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recreatedResetInterval is the least time between two resets of a topic.
const recreatedResetInterval = 5 * time.Second

// resetRecreated handles topics that were deleted and recreated: franz-go
// keeps the old topic ID and fails the topic with UNKNOWN_TOPIC_ID until it
// is purged from the client and added back. The old assignment's partitions
// are retired like lost ones (work cancelled, nothing committed: their
// offsets belong to a log that no longer exists), and the next assignment
// of the topic starts at the new log's start, not at the offsets the group
// committed for the old log, which could skip the new log's first records.
func (c *Consumer) resetRecreated() {
	c.resetMu.Lock()
	var topics []string
	now := time.Now()
	for t := range c.recreated {
		if now.Sub(c.resetAt[t]) >= recreatedResetInterval {
			topics = append(topics, t)
			c.resetAt[t] = now
			c.fromStart[t] = true
		}
		delete(c.recreated, t)
	}
	c.resetMu.Unlock()
	for _, t := range topics {
		c.log.Warn("topic was deleted and recreated: dropping its old partitions uncommitted and reading the new topic from its start", "topic", t)
		owned := map[string][]int32{}
		for _, tp := range c.Assigned() {
			if tp.Topic == t {
				owned[t] = append(owned[t], tp.Partition)
			}
		}
		if ps := c.disown(owned); len(ps) > 0 {
			c.retire(ps)
		}
		c.cl.PurgeTopicsFromClient(t)
		c.cl.AddConsumeTopics(t)
	}
}

// markRecreated notes that a subscribed topic fails with UNKNOWN_TOPIC_ID
// and wakes the poll loop to reset it.
func (c *Consumer) markRecreated(topic string) {
	if !slices.Contains(c.cfg.topics, topic) {
		return
	}
	c.resetMu.Lock()
	defer c.resetMu.Unlock()
	if !c.recreated[topic] {
		c.recreated[topic] = true
		if c.wakePoll != nil {
			c.wakePoll()
		}
	}
}

// adjustOffsets starts topics reset by resetRecreated at the log start.
func (c *Consumer) adjustOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	c.resetMu.Lock()
	defer c.resetMu.Unlock()
	for t, ps := range offsets {
		if !c.fromStart[t] {
			continue
		}
		for p := range ps {
			ps[p] = kgo.NewOffset().AtStart()
		}
		delete(c.fromStart, t)
	}
	return offsets, nil
}

// replace retires p, whose log went back, and starts a new assignment of
// the same partition. Nothing is committed for the old one.
func (c *Consumer) replace(p *partition) *partition {
	c.log.Warn("partition offsets went back (topic recreated or truncated); restarting its handling", "partition", p.tp.String(), "after", p.enqueued)
	c.disown(map[string][]int32{p.tp.Topic: {p.tp.Partition}})
	c.retire([]*partition{p})
	return c.start(p.tp)
}
