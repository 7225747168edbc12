package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// Run joins the group and consumes until ctx is cancelled, Close or Stop is
// called, or a fatal error occurs. Then it drains: it stops fetching, lets
// in-flight records settle within the drain timeout, commits the settled
// watermarks, leaves the group and closes the client. It returns nil after a
// clean shutdown; the fatal error that stopped it; or a *CommitError
// (ErrNotCommitted) when the final commits did not land, so that the
// partitions' next owners handle settled records again.
//
// Run may be called once. Close, Stop and Run are safe in any order, any
// number of times, from any goroutine: Run after Close returns ErrClosed,
// and a second Run returns ErrRunning (while running) or ErrClosed.
func (c *Consumer) Run(ctx context.Context) error {
	c.stateMu.Lock()
	switch c.state {
	case running:
		c.stateMu.Unlock()
		return ErrRunning
	case done:
		c.stateMu.Unlock()
		return ErrClosed
	}
	c.state = running
	pollCtx, stop := context.WithCancel(ctx)
	c.runStop = stop
	c.stateMu.Unlock()
	defer close(c.runDone)
	defer stop()
	if c.cfg.share != nil {
		return c.runShare(pollCtx)
	}

	commitCtx, stopCommits := context.WithCancel(context.Background())
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		c.commitLoop(commitCtx)
	}()

	c.log.Info("consumer starting", "topics", c.cfg.topics, "brokers", c.cfg.conn.Brokers, "exactly_once", c.txn != nil)
	if c.txn != nil {
		if err := c.beginTxn(); err != nil {
			c.fail(err)
		}
	}
	c.cl.AddConsumeTopics(c.cfg.topics...)
	// poll returns with rebalances held (BlockRebalanceOnPoll): a
	// rebalance that another member starts now cannot take this member
	// into JoinGroup, where franz-go would hold the final commits below
	// until the whole group has rejoined. The member keeps heartbeating,
	// and the broker accepts commits of the current generation while it
	// prepares the rebalance.
	c.poll(pollCtx)

	stopCommits()
	<-committed
	uncommitted := c.drainForShutdown()
	c.cl.AllowRebalance()
	c.closeClient()
	c.cancelWork()

	c.joined.Store(false)
	c.stateMu.Lock()
	c.state = done
	err := c.fatalErr
	c.stateMu.Unlock()
	if err == nil && uncommitted != nil {
		err = uncommitted
	}
	if uncommitted != nil {
		c.log.Error("consumer stopped; its final commits did not land", "err", uncommitted)
	} else {
		c.log.Info("consumer stopped")
	}
	return err
}

// drainForShutdown drains and commits every owned partition, as a revoke
// does, before the client leaves the group: the shutdown's commits do not
// depend on how long leaving takes. It returns the commits that did not
// land, as a *CommitError.
func (c *Consumer) drainForShutdown() error {
	c.mu.Lock()
	all := map[string][]int32{}
	for tp := range c.owned {
		all[tp.Topic] = append(all[tp.Topic], tp.Partition)
	}
	c.mu.Unlock()
	if c.txn != nil {
		return c.shutdownTxn(all)
	}
	ps := c.disown(all)
	if len(ps) == 0 {
		return nil
	}
	began := time.Now()
	timedOut := c.drain(ps)
	drained := time.Now()
	failed := c.commitFinal(context.Background(), ps, "shutdown")
	c.release(ps)
	c.log.Info("partitions drained for shutdown", "partitions", tpStrings(partitionsOf(ps)),
		"drain", drained.Sub(began), "drain_timed_out", timedOut, "commit", time.Since(drained), "commit_failed", len(failed))
	if len(failed) == 0 {
		return nil
	}
	return newCommitError(failed)
}

// closeClient leaves the group and closes the client, waiting at most
// CloseGrace: franz-go waits for a pending JoinGroup before it leaves, which
// can take the rebalance timeout and more. If it takes longer, the consumer
// stops without waiting (its commits are done); the group then reassigns
// its partitions after the session timeout.
func (c *Consumer) closeClient() {
	go func() {
		defer close(c.allDone)
		c.cl.CloseAllowingRebalance()
	}()
	t := time.NewTimer(c.cfg.closeGrace)
	defer t.Stop()
	select {
	case <-c.allDone:
	case <-t.C:
		c.log.Warn("leaving the group is taking long (a rebalance is pending); stopping without waiting for it: the group reassigns this member's partitions after the session timeout",
			"waited", c.cfg.closeGrace)
	}
}

// Done is closed once the consumer has stopped completely, its client
// closed. That is when Run returns, except when leaving the group took
// longer than CloseGrace: Run then returns first (its commits are done) and
// the client finishes closing in the background. A process that exits need
// not wait for Done.
func (c *Consumer) Done() <-chan struct{} { return c.allDone }

// Close shuts down gracefully, as cancelling Run's context does, and waits
// for Run to return. If Run was never called, Close releases the client and
// a later Run returns ErrClosed. It is safe to call more than once, before,
// during or after Run, and from any goroutine.
func (c *Consumer) Close() {
	c.stateMu.Lock()
	switch c.state {
	case idle:
		c.state = done
		c.stateMu.Unlock()
		c.cl.Close()
		c.cancelWork()
		close(c.allDone)
		close(c.runDone)
		return
	case running:
		c.runStop()
	}
	c.stateMu.Unlock()
	<-c.runDone
}

// Stop shuts down at once: in-flight work is cancelled and left unsettled,
// the settled watermarks are committed, and the group is left. Use it when a
// graceful Close takes too long (a second SIGTERM). It waits for Run to
// return, and like Close it is safe in any state and more than once.
func (c *Consumer) Stop() {
	c.cancelWork()
	c.Close()
}

// fail records a fatal error and starts a graceful shutdown.
func (c *Consumer) fail(err error) {
	c.stateMu.Lock()
	if c.fatalErr == nil {
		c.fatalErr = err
	}
	if c.runStop != nil {
		c.runStop()
	}
	c.stateMu.Unlock()
	c.log.Error("consumer stopping on a fatal error", "err", err)
}

// poll fetches and routes records to their partitions until ctx is done.
// With BlockRebalanceOnPoll, no rebalance callback runs between a poll and
// the following AllowRebalance, so routing never races a revoke. It returns
// without allowing rebalances: Run does, once the shutdown's commits are
// done.
func (c *Consumer) poll(ctx context.Context) {
	var touched []*partition
	for {
		pollCtx, wake := context.WithCancel(ctx)
		if due := c.pollDeadline(); !due.IsZero() {
			// Wake for the transaction's barrier even if nothing
			// arrives: its outputs are invisible until it commits.
			pollCtx, wake = context.WithDeadline(ctx, due)
		}
		c.resetMu.Lock()
		c.wakePoll = wake
		c.resetMu.Unlock()
		fetches := c.cl.PollFetches(pollCtx)
		wake()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetched := time.Now()
		fetches.EachError(c.fetchError)
		touched = touched[:0]
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Err == nil {
				c.auth.ok(fp.Topic, AuthTopic)
			}
			if len(fp.Records) == 0 {
				return
			}
			tp := pipeline.TopicPartition{Topic: fp.Topic, Partition: fp.Partition}
			c.mu.Lock()
			p := c.owned[tp]
			c.mu.Unlock()
			if p == nil {
				return // not ours (its assignment failed to open)
			}
			if p.enqueued >= 0 && fp.Records[0].Offset < p.enqueued {
				// The log went back: the topic was deleted and
				// recreated, or truncated. The old assignment's
				// offsets mean nothing now.
				if p = c.replace(p); p == nil {
					return
				}
			}
			p.enqueue(fp.Records, fetched)
			touched = append(touched, p)
			c.ends.fetched(tp, fp)
			if c.txn != nil {
				c.txn.records += len(fp.Records)
			}
		})
		c.ends.update(c.Assigned())
		c.flow.afterFetch(touched)
		c.cl.AllowRebalance()
		c.resetRecreated()
		c.maybeBarrier()
	}
}

// openPartition opens the handler's partition for tp, turning a panic into
// an error.
func (c *Consumer) openPartition(ctx context.Context, tp pipeline.TopicPartition) (part pipeline.Partition, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	part, err = c.cfg.handler.OpenPartition(ctx, tp)
	if err == nil && part == nil {
		err = fmt.Errorf("handler returned no partition")
	}
	return part, err
}
