package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
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
// once, where a new ID leaves it open until the transaction timeout (see
// TransactionTimeout), blocking read_committed readers of its outputs.
//
// How it works: every CommitInterval the poll loop stops fetching, lets
// every fetched record be handed over and settle (a barrier, bounded by
// DrainTimeout), and ends the transaction with the offsets after the last
// record of each partition; then it begins the next one. Once the consumer
// has read everything there is (every owned partition's last fetch reached
// the end of its log) it does not wait for the rest of the interval: the
// transaction ends a quarter of CommitInterval after it began, so that
// outputs become visible sooner when there is no backlog. A transaction
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

// Kafka's default cap on a producer's transaction timeout
// (transaction.max.timeout.ms): a broker refuses a longer one.
const maxTxnTimeout = 15 * time.Minute

// txnSlack is the part of the transaction timeout left for ending a
// transaction that the commit gave up on: the commit must finish this long
// before the broker could abort the transaction by timeout.
const txnSlack = 5 * time.Second

// TransactionTimeout sets the transaction timeout of exactly-once mode: how
// long the broker lets a transaction stay open before it aborts it and bumps
// the producer's epoch. The default covers the longest a transaction lasts:
// CommitInterval until its barrier, DrainTimeout for the barrier, then its
// commit, which may wait up to RebalanceTimeout for a rebalance (or retry
// through a coordinator outage), plus a margin of 15s. The consumer gives
// up on a commit, and aborts, 5s before the timeout, so that a
// transaction is ended by the member and not by the broker.
//
// It must exceed CommitInterval + DrainTimeout + 5s and not exceed 15m, the
// default of the broker's transaction.max.timeout.ms (a broker refuses a
// longer timeout). A longer timeout does not slow anything down; it only
// bounds how long a crashed member's open transaction, with a new
// transactional ID, blocks read_committed readers.
func TransactionTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.txnTimeout = d }) }

// transactionTimeout is the transaction timeout: TransactionTimeout, or the
// default that covers a transaction's barrier and commit.
func (c *cfg) transactionTimeout() time.Duration {
	if c.txnTimeout > 0 {
		return c.txnTimeout
	}
	return c.commitInterval + c.drainTimeout + c.rebalanceTimeout + commitTimeout + txnSlack
}

// txnTimeout is the client's transaction timeout: TransactionTimeout or
// its default, unless ClientOpts set kgo.TransactionTimeout.
func (c *Consumer) txnTimeout() time.Duration {
	if d, ok := c.cl.OptValue(kgo.TransactionTimeout).(time.Duration); ok && d > 0 {
		return d
	}
	return c.cfg.transactionTimeout()
}

// txnState is the transactional client of exactly-once mode.
type txnState struct {
	sess    *kgo.GroupTransactSession
	due     time.Time // when the next barrier is due
	began   time.Time
	aborted int // transactions aborted in a row
	records int // records fetched since the transaction began
}

// validateEOS checks the exactly-once configuration.
func (c *cfg) validateEOS() error {
	if c.eos == nil {
		if c.txnTimeout != 0 {
			return &sluice.ConfigError{Package: "consumer", Option: "TransactionTimeout", Reason: "applies only with ExactlyOnce"}
		}
		return nil
	}
	bad := func(format string, args ...any) error {
		return &sluice.ConfigError{Package: "consumer", Option: "ExactlyOnce", Reason: fmt.Sprintf(format, args...)}
	}
	timeout := c.transactionTimeout()
	switch {
	case c.txnTimeout < 0:
		return &sluice.ConfigError{Package: "consumer", Option: "TransactionTimeout", Reason: fmt.Sprintf("must not be negative, got %v", c.txnTimeout)}
	case timeout > maxTxnTimeout:
		return &sluice.ConfigError{Package: "consumer", Option: "TransactionTimeout", Reason: fmt.Sprintf("%v exceeds %v, the default of the broker's transaction.max.timeout.ms "+
			"(default: CommitInterval + DrainTimeout + RebalanceTimeout + %v); shorten those timeouts", timeout, maxTxnTimeout, commitTimeout+txnSlack)}
	case timeout <= c.commitInterval+c.drainTimeout+txnSlack:
		return &sluice.ConfigError{Package: "consumer", Option: "TransactionTimeout", Reason: fmt.Sprintf("%v must exceed CommitInterval + DrainTimeout + %v (%v), "+
			"or the broker aborts transactions before their barrier commits them", timeout, txnSlack, c.commitInterval+c.drainTimeout+txnSlack)}
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
		// A transaction lives CommitInterval, then its barrier
		// (DrainTimeout), then its commit; the broker aborts one
		// that outlives this.
		kgo.TransactionTimeout(c.transactionTimeout()),
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
	c.txn.records = 0
	return nil
}

// pollDeadline is when the poll loop must wake for the next barrier; zero
// without transactions.
func (c *Consumer) pollDeadline() time.Time {
	if c.txn == nil {
		return time.Time{}
	}
	if early := c.earlyDue(); !early.IsZero() && early.Before(c.txn.due) {
		return early
	}
	return c.txn.due
}

// earlyDue is when the transaction may end before its interval is over,
// and zero if it may not: once it wrote something (it fetched records) and
// the consumer has read everything there is (logEnds), ending it makes its
// outputs visible to read_committed readers a whole interval sooner, at no
// cost in throughput (no backlog waits behind the barrier). It waits for a
// quarter of CommitInterval, so that a trickle of records does not end a
// transaction per fetch.
func (c *Consumer) earlyDue() time.Time {
	if c.txn.records == 0 || !c.ends.caughtUp.Load() {
		return time.Time{}
	}
	return c.txn.began.Add(c.cfg.commitInterval / earlyFraction)
}

// maybeBarrier ends the transaction if its barrier is due and begins the
// next one. The poll loop calls it between polls, holding no fetched
// records. A transaction that fetched nothing has nothing to commit and
// nothing on the broker (the broker opens a transaction at its first
// write), so it is kept open for another interval instead: ending an empty
// transaction costs franz-go's GroupTransactSession a 500ms pause when it
// cannot tell that the broker supports KIP-447.
func (c *Consumer) maybeBarrier() {
	if c.txn == nil {
		return
	}
	now := time.Now()
	if now.Before(c.pollDeadline()) { // the interval's end, or earlyDue's
		return
	}
	if c.txn.records == 0 {
		// Nothing written yet: the broker's timer for this transaction
		// has not started, so it may count from now.
		c.txn.began = time.Now()
		c.txn.due = c.txn.began.Add(c.cfg.commitInterval)
		return
	}
	why := "interval"
	if now.Before(c.txn.due) {
		why = "caught up"
	}
	c.endTxn(why, c.cfg.drainTimeout)
	if err := c.beginTxn(); err != nil {
		c.fail(err)
	}
}

// endTxn hands over and settles every fetched record within timeout, then
// ends the transaction: committed with the offsets after each partition's
// last record if everything settled, aborted otherwise. After an abort
// every partition is handled again from its last committed offset. why
// says what ended the transaction, for the logs.
//
// An end that fails (its commit refused, its EndTxn of unknown outcome, a
// broker that aborted the transaction by timeout) is resolved before the
// next Begin: the transaction is aborted again until the abort succeeds
// (franz-go's End(TryAbort), which re-initialises the producer after an
// unknown outcome: the new epoch aborts whatever is still open), and the
// positions rewind to the offsets the group holds, so that a commit the
// broker applied although its answer was lost is not handled again. A
// producer the broker fenced for good fails the next Begin.
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
	if idle && c.txn.records == 0 && len(offsets) == 0 {
		return c.endEmptyTxn(why, began), offsets
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
	ctx, cancel := context.WithDeadline(context.Background(), c.endDeadline())
	committed, err := c.txn.sess.End(ctx, try)
	cancel()
	if err != nil {
		if rerr := c.resolveTxn(err); rerr != nil {
			c.fail(rerr)
			return false, offsets
		}
		if perr := c.producerUsable(); perr != nil {
			c.fail(perr)
			return false, offsets
		}
		if try == kgo.TryCommit && c.appliedAfterAll(offsets) {
			committed = true
			c.log.Warn("transaction end failed, but the group holds its offsets: the broker committed it", "on", why, "err", err)
		}
	}
	took := time.Since(began)
	switch {
	case committed:
		c.txn.aborted = 0
		for tp, off := range offsets {
			c.markCommittedTP(tp, off)
			each(c.hooks, func(h HookCommitted) { h.OnCommitted(tp, off, nil) })
		}
		c.log.Debug("transaction committed", "on", why, "partitions", len(offsets), "took", took)
		if err != nil && why != "shutdown" {
			c.rewindAll() // the failed end reset the client's positions; they start again from the group's
		}
		return true, offsets
	case reason == "" && err == nil:
		reason = "a rebalance revoked or lost partitions during the transaction, or the group refused its offsets"
	case reason == "":
		reason = "its commit or its end failed"
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
	if why != "shutdown" {
		c.rewindAll()
	}
	return false, offsets
}

// endEmptyTxn ends a transaction that fetched no record: nothing was handed
// over since the last end, so nothing was written and there is no offset to
// commit (only a shutdown ends one; the interval keeps it open). It ends
// with an abort, which sends nothing when nothing was written: a commit
// without offsets would cost franz-go's GroupTransactSession a 500ms pause
// (it cannot tell that the broker supports KIP-447), and the shutdown would
// wait for it. It reports true: there was nothing to lose.
func (c *Consumer) endEmptyTxn(why string, began time.Time) bool {
	ctx, cancel := context.WithDeadline(context.Background(), c.endDeadline())
	_, err := c.txn.sess.End(ctx, kgo.TryAbort)
	cancel()
	if err != nil {
		if rerr := c.resolveTxn(err); rerr != nil {
			c.fail(rerr)
			return false
		}
	}
	c.log.Debug("transaction ended with nothing to commit", "on", why, "took", time.Since(began))
	return true
}

// endDeadline is when the current transaction's end must give up on its
// commit and abort: txnSlack before the broker could abort it by timeout,
// and at most finalCommitTimeout from now (a commit held by a rebalance).
func (c *Consumer) endDeadline() time.Time {
	d := c.txn.began.Add(c.txnTimeout() - txnSlack)
	if limit := time.Now().Add(c.finalCommitTimeout()); limit.Before(d) {
		d = limit
	}
	if least := time.Now().Add(time.Second); d.Before(least) {
		d = least // the barrier itself ran late: still try
	}
	return d
}

// resolveTxn makes sure no transaction is open after an End that failed
// with err: it aborts again (End with TryAbort, which after an EndTxn of
// unknown outcome re-initialises the producer, bumping its epoch and so
// aborting whatever the broker still has open) until the abort succeeds,
// for at most the transaction timeout. It returns an error only if the
// transaction cannot be resolved (the consumer must stop).
func (c *Consumer) resolveTxn(err error) error {
	deadline := time.Now().Add(c.txnTimeout())
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c.log.Warn("transaction end failed; aborting it before the next one begins", "err", err, "attempt", attempt)
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		_, err = c.txn.sess.End(ctx, kgo.TryAbort)
		cancel()
		switch {
		case err == nil:
			return nil
		case fatalTxnErr(err):
			return fmt.Errorf("end transaction: %w", err)
		case time.Now().Add(backoff).After(deadline):
			return fmt.Errorf("end transaction: the abort of a failed transaction did not succeed within %v: %w", c.txnTimeout(), err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.workCtx.Done():
			t.Stop()
			return fmt.Errorf("end transaction: stopped while aborting a failed transaction: %w", err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// producerUsable fails fast for a producer the broker fenced for good,
// before the consumer waits for the group's offsets: franz-go keeps the
// fatal error, and the next Begin would fail with it anyway.
func (c *Consumer) producerUsable() error {
	ctx, cancel := context.WithTimeout(c.workCtx, commitTimeout)
	defer cancel()
	if _, _, err := c.cl.ProducerID(ctx); err != nil && fatalTxnErr(err) {
		return fmt.Errorf("end transaction: the producer is fenced: %w", err)
	}
	return nil
}

// appliedAfterAll reads the offsets the group holds for the owned
// partitions (waiting for pending transactional ones to settle) after a
// transaction whose end failed, and starts the partitions from them: an
// EndTxn of unknown outcome may have committed, and rewinding to the
// offsets before it would hand the committed records over again (their
// outputs read twice by a read_committed reader). It reports whether the
// group holds exactly the offsets the transaction tried to commit, i.e.
// the transaction committed, and fails the consumer if the group's offsets
// cannot be read within the transaction timeout (by when every pending
// transaction has ended).
func (c *Consumer) appliedAfterAll(offsets map[pipeline.TopicPartition]int64) bool {
	if len(offsets) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(c.workCtx, c.txnTimeout())
	defer cancel()
	adm := kadm.NewClient(c.cl)
	backoff := 50 * time.Millisecond
	for {
		got, err := adm.FetchOffsets(kadm.RequireStable(ctx), c.cfg.group)
		if err == nil {
			err = c.offsetsErr(got, offsets)
		}
		if err == nil {
			return c.rewindTo(got, offsets)
		}
		c.log.Debug("reading the group's offsets after a failed transaction end", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.fail(fmt.Errorf("end transaction: the group's offsets could not be read after a transaction end of unknown outcome: %w", err))
			return false
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// offsetsErr is the first error among the owned and tried partitions of an
// offset fetch (UNSTABLE_OFFSET_COMMIT while a transaction holds pending
// offsets).
func (c *Consumer) offsetsErr(got kadm.OffsetResponses, tried map[pipeline.TopicPartition]int64) error {
	check := func(tp pipeline.TopicPartition) error {
		if r, ok := got.Lookup(tp.Topic, tp.Partition); ok && r.Err != nil {
			return fmt.Errorf("partition %s: %w", tp, r.Err)
		}
		return nil
	}
	for _, tp := range c.Assigned() {
		if err := check(tp); err != nil {
			return err
		}
	}
	for tp := range tried {
		if err := check(tp); err != nil {
			return err
		}
	}
	return nil
}

// rewindTo sets the fetch positions of the owned partitions to the offsets
// the group holds and reports whether those are the offsets tried.
func (c *Consumer) rewindTo(got kadm.OffsetResponses, tried map[pipeline.TopicPartition]int64) bool {
	set := map[string]map[int32]kgo.EpochOffset{}
	for _, tp := range c.Assigned() {
		r, ok := got.Lookup(tp.Topic, tp.Partition)
		if !ok || r.At < 0 {
			continue
		}
		if set[tp.Topic] == nil {
			set[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.At}
	}
	applied := true
	for tp, off := range tried {
		if r, ok := got.Lookup(tp.Topic, tp.Partition); !ok || r.At != off {
			applied = false
		}
	}
	c.cl.SetOffsets(set)
	return applied
}

// fatalTxnErr reports whether an abort that failed with err leaves the
// transactional producer unable to go on: fenced by a newer member with
// the same transactional ID, or refused by the broker's configuration or
// ACLs.
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
	c.ends.reset() // the partitions read again from their committed offsets
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
