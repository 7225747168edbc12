package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/sluice-go/sluice/pipeline"
)

// ErrRunning is returned by Run when the consumer is already running or has
// run.
var ErrRunning = errors.New("consumer: Run called more than once")

// ErrClosed is returned by Run when the consumer was closed before Run.
var ErrClosed = errors.New("consumer: closed")

// commitTimeout bounds one commit request, retries included.
const commitTimeout = 10 * time.Second

// Consumer consumes a set of topics as a member of a consumer group and hands
// each assigned partition's records to a pipeline.Handler. See the package
// documentation for its guarantees.
type Consumer struct {
	cfg   cfg
	log   *slog.Logger
	hooks hooks
	cl    *kgo.Client

	// workCtx is the parent of every partition's work context; Stop
	// cancels it.
	workCtx    context.Context
	cancelWork context.CancelFunc

	mu    sync.Mutex
	owned map[pipeline.TopicPartition]*partition

	// commitMu orders periodic commits against revoke commits, so that a
	// periodic commit can never land after, and rewind, a revoke's final
	// commit.
	commitMu sync.Mutex

	// Flow control. out* count records handed to the handler and not
	// settled (partitions give settled ones back in batches, so it may run
	// a little high, never low); pend* count fetched records not handed
	// over. Buffered work is the sum.
	flowMu      sync.Mutex
	blocked     map[*partition]struct{} // feeders waiting for consumer-wide room
	blockedN    atomic.Int64
	outRecords  atomic.Int64
	outBytes    atomic.Int64
	pendRecords atomic.Int64
	pendBytes   atomic.Int64
	pauseMu     sync.Mutex
	allPaused   atomic.Bool

	joined atomic.Bool // the last group session assigned partitions (maybe none)
	conns  *connWatch  // the last broker connection error

	stateMu  sync.Mutex
	state    runState
	runStop  context.CancelFunc // cancels the poll loop: graceful shutdown
	runDone  chan struct{}
	allDone  chan struct{} // closed when the client is closed too
	fatalErr error
	errLog   map[string]time.Time // last time each fetch error was logged

	// A deleted and recreated topic fails with UNKNOWN_TOPIC_ID until the
	// client forgets it; see resetRecreated.
	resetMu   sync.Mutex
	recreated map[string]bool      // seen recreated, to be reset by the poll loop
	fromStart map[string]bool      // the next assignment starts at the log start
	resetAt   map[string]time.Time // last reset, to reset at most every few seconds
	wakePoll  context.CancelFunc   // cancels the poll in progress
}

type runState int

const (
	idle runState = iota
	running
	done
)

// Validate checks options as New does, without creating a client: use it to
// fail fast on bad configuration before anything else starts.
func Validate(opts ...Opt) error {
	_, err := configure(opts)
	return err
}

// configure applies and validates options.
func configure(opts []Opt) (cfg, error) {
	c := defaults()
	for _, o := range opts {
		o.apply(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	// A handler that can report its own configuration errors (a pipeline's
	// build errors) reports them now, not at the first assignment.
	if v, ok := c.handler.(interface{ Err() error }); ok {
		if err := v.Err(); err != nil {
			return c, &ConfigError{Field: "Handle", Reason: err.Error(), Err: err}
		}
	}
	return c, nil
}

// New validates the options and creates a consumer. It does not contact the
// brokers; Run joins the group.
func New(opts ...Opt) (*Consumer, error) {
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg}
	c.log = c.cfg.logger.With("group", c.cfg.group)
	c.hooks = c.cfg.hooks
	c.owned = make(map[pipeline.TopicPartition]*partition)
	c.blocked = make(map[*partition]struct{})
	c.errLog = make(map[string]time.Time)
	c.recreated = make(map[string]bool)
	c.fromStart = make(map[string]bool)
	c.resetAt = make(map[string]time.Time)
	c.runDone = make(chan struct{})
	c.allDone = make(chan struct{})
	c.workCtx, c.cancelWork = context.WithCancel(context.Background())
	c.conns = new(connWatch)
	// The client is created without topics, so the group is not joined
	// until Run adds them.
	cl, err := kgo.NewClient(c.cfg.clientOpts(c)...)
	if err != nil {
		c.cancelWork()
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c.cl = cl
	return c, nil
}

func kslogAdapter(l *slog.Logger) kgo.Logger { return kslog.New(l.With("lib", "franz-go")) }

// Client returns the franz-go client, for producing (dead letters) or for
// admin requests with kadm. Do not consume or commit with it.
func (c *Consumer) Client() *kgo.Client { return c.cl }

// Run joins the group and consumes until ctx is cancelled, Close or Stop is
// called, or a fatal error occurs. Then it drains: it stops fetching, lets
// in-flight records settle within the drain timeout, commits the settled
// watermarks, leaves the group and closes the client. It returns nil after a
// requested shutdown, or the fatal error.
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

	commitCtx, stopCommits := context.WithCancel(context.Background())
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		c.commitLoop(commitCtx)
	}()

	c.log.Info("consumer starting", "topics", c.cfg.topics, "brokers", c.cfg.brokers)
	c.cl.AddConsumeTopics(c.cfg.topics...)
	c.poll(pollCtx)

	stopCommits()
	<-committed
	c.drainForShutdown()
	c.closeClient()
	c.cancelWork()

	c.joined.Store(false)
	c.stateMu.Lock()
	c.state = done
	err := c.fatalErr
	c.stateMu.Unlock()
	c.log.Info("consumer stopped")
	return err
}

// drainForShutdown drains and commits every owned partition, as a revoke
// does, before the client leaves the group: the shutdown's commits do not
// depend on how long leaving takes.
func (c *Consumer) drainForShutdown() {
	c.mu.Lock()
	all := map[string][]int32{}
	for tp := range c.owned {
		all[tp.Topic] = append(all[tp.Topic], tp.Partition)
	}
	c.mu.Unlock()
	ps := c.disown(all)
	if len(ps) == 0 {
		return
	}
	began := time.Now()
	timedOut := c.drain(ps)
	c.commit(c.workCtx, ps)
	c.release(ps)
	c.log.Info("partitions drained for shutdown", "partitions", tpStrings(partitionsOf(ps)),
		"drain", time.Since(began), "drain_timed_out", timedOut)
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
// for Run to return. It is safe to call more than once and from any
// goroutine. If Run was never called, Close releases the client.
func (c *Consumer) Close() {
	c.stateMu.Lock()
	switch c.state {
	case idle:
		c.state = done
		c.stateMu.Unlock()
		c.cl.Close()
		c.cancelWork()
		close(c.allDone)
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
// return.
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
// the following AllowRebalance, so routing never races a revoke.
func (c *Consumer) poll(ctx context.Context) {
	var touched []*partition
	for {
		pollCtx, wake := context.WithCancel(ctx)
		c.resetMu.Lock()
		c.wakePoll = wake
		c.resetMu.Unlock()
		fetches := c.cl.PollFetches(pollCtx)
		wake()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			return
		}
		fetched := time.Now()
		fetches.EachError(c.fetchError)
		touched = touched[:0]
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
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
		})
		c.pauseFull(touched)
		c.cl.AllowRebalance()
		c.resetRecreated()
	}
}

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
			for _, p := range ps {
				p.cancel()
			}
			c.awaitClosed(ps, c.cfg.closeGrace)
			c.release(ps)
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

// fetchError logs a fetch error at most every 10s per partition and error.
func (c *Consumer) fetchError(topic string, partition int32, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	tp := pipeline.TopicPartition{Topic: topic, Partition: partition}
	each(c.hooks, func(h HookFetchError) { h.OnFetchError(tp, err) })
	if errors.Is(err, kerr.UnknownTopicID) {
		c.markRecreated(topic)
	}
	key := tp.String() + err.Error()
	now := time.Now()
	c.stateMu.Lock()
	last, seen := c.errLog[key]
	if !seen || now.Sub(last) > 10*time.Second {
		c.errLog[key] = now
		seen = false
	}
	c.stateMu.Unlock()
	if seen {
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
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed):
		msg = "not authorized; check the credentials and ACLs"
	}
	c.log.Warn(msg, "topic", topic, "partition", partition, "err", err)
}

// onAssigned starts a partition for each assigned partition.
// The consumer counts as joined once they are started and the hooks told,
// so that whoever sees Status().Joined (a readiness probe) also sees the
// partitions: franz-go calls this after every join, even with nothing new.
func (c *Consumer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	defer c.joined.Store(true)
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
	c.pauseMu.Lock()
	c.mu.Lock()
	c.owned[tp] = p
	c.mu.Unlock()
	if c.allPaused.Load() {
		c.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
	}
	c.pauseMu.Unlock()
	go p.feed()
	return p
}

func (c *Consumer) openPartition(ctx context.Context, tp pipeline.TopicPartition) (part pipeline.Partition, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	part, err = c.cfg.handler.OpenPartition(ctx, tp)
	if err == nil && part == nil {
		err = errors.New("handler returned no partition")
	}
	return part, err
}

// onRevoked drains the revoked partitions and commits their watermarks
// before the rebalance may continue.
func (c *Consumer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ps := c.disown(revoked)
	if len(ps) == 0 {
		return
	}
	began := time.Now()
	timedOut := c.drain(ps)
	took := time.Since(began)
	c.commit(ctx, ps)
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
	for _, p := range ps {
		p.cancel()
	}
	c.awaitClosed(ps, c.cfg.closeGrace)
	c.release(ps)
	tps := partitionsOf(ps)
	c.log.Warn("partitions lost; their in-flight work was cancelled and not committed", "partitions", tpStrings(tps))
	each(c.hooks, func(h HookLost) { h.OnLost(tps) })
}

// replace retires p, whose log went back, and starts a new assignment of
// the same partition. Nothing is committed for the old one.
func (c *Consumer) replace(p *partition) *partition {
	c.log.Warn("partition offsets went back (topic recreated or truncated); restarting its handling", "partition", p.tp.String(), "after", p.enqueued)
	c.disown(map[string][]int32{p.tp.Topic: {p.tp.Partition}})
	p.cancel()
	c.awaitClosed([]*partition{p}, c.cfg.closeGrace)
	c.release([]*partition{p})
	return c.start(p.tp)
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
func (c *Consumer) release(ps []*partition) {
	resume := map[string][]int32{}
	var wasPaused []pipeline.TopicPartition
	c.pauseMu.Lock()
	for _, p := range ps {
		p.finish()
		if p.paused.Swap(false) || c.allPaused.Load() {
			wasPaused = append(wasPaused, p.tp)
		}
		resume[p.tp.Topic] = append(resume[p.tp.Topic], p.tp.Partition)
	}
	c.cl.ResumeFetchPartitions(resume)
	c.pauseMu.Unlock()
	for _, tp := range wasPaused {
		each(c.hooks, func(h HookPaused) { h.OnPaused(tp, false) })
	}
}

// commitLoop commits owned partitions' watermarks every interval.
func (c *Consumer) commitLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.commitInterval)
	defer t.Stop()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ps := c.ownedPartitions()
		now := time.Now()
		c.reportNotJoined(started, now)
		for _, p := range ps {
			p.observeProgress(now)
		}
		c.commit(ctx, ps)
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

// commit commits the watermarks of ps that moved, synchronously.
func (c *Consumer) commit(ctx context.Context, ps []*partition) {
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
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			c.log.Warn("commit failed; the next commit retries", "err", err)
			for tp, p := range byTP {
				off := offsets[tp.Topic][tp.Partition].Offset
				each(c.hooks, func(h HookCommitted) { h.OnCommitted(p.tp, off, err) })
			}
			return
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				tp := pipeline.TopicPartition{Topic: t.Topic, Partition: rp.Partition}
				p := byTP[tp]
				if p == nil {
					continue
				}
				off := offsets[t.Topic][rp.Partition].Offset
				perr := kerr.ErrorForCode(rp.ErrorCode)
				if perr == nil {
					p.markCommitted(off)
				} else {
					if errors.Is(perr, kerr.UnknownTopicID) {
						c.markRecreated(tp.Topic)
					}
					c.log.Warn("commit of a partition failed; the next commit retries", "partition", tp.String(), "offset", off, "err", perr)
				}
				each(c.hooks, func(h HookCommitted) { h.OnCommitted(tp, off, perr) })
			}
		}
	})
}

// pauseFull pauses fetching of partitions whose buffered work reached the
// high-water mark, and of every partition when the total did.
func (c *Consumer) pauseFull(touched []*partition) {
	part, total := c.cfg.partHigh, c.cfg.totalHigh
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	var change fetchChange
	for _, p := range touched {
		if records, bytes := p.buffered(); !p.paused.Load() && (records >= int64(part.Records) || bytes >= part.Bytes) {
			p.paused.Store(true)
			change.add(p.tp)
		}
	}
	if records, bytes := c.buffered(); !c.allPaused.Load() && (records >= int64(total.Records) || bytes >= total.Bytes) {
		c.allPaused.Store(true)
		c.addSelfUnpaused(&change)
	}
	c.apply(change, true)
}

// maybeResume resumes fetching p, or every partition, once buffered work
// fell to the low-water mark.
func (c *Consumer) maybeResume(p *partition) {
	part, total, low := c.cfg.partHigh, c.cfg.totalHigh, c.cfg.lowWater
	below := func(records, bytes int64, w Water) bool {
		return float64(records) <= low*float64(w.Records) && float64(bytes) <= low*float64(w.Bytes)
	}
	under := func(records, bytes int64) bool { return below(records, bytes, part) }
	underTotal := func(records, bytes int64) bool { return below(records, bytes, total) }
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	var change fetchChange
	if p.paused.Load() && under(p.buffered()) {
		p.paused.Store(false)
		if !c.allPaused.Load() {
			change.add(p.tp)
		}
	}
	if c.allPaused.Load() && underTotal(c.buffered()) {
		c.allPaused.Store(false)
		c.addSelfUnpaused(&change)
	}
	c.apply(change, false)
}

// fetchChange collects partitions whose fetching pauses or resumes together.
type fetchChange struct {
	byTopic map[string][]int32
	tps     []pipeline.TopicPartition
}

func (f *fetchChange) add(tp pipeline.TopicPartition) {
	if f.byTopic == nil {
		f.byTopic = map[string][]int32{}
	}
	f.byTopic[tp.Topic] = append(f.byTopic[tp.Topic], tp.Partition)
	f.tps = append(f.tps, tp)
}

// addSelfUnpaused adds the owned partitions not paused for their own marks:
// the ones the consumer-wide marks pause and resume.
func (c *Consumer) addSelfUnpaused(f *fetchChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.owned {
		if !p.paused.Load() {
			f.add(p.tp)
		}
	}
}

// apply pauses or resumes the fetching of f's partitions; c.pauseMu is held.
func (c *Consumer) apply(f fetchChange, pause bool) {
	if len(f.tps) == 0 {
		return
	}
	if pause {
		c.cl.PauseFetchPartitions(f.byTopic)
	} else {
		c.cl.ResumeFetchPartitions(f.byTopic)
	}
	for _, tp := range f.tps {
		each(c.hooks, func(h HookPaused) { h.OnPaused(tp, pause) })
	}
}

// wakeBlocked wakes feeders waiting for consumer-wide room.
func (c *Consumer) wakeBlocked() {
	c.flowMu.Lock()
	for p := range c.blocked {
		p.mu.Lock()
		p.pokeLocked()
		p.mu.Unlock()
	}
	c.flowMu.Unlock()
}

// flushAllLocked makes every owned partition give back the room of its
// settled records, so that a feeder about to wait for room sees the exact
// count; c.flowMu is held.
func (c *Consumer) flushAllLocked() {
	for _, p := range c.ownedPartitions() {
		p.mu.Lock()
		p.flushLocked()
		p.mu.Unlock()
	}
}

// buffered is the consumer-wide fetched and unsettled work.
func (c *Consumer) buffered() (records, bytes int64) {
	return c.pendRecords.Load() + c.outRecords.Load(), c.pendBytes.Load() + c.outBytes.Load()
}

// unblockLocked removes p from the blocked set; c.flowMu is held.
func (c *Consumer) unblockLocked(p *partition) {
	if p.blocked {
		p.blocked = false
		delete(c.blocked, p)
		c.blockedN.Add(-1)
	}
}

// Status is a snapshot of the consumer's health, for readiness checks.
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
}

// Status returns a snapshot of the consumer's health.
func (c *Consumer) Status() Status {
	c.stateMu.Lock()
	st := Status{Running: c.state == running, Err: c.fatalErr}
	c.stateMu.Unlock()
	st.Joined = st.Running && c.joined.Load()
	st.Assigned = c.Assigned()
	st.Paused = c.Paused()
	now := time.Now()
	for _, p := range c.ownedPartitions() {
		if p.stalledSince(now, c.cfg.stallAfter) {
			st.Stalled = append(st.Stalled, p.tp)
		}
	}
	sortTPs(st.Stalled)
	st.Unsettled, st.Buffered = c.Unsettled()
	st.ConnectErr = c.conns.last()
	return st
}

// Unsettled reports the records handed to the handler and not yet settled,
// and the records buffered (fetched and not settled), across partitions.
func (c *Consumer) Unsettled() (handed, buffered int64) {
	handed = c.outRecords.Load()
	return handed, handed + c.pendRecords.Load()
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
