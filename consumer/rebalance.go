package consumer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// onAssigned starts a partition for each assigned partition.
// The consumer counts as joined once they are started and the hooks told,
// so that whoever sees Status().Joined (a readiness probe) also sees the
// partitions: franz-go calls this after every join, even with nothing new.
func (c *Consumer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	defer c.joined.Store(true)
	c.auth.ok("", AuthGroup)
	tps := flatten(assigned)
	if len(tps) == 0 {
		return
	}
	for _, tp := range tps {
		c.start(tp)
	}
	c.log.Info("partitions assigned", "partitions", tpStrings(tps))
	each(c.hooks, func(h HookAssigned) { h.OnAssigned(tps) })
}

// start opens the handler for tp and starts its feeder.
func (c *Consumer) start(tp pipeline.TopicPartition) *partition {
	p := newPartition(c, tp)
	part, err := c.openPartition(p.ctx, tp)
	if err != nil {
		p.cancel()
		// Without a handler the partition cannot be consumed: pause it
		// so nothing is fetched, and stop the consumer.
		c.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		c.fail(fmt.Errorf("open partition %s: %w", tp, err))
		return nil
	}
	p.part = part
	c.flow.add(p)
	c.mu.Lock()
	c.owned[tp] = p
	c.mu.Unlock()
	go p.feed()
	return p
}

// onRevoked drains the revoked partitions and commits their watermarks
// before the rebalance may continue.
func (c *Consumer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ps := c.disown(revoked)
	if len(ps) == 0 {
		return
	}
	if c.txn != nil {
		// The transaction in progress aborts (the session saw the
		// revoke): the partitions' work since the last commit is
		// discarded and their next owner does it again, so there is
		// nothing to drain.
		c.retire(ps)
		tps := partitionsOf(ps)
		c.log.Info("partitions revoked; the transaction in progress will abort", "partitions", tpStrings(tps))
		each(c.hooks, func(h HookRevoked) { h.OnRevoked(tps, 0, false) })
		return
	}
	began := time.Now()
	timedOut := c.drain(ps)
	took := time.Since(began)
	c.commitFinal(ctx, ps, "revoke")
	c.release(ps)
	tps := partitionsOf(ps)
	c.log.Info("partitions revoked", "partitions", tpStrings(tps), "drain", took, "drain_timed_out", timedOut)
	each(c.hooks, func(h HookRevoked) { h.OnRevoked(tps, took, timedOut) })
}

// onLost cancels the lost partitions' work and commits nothing for them:
// another member may own them already.
func (c *Consumer) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.joined.Store(false)
	ps := c.disown(lost)
	if len(ps) == 0 {
		return
	}
	c.retire(ps)
	tps := partitionsOf(ps)
	c.log.Warn("partitions lost; their in-flight work was cancelled and not committed", "partitions", tpStrings(tps))
	each(c.hooks, func(h HookLost) { h.OnLost(tps) })
}

// retire stops partitions whose offsets must not be committed (lost, or
// their log went back): their work is cancelled, their handlers closed
// within CloseGrace, and what they held released.
func (c *Consumer) retire(ps []*partition) {
	for _, p := range ps {
		p.cancel()
	}
	c.awaitClosed(ps, c.cfg.closeGrace)
	c.release(ps)
}

// disown removes the partitions from the owned set and returns them.
func (c *Consumer) disown(tps map[string][]int32) []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []*partition
	for _, tp := range flatten(tps) {
		if p := c.owned[tp]; p != nil {
			delete(c.owned, tp)
			ps = append(ps, p)
		}
	}
	return ps
}

// drain stops feeding ps, lets their handed-over records finish within the
// drain timeout, and then cancels what is left. It reports whether the
// timeout cut the drain short.
func (c *Consumer) drain(ps []*partition) (timedOut bool) {
	t := time.NewTimer(c.cfg.drainTimeout)
	defer t.Stop()
	closing := c.closeAll(ps)
	select {
	case <-closing:
		return false
	case <-t.C:
	case <-c.workCtx.Done(): // Stop
	}
	for _, p := range ps {
		p.cancel()
	}
	c.await(ps, closing, c.cfg.closeGrace)
	return true
}

// awaitClosed stops ps and waits up to grace for their handlers to close.
func (c *Consumer) awaitClosed(ps []*partition, grace time.Duration) {
	c.await(ps, c.closeAll(ps), grace)
}

// closeAll stops the feeders of ps and closes their handlers, all at once;
// the returned channel is closed when every handler has closed.
func (c *Consumer) closeAll(ps []*partition) <-chan struct{} {
	all := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range ps {
		p.stopFeed()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-p.fed
			p.part.Close()
			close(p.closed)
		}()
	}
	go func() {
		wg.Wait()
		close(all)
	}()
	return all
}

func (c *Consumer) await(ps []*partition, closing <-chan struct{}, grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-closing:
	case <-t.C:
		var stuck []string
		for _, p := range ps {
			select {
			case <-p.closed:
			default:
				stuck = append(stuck, p.tp.String())
			}
		}
		c.log.Error("handler ignored cancellation; abandoning its goroutines so the group can move on",
			"partitions", stuck, "grace", grace)
	}
}

// release gives back what the stopped partitions held and clears their
// pauses, so that a later assignment starts unpaused.
func (c *Consumer) release(ps []*partition) { c.flow.remove(ps) }
