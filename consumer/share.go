package consumer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// shareCfg is the share-group mode's configuration; nil: a classic group.
type shareCfg struct {
	group        string
	maxRecords   int32
	limit        int32
	renewEvery   time.Duration
	lanes        int
	sinkAttempts int32
}

// defaultShareSinkAttempts is ShareSinkAttempts' default: with the
// pipeline's default SinkBackoff (100ms doubling), a record failing
// transiently is released about a second after its first failure.
const defaultShareSinkAttempts = 5

func defaultShare() shareCfg {
	return shareCfg{maxRecords: 500, limit: 5, renewEvery: 10 * time.Second, lanes: 4, sinkAttempts: defaultShareSinkAttempts}
}

// shareOpt applies to the share configuration, creating it if needed; the
// validation checks that ShareGroup named the group.
func shareOpt(fn func(*shareCfg)) Opt {
	return optFunc(func(c *cfg) {
		if c.share == nil {
			s := defaultShare()
			c.share = &s
		}
		fn(c.share)
	})
}

// ShareMaxRecords sets how many records one batch holds at most, overriding
// the default of 500 (franz-go's ShareMaxRecords). The consumer acknowledges
// a whole batch before it polls the next, so a larger batch keeps more
// records in flight (more parallelism for a FanOut) and makes the batch
// wait longer for its slowest record. Only with ShareGroup.
func ShareMaxRecords(n int) Opt {
	return shareOpt(func(s *shareCfg) { s.maxRecords = int32(min(n, 1<<30)) })
}

// ShareDeliveryLimit sets the delivery count limit, overriding the default of
// 5 (Kafka's default, which it bounds to 2..10): how many times the broker
// delivers a record before it archives it. The consumer sets it as the
// group's share.delivery.count.limit at start and tells every record
// (pipeline.Record.DeliveryLimit) so that ShareDeadLetters dead-letters a
// record that fails on its last delivery. Only with ShareGroup.
func ShareDeliveryLimit(n int) Opt {
	return shareOpt(func(s *shareCfg) { s.limit = int32(min(n, 1<<30)) })
}

// ShareRenewEvery sets how often the lock of a record still being handled
// is renewed (AckRenew), overriding the default of 10s. It must be well
// under the group's record lock duration (share.record.lock.duration.ms,
// 30s by default), less the second franz-go may hold an acknowledgement
// before sending it, or the broker hands a slow record to another member
// while this one still works on it. Only with ShareGroup.
func ShareRenewEvery(d time.Duration) Opt {
	return shareOpt(func(s *shareCfg) { s.renewEvery = d })
}

// ShareLanes sets how many pipeline partitions, run in parallel, share a
// batch's records of one topic partition, overriding the default of 4. A
// record goes to the lane of its key's hash (records without a key in
// turn), so a key's records of one batch keep their offset order. A share
// group fills a batch from one partition at a time, so without lanes a
// plain sequential Sink would handle one record at a time per member; a
// classic member owning n partitions runs n. Only with ShareGroup.
func ShareLanes(n int) Opt {
	return shareOpt(func(s *shareCfg) { s.lanes = n })
}

// ShareSinkAttempts sets how many times a plain pipeline.Sink calls its
// function for a record that fails transiently before it gives the record
// up, overriding the default of 5; the record's delivery then ends (with
// ShareDeadLetters, it is released and the broker delivers it again, its
// delivery count one higher). It becomes each record's
// pipeline.Record.SinkAttempts, so a pipeline's own SinkAttempts applies
// when it is lower. Without it a plain Sink retries a transient failure in
// place for as long as it lasts, holding the record's batch and its
// member (see Share groups: failures in the package doc). Guarded sinks
// of package handlers follow their own retry policy and are not affected.
// Only with ShareGroup.
func ShareSinkAttempts(n int) Opt {
	return shareOpt(func(s *shareCfg) { s.sinkAttempts = int32(min(n, 1<<30)) })
}

func (c *cfg) validateShare() error {
	s := c.share
	if s == nil {
		return nil
	}
	bad := func(field, format string, args ...any) error {
		return &sluice.ConfigError{Package: "consumer", Option: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case s.group == "":
		return bad("ShareGroup", "a share group name is required with ShareMaxRecords, ShareLanes, ShareDeliveryLimit, ShareRenewEvery or ShareSinkAttempts")
	case c.group != "":
		return bad("ShareGroup", "Group %q and ShareGroup %q are exclusive: a consumer is a member of a consumer group or of a share group", c.group, s.group)
	case c.eos != nil:
		return bad("ExactlyOnce", "not available with ShareGroup: share groups acknowledge records outside transactions")
	case c.instance != "":
		return bad("InstanceID", "not available with ShareGroup: share groups have no static members")
	case s.maxRecords < 1:
		return bad("ShareMaxRecords", "must be positive, got %d", s.maxRecords)
	case s.limit < 1:
		return bad("ShareDeliveryLimit", "must be positive, got %d", s.limit)
	case s.renewEvery <= 0:
		return bad("ShareRenewEvery", "must be positive, got %v", s.renewEvery)
	case s.lanes < 1:
		return bad("ShareLanes", "must be positive, got %d", s.lanes)
	case s.sinkAttempts < 1:
		return bad("ShareSinkAttempts", "must be positive, got %d", s.sinkAttempts)
	}
	return nil
}

// shareClientOpts translates the config into franz-go options for a share
// group member.
func (c *cfg) shareClientOpts(cs *Consumer) []kgo.Opt {
	opts := append(c.conn.ClientOpts(),
		kgo.ShareGroup(c.share.group),
		kgo.ShareMaxRecords(c.share.maxRecords),
		// A batch holds at most ShareMaxRecords records: the broker
		// splits its record batches rather than hand out more. Strict
		// mode also fetches only when polled: no records wait in
		// franz-go's buffer, locked but not renewed, while a long batch
		// is handled (their locks could expire, sending them to another
		// member and spending a delivery). The cost is a fetch round
		// trip per batch.
		kgo.ShareMaxRecordsStrict(),
		kgo.ShareAckCallback(cs.shareAcked),
		kgo.FetchMaxWait(c.fetchWait),
		kgo.FetchMaxBytes(int32(min(c.totalHigh.Bytes, 50<<20))),
		kgo.WithLogger(kslogAdapter(c.logger)),
		kgo.WithHooks(cs.conns, shareJoinHook{cs}),
	)
	return append(opts, c.kgoOpts...)
}

// HookShareAckError is told of acknowledgements of a share group member that
// the broker refused or that could not be sent (a record lock that expired,
// a connection lost): the records concerned are delivered again, to this
// member or another, so a sink may see them twice.
type HookShareAckError interface {
	OnShareAckError(tp pipeline.TopicPartition, err error)
}

// Kinds of share group acknowledgements, as HookShareAcked reports them
// (and the kind label of sluice_share_acks_total).
const (
	// ShareAccept: the record was handled (a sink succeeded, a stage
	// dropped it); the broker is done with it.
	ShareAccept = "accept"
	// ShareRelease: the record goes back to the broker, which delivers it
	// again, to any member, its delivery count one higher (or archives it
	// after its last delivery).
	ShareRelease = "release"
	// ShareReject: the record was given up on (its dead letter was
	// acknowledged); the broker archives it.
	ShareReject = "reject"
)

// HookShareAcked is told of the acknowledgements a share group member
// gives: records records of tp marked kind (ShareAccept, ShareRelease or
// ShareReject). franz-go sends them with the next poll (or when the member
// leaves); those the broker refuses or that cannot be sent are told to
// HookShareAckError. Lock renewals are not counted.
type HookShareAcked interface {
	OnShareAcked(tp pipeline.TopicPartition, kind string, records int)
}

// shareAcked logs (at most every 10s per partition and error) and reports
// acknowledgements that failed.
func (c *Consumer) shareAcked(_ *kgo.Client, res kgo.ShareAckResults) {
	for _, r := range res {
		if r.Err == nil {
			continue
		}
		tp := pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition}
		each(c.hooks, func(h HookShareAckError) { h.OnShareAckError(tp, r.Err) })
		if c.errLog.due("ack/"+tp.String()+r.Err.Error(), time.Now()) {
			c.log.Warn("share acknowledgements failed; the broker delivers their records again", "partition", tp.String(), "err", r.Err)
		}
	}
}

// shareJoinHook marks the member joined once a share group heartbeat has
// been answered: franz-go tells nothing else of a share group session.
type shareJoinHook struct{ c *Consumer }

var _ kgo.HookBrokerRead = shareJoinHook{}

func (h shareJoinHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != int16(kmsg.ShareGroupHeartbeat) || err != nil {
		return
	}
	h.c.stateMu.Lock()
	if h.c.state == running {
		h.c.joined.Store(true)
	}
	h.c.stateMu.Unlock()
}

// runShare is Run for a share group member: poll a batch, handle it to the
// end, acknowledge, repeat until ctx is done; then flush acknowledgements
// and leave.
func (c *Consumer) runShare(ctx context.Context) error {
	c.log.Info("share consumer starting", "topics", c.cfg.topics, "brokers", c.cfg.conn.Brokers)
	c.setShareGroupConfig(ctx)
	c.cl.AddConsumeTopics(c.cfg.topics...)
	for ctx.Err() == nil {
		fetches := c.cl.PollRecords(ctx, int(c.cfg.share.maxRecords))
		if ctx.Err() != nil || fetches.IsClientClosed() {
			// Records polled as the shutdown began are not handled:
			// release them, or franz-go would accept them.
			c.cl.MarkAcks(kgo.AckRelease)
			break
		}
		fetched := time.Now()
		fetches.EachError(c.fetchError)
		byTP := map[pipeline.TopicPartition][]*kgo.Record{}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Err == nil {
				c.auth.ok(fp.Topic, AuthTopic)
			}
			if len(fp.Records) == 0 {
				return
			}
			tp := pipeline.TopicPartition{Topic: fp.Topic, Partition: fp.Partition}
			byTP[tp] = append(byTP[tp], fp.Records...)
			var bytes int64
			for _, r := range fp.Records {
				bytes += recordSize(r)
			}
			each(c.hooks, func(h HookFetched) { h.OnFetched(tp, len(fp.Records), bytes) })
		})
		if len(byTP) > 0 {
			c.handleShareBatch(ctx, byTP, fetched)
		} else {
			c.shareNow.Store(nil) // idle: Status shows no partitions
		}
	}
	c.shareNow.Store(nil)
	c.cl.PauseFetchTopics(c.cfg.topics...)
	// Every polled record is acknowledged by now (handleShareBatch
	// settles or releases each); send the acknowledgements before leaving.
	flushCtx, cancel := context.WithTimeout(context.Background(), c.cfg.closeGrace)
	if err := c.cl.FlushAcks(flushCtx); err != nil {
		c.log.Warn("share acknowledgements not all sent before leaving; the broker redelivers what it did not get after the record lock expires", "err", err)
	}
	cancel()
	c.closeClient()
	c.cancelWork()

	c.joined.Store(false)
	c.stateMu.Lock()
	c.state = done
	err := c.fatalErr
	c.stateMu.Unlock()
	c.log.Info("share consumer stopped")
	return err
}

// setShareGroupConfig sets the group's share.auto.offset.reset (from Start)
// and share.delivery.count.limit (ShareDeliveryLimit). A failure is logged:
// the broker's settings then hold.
func (c *Consumer) setShareGroupConfig(ctx context.Context) {
	reset := "earliest"
	if c.cfg.start == Latest {
		reset = "latest"
	}
	limit := strconv.Itoa(int(c.cfg.share.limit))
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = c.cfg.share.group
	for _, kv := range [][2]string{{"share.auto.offset.reset", reset}, {"share.delivery.count.limit", limit}} {
		rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		rc.Name, rc.Op, rc.Value = kv[0], kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(kv[1])
		res.Configs = append(res.Configs, rc)
	}
	req.Resources = append(req.Resources, res)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(actx, c.cl)
	if err == nil {
		for _, r := range resp.Resources {
			if e := kerr.ErrorForCode(r.ErrorCode); e != nil {
				err = fmt.Errorf("%w: %s", e, deref(r.ErrorMessage))
			}
		}
	}
	if err != nil {
		c.log.Warn("could not set the share group's configuration; the broker's settings hold",
			"share.auto.offset.reset", reset, "share.delivery.count.limit", limit, "err", err)
	}
}

// shareBatch is one poll's records, being handled: it acknowledges each as
// it settles and releases the rest at the end.
type shareBatch struct {
	c     *Consumer
	recs  []pipeline.Record
	krs   []*kgo.Record
	state []atomic.Int32 // 0: pending; 1: acknowledged
	index map[*pipeline.Record]int
	left  atomic.Int64
	tps   []pipeline.TopicPartition // of the records, sorted
	acked []HookShareAcked

	progress atomic.Int64 // Unix nanoseconds of the last acknowledgement, or of the start
}

// fateAcks are the acknowledgement of each pipeline.Fate, and its kind as
// HookShareAcked names it.
var fateAcks = [...]struct {
	status kgo.AckStatus
	kind   string
}{
	pipeline.FateDone:     {kgo.AckAccept, ShareAccept},
	pipeline.FateRejected: {kgo.AckReject, ShareReject},
	pipeline.FateReleased: {kgo.AckRelease, ShareRelease},
}

// Settled implements pipeline.Settler: the record's fate becomes its
// acknowledgement.
func (b *shareBatch) Settled(r *pipeline.Record) {
	i, ok := b.index[r]
	if !ok || !b.state[i].CompareAndSwap(0, 1) {
		return
	}
	ack := fateAcks[r.Fate()]
	b.krs[i].Ack(ack.status)
	b.progress.Store(time.Now().UnixNano())
	b.left.Add(-1)
	for _, h := range b.acked {
		h.OnShareAcked(pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition}, ack.kind, 1)
	}
}

// renew extends the locks of the records not yet settled.
func (b *shareBatch) renew() {
	for i := range b.krs {
		if b.state[i].Load() == 0 {
			b.krs[i].Ack(kgo.AckRenew)
		}
	}
}

// lockMargin is how long before a record's lock expires it must be renewed:
// the deadline franz-go reports is computed on the broker before the
// fetch response travelled, and a renewal takes a round trip.
const lockMargin = 3 * time.Second

// renewBefore renews the unsettled records whose lock expires before t.
func (b *shareBatch) renewBefore(t time.Time) {
	for i, kr := range b.krs {
		if d := kr.AcquisitionDeadline(); b.state[i].Load() == 0 && !d.IsZero() && d.Before(t) {
			kr.Ack(kgo.AckRenew)
		}
	}
}

// releaseRest releases every record that has not settled, so the broker
// delivers it again (to any member). It returns how many it released.
func (b *shareBatch) releaseRest() int {
	n, last := 0, 0
	per := map[pipeline.TopicPartition]int{}
	for i := range b.krs {
		if !b.state[i].CompareAndSwap(0, 1) {
			continue
		}
		b.krs[i].Ack(kgo.AckRelease)
		b.left.Add(-1)
		n++
		r := &b.recs[i]
		per[pipeline.TopicPartition{Topic: r.Topic, Partition: r.Partition}]++
		if r.DeliveryLimit > 0 && r.Deliveries >= r.DeliveryLimit {
			last++
		}
	}
	for tp, k := range per {
		for _, h := range b.acked {
			h.OnShareAcked(tp, ShareRelease, k)
		}
	}
	if last > 0 {
		b.c.log.Error("records released unfinished on their last delivery: the broker archives them; give the pipeline a DeadLetterer wrapped with ShareDeadLetters to keep them",
			"records", last)
	}
	return n
}

// handleShareBatch hands a poll's records to fresh pipeline partitions,
// closes them (finishing every record), renews locks meanwhile, and
// releases what did not settle. A shutdown (stop done) lets the batch finish
// for DrainTimeout; Stop cancels it at once.
func (c *Consumer) handleShareBatch(stop context.Context, byTP map[pipeline.TopicPartition][]*kgo.Record, fetched time.Time) {
	n := 0
	for _, krs := range byTP {
		n += len(krs)
	}
	b := &shareBatch{
		c:     c,
		recs:  make([]pipeline.Record, n),
		krs:   make([]*kgo.Record, 0, n),
		state: make([]atomic.Int32, n),
		index: make(map[*pipeline.Record]int, n),
	}
	b.left.Store(int64(n))
	b.progress.Store(time.Now().UnixNano())
	for tp := range byTP {
		b.tps = append(b.tps, tp)
	}
	sortTPs(b.tps)
	each(c.hooks, func(h HookShareAcked) { b.acked = append(b.acked, h) })
	c.shareNow.Store(b)
	var budget time.Time
	if d := c.cfg.recordBudget; d > 0 {
		budget = fetched.Add(d)
	}
	type lane struct {
		tp pipeline.TopicPartition
		n  int
	}
	lanes := c.cfg.share.lanes
	parts := make(map[lane][]*pipeline.Record, len(byTP)*lanes)
	for tp, krs := range byTP {
		for j, kr := range krs {
			i := len(b.krs)
			b.krs = append(b.krs, kr)
			r := &b.recs[i]
			c.shareConvert(r, kr, fetched, budget)
			b.index[r] = i
			l := lane{tp, j % lanes}
			if kr.Key != nil {
				l.n = int(fnv32(kr.Key) % uint32(lanes))
			}
			parts[l] = append(parts[l], r)
		}
	}

	bctx, cancel := context.WithCancel(c.workCtx)
	defer cancel()
	var wg sync.WaitGroup
	for l, prs := range parts {
		tp := l.tp
		part, err := c.openPartition(bctx, tp)
		if err != nil {
			c.fail(fmt.Errorf("open partition %s: %w", tp, err))
			break
		}
		for _, r := range prs {
			r.Bind(b)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := part.Handle(bctx, prs); err != nil && bctx.Err() == nil {
				c.fail(fmt.Errorf("handle %s: %w", tp, err))
			}
			part.Close()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	renew := time.NewTicker(c.cfg.share.renewEvery)
	defer renew.Stop()
	// Records wait in franz-go's buffer while the batch before them is
	// handled, their locks running: renew now those whose lock would
	// expire before the first tick.
	b.renewBefore(time.Now().Add(c.cfg.share.renewEvery + lockMargin))
	var drainEnd, graceEnd <-chan time.Time
	stopping, stopped := stop.Done(), c.workCtx.Done()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-renew.C:
			b.renew()
		case <-stopping:
			stopping = nil
			// Fetch no more: every record fetched now would only be
			// released again on close, its delivery count spent.
			c.cl.PauseFetchTopics(c.cfg.topics...)
			t := time.NewTimer(c.cfg.drainTimeout)
			defer t.Stop()
			drainEnd = t.C
		case <-drainEnd:
			drainEnd = nil
			cancel()
			t := time.NewTimer(c.cfg.closeGrace)
			defer t.Stop()
			graceEnd = t.C
		case <-stopped:
			// Stop: the partitions' contexts are cancelled with it.
			stopped = nil
			if graceEnd == nil {
				t := time.NewTimer(c.cfg.closeGrace)
				defer t.Stop()
				graceEnd = t.C
			}
		case <-graceEnd:
			c.log.Error("share batch abandoned: its handler ignored cancellation for CloseGrace", "grace", c.cfg.closeGrace)
			break wait
		}
	}
	cancel()
	if released := b.releaseRest(); released > 0 {
		c.log.Info("unfinished share records released for redelivery", "records", released)
	}
}

// shareStatus fills the parts of st that a share group member reports
// differently (see Status).
func (c *Consumer) shareStatus(st *Status, now time.Time) {
	b := c.shareNow.Load()
	if b == nil {
		return
	}
	st.Assigned = slices.Clone(b.tps)
	st.Unsettled = b.left.Load()
	st.Buffered = st.Unsettled
	if st.Unsettled == 0 || now.Sub(time.Unix(0, b.progress.Load())) < c.cfg.stallAfter {
		return
	}
	pending := map[pipeline.TopicPartition]bool{}
	for i := range b.recs {
		if b.state[i].Load() == 0 {
			pending[pipeline.TopicPartition{Topic: b.recs[i].Topic, Partition: b.recs[i].Partition}] = true
		}
	}
	for _, tp := range b.tps {
		if pending[tp] {
			st.Stalled = append(st.Stalled, tp)
		}
	}
}

// shareConvert fills r from kr, as partition.convert does for a classic
// group, plus the delivery count and limit.
func (c *Consumer) shareConvert(r *pipeline.Record, kr *kgo.Record, fetched, budget time.Time) {
	r.Topic, r.Partition, r.Offset = kr.Topic, kr.Partition, kr.Offset
	r.Key, r.Value = kr.Key, kr.Value
	r.Timestamp, r.Fetched = kr.Timestamp, fetched
	if len(kr.Headers) > 0 {
		r.Headers = make([]pipeline.Header, len(kr.Headers))
		for j, h := range kr.Headers {
			r.Headers[j] = pipeline.Header(h)
		}
	}
	r.Deliveries = kr.DeliveryCount()
	r.DeliveryLimit = c.cfg.share.limit
	r.SinkAttempts = c.cfg.share.sinkAttempts
	r.Deadline = budget
	if v, ok := r.Header(pipeline.DeadlineHeader); ok {
		if ms, ok := parseMillis(v); ok {
			if d := time.UnixMilli(ms); r.Deadline.IsZero() || d.Before(r.Deadline) {
				r.Deadline = d
			}
		} else if c.errLog.due("deadline/share", time.Now()) {
			c.log.Warn("malformed deadline header ignored (want Unix milliseconds)", "header", pipeline.DeadlineHeader,
				"record", r.String())
		}
	}
}

// ShareDeadLetters wraps a pipeline's DeadLetterer for a share group
// consumer: pass pipeline.DeadLetters(consumer.ShareDeadLetters(dl)).
//
// A record from a share group (pipeline.Record.Deliveries above 0) that
// failed transiently (pipeline.Transient: ClassExhausted, ClassBudget,
// ClassDeadline, ClassError) before its last delivery is handed back instead of being
// dead-lettered: nothing is written (it returns pipeline.ErrReleased), and
// the consumer releases it for redelivery, its delivery count one higher.
// On its last delivery it is dead-lettered with class
// pipeline.ClassDeliveryLimit (its error is the last failure's) and
// rejected. Any other failure (ClassDecode, ClassPanic, ClassPermanent) is
// dead-lettered at once and the record rejected. Records of a classic group
// pass through unchanged, so wrapping is harmless there.
//
// The pipeline counts a handed-back record as released
// (pipeline.OutcomeReleased), not as a dead letter: HookDeadLetter is not
// told of it.
func ShareDeadLetters(dl pipeline.DeadLetterer) pipeline.DeadLetterer {
	return shareDeadLetters{dl}
}

type shareDeadLetters struct{ next pipeline.DeadLetterer }

func (s shareDeadLetters) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	r := dl.Record
	if r == nil || r.Deliveries == 0 {
		return s.next.DeadLetter(ctx, dl)
	}
	if pipeline.Transient(dl.Class) {
		if r.DeliveryLimit == 0 || r.Deliveries < r.DeliveryLimit {
			return pipeline.ErrReleased
		}
		dl.Class = pipeline.ClassDeliveryLimit // as the pipeline marks it too
	}
	if err := s.next.DeadLetter(ctx, dl); err != nil {
		return err
	}
	r.SetFate(pipeline.FateRejected)
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// fnv32 is FNV-1a, to spread keys over lanes.
func fnv32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
