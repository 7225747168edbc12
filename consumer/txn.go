package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// TxnWriter writes a pipeline's outputs to Kafka inside the consumer's
// transactions: the Kafka sink's writer (package sinks/kafka) and the
// dead-letter publisher (package dlq) implement it. ExactlyOnce gives each
// one the consumer's transactional client before the consumer starts.
type TxnWriter interface {
	// InTransactions makes the writer produce through cl, whose
	// transactions the consumer begins and ends; the writer must not
	// begin, end or flush them itself.
	InTransactions(cl *kgo.Client) error
}

// ErrAborted is the error HookCommitted sees for the partitions of a
// transaction that was aborted: their records are handled again from the
// last committed offsets, and what the transaction wrote is discarded.
var ErrAborted = errors.New("consumer: transaction aborted")

// eosCfg configures exactly-once mode.
type eosCfg struct {
	txnID   string
	writers []TxnWriter
}

// ExactlyOnce makes the consumer commit its input offsets inside Kafka
// transactions together with everything the writers produce (KIP-98 and
// KIP-447): a read_committed reader of the outputs sees each input record's
// outputs exactly once, across crashes, rebalances and broker faults. The
// writers (a sinks/kafka Writer, a dlq Publisher for dead letters in the
// same transactions) produce through the consumer's client.
//
// transactionalID names this member's producer. Give each member its own,
// stable across restarts (the host or pod name, say): a restarted member
// with the same ID fences its previous incarnation's open transaction at
// once, where a new ID leaves it open until the transaction timeout
// (RebalanceTimeout), blocking read_committed readers of its outputs.
//
// How it works: every CommitInterval the poll loop stops fetching, lets
// every fetched record be handed over and settle (a barrier, bounded by
// DrainTimeout), and ends the transaction with the offsets after the last
// record of each partition; then it begins the next one. A transaction
// therefore never holds outputs of a record whose offset it does not
// commit. A barrier that does not finish within DrainTimeout, a rebalance
// that revokes or loses partitions during a transaction, or a commit the
// group rejects (a fenced, zombie member) aborts the transaction: its
// outputs are discarded and every partition is handled again from the last
// committed offsets. The cost is the barrier (fetching pauses while the
// pipeline empties) and the work redone after an abort; see the package
// documentation.
//
// Inputs are read with read_committed isolation. Stages that hold records
// until a timer fires (processing-time windows, a long Batch linger) hold
// the barrier until they emit: keep them short with exactly once.
func ExactlyOnce(transactionalID string, writers ...TxnWriter) Opt {
	return optFunc(func(c *cfg) {
		c.eos = &eosCfg{txnID: transactionalID, writers: writers}
	})
}

// txnState is the transactional client of exactly-once mode.
type txnState struct {
	sess    *kgo.GroupTransactSession
	due     time.Time // when the next barrier is due
	began   time.Time
	aborted int // transactions aborted in a row
}

// validateEOS checks the exactly-once configuration.
func (c *cfg) validateEOS() error {
	if c.eos == nil {
		return nil
	}
	bad := func(format string, args ...any) error {
		return &ConfigError{Field: "ExactlyOnce", Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.eos.txnID == "":
		return bad("a transactional ID is required")
	case len(c.eos.writers) == 0:
		return bad("no writer: give the Kafka sink's writer (and the dead-letter publisher) that produce inside the transactions")
	}
	for i, w := range c.eos.writers {
		if w == nil {
			return bad("writer %d is nil", i)
		}
	}
	return nil
}

// eosClientOpts are the client options of exactly-once mode.
func (c *cfg) eosClientOpts() []kgo.Opt {
	if c.eos == nil {
		return nil
	}
	return []kgo.Opt{
		kgo.TransactionalID(c.eos.txnID),
		// A transaction lives at most a barrier (DrainTimeout) past
		// CommitInterval; the broker aborts one that outlives this.
		kgo.TransactionTimeout(c.rebalanceTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Sinks wait for their outputs; batches form while a produce
		// request is in flight, so lingering would only add latency.
		kgo.ProducerLinger(0),
	}
}

// newTxnClient creates the transactional client of exactly-once mode: a
// kgo.GroupTransactSession, which aborts the transaction in progress when
// partitions are revoked or lost, and commits offsets with the group's
// generation so that the group coordinator fences a zombie member.
func newTxnClient(opts []kgo.Opt) (*kgo.Client, *txnState, error) {
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, nil, err
	}
	return sess.Client(), &txnState{sess: sess}, nil
}

// beginTxn begins a transaction and schedules its barrier.
func (c *Consumer) beginTxn() error {
	if err := c.txn.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	c.txn.began = time.Now()
	c.txn.due = c.txn.began.Add(c.cfg.commitInterval)
	return nil
}

// pollDeadline is when the poll loop must wake for the next barrier; zero
// without transactions.
func (c *Consumer) pollDeadline() time.Time {
	if c.txn == nil {
		return time.Time{}
	}
	return c.txn.due
}

// maybeBarrier ends the transaction if its barrier is due and begins the
// next one. The poll loop calls it between polls, holding no fetched
// records.
func (c *Consumer) maybeBarrier() {
	if c.txn == nil || time.Now().Before(c.txn.due) {
		return
	}
	c.endTxn("interval", c.cfg.drainTimeout)
	if err := c.beginTxn(); err != nil {
		c.fail(err)
	}
}

// endTxn hands over and settles every fetched record within timeout, then
// ends the transaction: committed with the offsets after each partition's
// last record if everything settled, aborted otherwise. After an abort
// every partition is handled again from its last committed offset. why
// says what ended the transaction, for the logs.
func (c *Consumer) endTxn(why string, timeout time.Duration) (committed bool, offsets map[pipeline.TopicPartition]int64) {
	began := time.Now()
	idle := c.flow.waitIdle(timeout, c.workCtx.Done())
	ps := c.ownedPartitions()
	offsets = map[pipeline.TopicPartition]int64{}
	for _, p := range ps {
		if eo, ok := p.watermark(); ok {
			offsets[p.tp] = eo.Offset
		}
	}
	try := kgo.TryAbort
	reason := ""
	switch {
	case !idle:
		reason = "records did not settle within the barrier timeout"
	case !c.polledMatches(offsets):
		reason = "a fetched record was not handled"
	default:
		try = kgo.TryCommit
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.finalCommitTimeout())
	defer cancel()
	committed, err := c.txn.sess.End(ctx, try)
	took := time.Since(began)
	switch {
	case committed:
		c.txn.aborted = 0
		for tp, off := range offsets {
			c.markCommittedTP(tp, off)
			each(c.hooks, func(h HookCommitted) { h.OnCommitted(tp, off, nil) })
		}
		c.log.Debug("transaction committed", "on", why, "partitions", len(offsets), "took", took)
		return true, offsets
	case reason == "" && err == nil:
		reason = "a rebalance revoked or lost partitions during the transaction, or the group refused its offsets"
	}
	c.txn.aborted++
	abortErr := ErrAborted
	if err != nil {
		abortErr = fmt.Errorf("%w: %w", ErrAborted, err)
	}
	for tp, off := range offsets {
		each(c.hooks, func(h HookCommitted) { h.OnCommitted(tp, off, abortErr) })
	}
	c.log.Warn("transaction aborted: its outputs are discarded and records are handled again from the last committed offsets",
		"on", why, "reason", reason, "err", err, "took", took, "aborted_in_a_row", c.txn.aborted)
	if err != nil && fatalTxnErr(err) {
		c.fail(fmt.Errorf("end transaction: %w", err))
		return false, offsets
	}
	if why != "shutdown" {
		c.rewindAll()
	}
	return false, offsets
}

// fatalTxnErr reports whether err leaves the transactional producer unable
// to go on: fenced by a newer member with the same transactional ID, or
// refused by the broker's configuration or ACLs.
func fatalTxnErr(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.InvalidTransactionTimeout) ||
		errors.Is(err, kerr.InvalidProducerIDMapping) || errors.Is(err, kerr.TransactionCoordinatorFenced)
}

// polledMatches reports whether the offsets about to be committed are the
// offsets after the last record polled of each partition: End commits the
// latter, so any record polled and not handled would be skipped.
func (c *Consumer) polledMatches(offsets map[pipeline.TopicPartition]int64) bool {
	for topic, ps := range c.cl.UncommittedOffsets() {
		for partition, eo := range ps {
			tp := pipeline.TopicPartition{Topic: topic, Partition: partition}
			if off, ok := offsets[tp]; !ok || off != eo.Offset {
				c.log.Error("transaction would commit past unhandled records; aborting it", "partition", tp.String(),
					"polled", eo.Offset, "settled", offsets[tp])
				return false
			}
		}
	}
	return true
}

// markCommittedTP notes a commit of tp, if this member still owns it.
func (c *Consumer) markCommittedTP(tp pipeline.TopicPartition, off int64) {
	c.mu.Lock()
	p := c.owned[tp]
	c.mu.Unlock()
	if p != nil {
		p.markCommitted(off)
	}
}

// rewindAll restarts every owned partition after an aborted transaction:
// the session has reset the client's fetch positions to the committed
// offsets, and each partition starts over from there with a fresh handler.
// It runs in the poll loop, which holds no fetched records.
func (c *Consumer) rewindAll() {
	all := map[string][]int32{}
	for _, tp := range c.Assigned() {
		all[tp.Topic] = append(all[tp.Topic], tp.Partition)
	}
	ps := c.disown(all)
	if len(ps) == 0 {
		return
	}
	c.retire(ps)
	for _, p := range ps {
		c.start(p.tp)
	}
}

// shutdownTxn ends exactly-once consumption: every fetched record is
// handed over and settled within DrainTimeout and the last transaction
// commits; if they do not settle in time (or Stop was called) it aborts, the
// partitions' next owners handle their records since the last commit, and
// it returns a *CommitError (ErrAborted).
func (c *Consumer) shutdownTxn(all map[string][]int32) error {
	began := time.Now()
	committed, offsets := c.endTxn("shutdown", c.cfg.drainTimeout)
	ps := c.disown(all)
	for _, p := range ps {
		p.cancel()
	}
	c.awaitClosed(ps, c.cfg.closeGrace)
	c.release(ps)
	c.log.Info("partitions drained for shutdown", "partitions", tpStrings(partitionsOf(ps)), "took", time.Since(began),
		"committed", committed)
	if committed || len(offsets) == 0 {
		return nil
	}
	failed := map[pipeline.TopicPartition]commitFailure{}
	for tp, off := range offsets {
		failed[tp] = commitFailure{offset: off, err: ErrAborted}
	}
	return newCommitError(failed)
}
