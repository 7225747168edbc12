package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/pipeline"
)

// commitTimeout bounds a periodic commit, retries included.
const commitTimeout = 10 * time.Second

// finalCommitTimeout bounds a commit that must land before partitions move
// to another member: on revoke and at shutdown. franz-go holds commits
// while the member is in JoinGroup or SyncGroup, and a rebalance can keep
// it there for up to the rebalance timeout (the broker waits that long for
// a slow member to rejoin), so the commit gets that long on top of
// commitTimeout. It is only waited for when a rebalance is under way.
func (c *Consumer) finalCommitTimeout() time.Duration {
	return c.cfg.rebalanceTimeout + commitTimeout
}

// errNoAnswer is the error of a partition the broker's commit response
// did not mention.
var errNoAnswer = errors.New("the commit response did not mention the partition")

// commitLoop commits owned partitions' watermarks every interval.
func (c *Consumer) commitLoop(ctx context.Context) {
	// It wakes every quarter interval: at least once, a consumer that has
	// read everything there is commits then (logEnds); the rest waits for
	// the interval.
	t := time.NewTicker(max(c.cfg.commitInterval/earlyFraction, 1))
	defer t.Stop()
	started := time.Now()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if tick%earlyFraction != 0 {
			if c.txn == nil && c.ends.caughtUp.Load() {
				c.commitOwned(ctx, c.ownedPartitions())
			}
			continue
		}
		ps := c.ownedPartitions()
		now := time.Now()
		c.reportNotJoined(started, now)
		for _, p := range ps {
			p.observeProgress(now)
		}
		if c.txn != nil {
			continue // offsets commit with the transactions
		}
		c.commitOwned(ctx, ps)
	}
}

// commitOwned commits the watermarks of ps that moved, logging a failure
// (the next commit retries).
func (c *Consumer) commitOwned(ctx context.Context, ps []*partition) {
	if failed := c.commit(ctx, ps, commitTimeout); len(failed) > 0 {
		err := firstErr(failed)
		c.log.Warn("commit failed; the next commit retries", "partitions", len(failed), "err", err)
	}
}

func (c *Consumer) ownedPartitions() []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]*partition, 0, len(c.owned))
	for _, p := range c.owned {
		ps = append(ps, p)
	}
	return ps
}

// commitFinal commits the watermarks of partitions about to move to
// another member (why: "revoke" or "shutdown"), and reports those that did
// not land: at ERROR, because their next owner handles the settled records
// after the last committed offset again.
func (c *Consumer) commitFinal(ctx context.Context, ps []*partition, why string) map[pipeline.TopicPartition]commitFailure {
	deadline := time.Now().Add(c.finalCommitTimeout())
	failed := c.commit(ctx, ps, c.finalCommitTimeout())
	failed = c.retryStale(ctx, ps, failed, deadline)
	for tp, f := range failed {
		c.log.Error("final commit failed: the partition's next owner will handle its settled records again", "on", why,
			"partition", tp.String(), "offset", f.offset, "err", f.err)
	}
	return failed
}

// commitFailure is a partition whose commit did not land.
type commitFailure struct {
	offset int64
	err    error
}

// commit commits the watermarks of ps that moved, synchronously, within
// timeout, and returns the partitions whose commit failed. Each partition's
// result goes to HookCommitted.
func (c *Consumer) commit(ctx context.Context, ps []*partition, timeout time.Duration) map[pipeline.TopicPartition]commitFailure {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	byTP := map[pipeline.TopicPartition]*partition{}
	for _, p := range ps {
		eo, ok := p.watermark()
		if !ok {
			continue
		}
		if offsets[p.tp.Topic] == nil {
			offsets[p.tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.tp.Topic][p.tp.Partition] = eo
		byTP[p.tp] = p
	}
	if len(byTP) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var failed map[pipeline.TopicPartition]commitFailure
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		for tp, perr := range commitResults(offsets, req, resp, err) {
			off := offsets[tp.Topic][tp.Partition].Offset
			if perr == nil {
				byTP[tp].markCommitted(off)
			} else {
				if errors.Is(perr, kerr.UnknownTopicID) {
					c.markRecreated(tp.Topic)
				}
				if failed == nil {
					failed = map[pipeline.TopicPartition]commitFailure{}
				}
				failed[tp] = commitFailure{offset: off, err: perr}
			}
			each(c.hooks, func(h HookCommitted) { h.OnCommitted(tp, off, perr) })
		}
	})
	return failed
}

// commitResults gives every partition of offsets its result: err when the
// request failed as a whole, else the partition's error code in resp, or
// errNoAnswer when resp does not mention it. Responses from OffsetCommit v10
// on name topics by ID only; their names come from the request, which
// carries both.
func commitResults(offsets map[string]map[int32]kgo.EpochOffset, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) map[pipeline.TopicPartition]error {
	results := map[pipeline.TopicPartition]error{}
	for t, ps := range offsets {
		for p := range ps {
			results[pipeline.TopicPartition{Topic: t, Partition: p}] = err
		}
	}
	if err != nil {
		return results
	}
	if resp == nil {
		err = fmt.Errorf("%w (no response)", errNoAnswer)
		for tp := range results {
			results[tp] = err
		}
		return results
	}
	byID := map[[16]byte]string{}
	if req != nil {
		for _, t := range req.Topics {
			if t.TopicID != [16]byte{} {
				byID[t.TopicID] = t.Topic
			}
		}
	}
	answered := map[pipeline.TopicPartition]bool{}
	for _, t := range resp.Topics {
		name := t.Topic
		if name == "" {
			name = byID[t.TopicID]
		}
		for _, rp := range t.Partitions {
			tp := pipeline.TopicPartition{Topic: name, Partition: rp.Partition}
			if _, asked := results[tp]; !asked {
				continue
			}
			results[tp] = kerr.ErrorForCode(rp.ErrorCode)
			answered[tp] = true
		}
	}
	for tp := range results {
		if !answered[tp] {
			results[tp] = errNoAnswer
		}
	}
	return results
}

// firstErr returns one of the failures' errors, for a summary.
func firstErr(failed map[pipeline.TopicPartition]commitFailure) error {
	for _, f := range failed {
		return f.err
	}
	return nil
}
