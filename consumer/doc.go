// Package consumer runs a Kafka consumer group member (franz-go) that hands
// each assigned partition's records to a pipeline.Handler and commits only
// what is settled.
//
// # Options
//
//	Connection(conn)        required: the cluster, a sluice.Connection (brokers, TLS, SASL,
//	                        client ID "sluice"), the same value dlq and sinks/kafka take
//	Group(name)             required (or ShareGroup): the consumer group
//	Handle(h)               required: the pipeline; its Sources name the topics read
//	CommitInterval(d)       1s      how often settled watermarks are committed
//	DrainTimeout(d)         30s     how long a revoke or shutdown waits for in-flight records
//	CloseGrace(d)           5s      how long cancelled work may ignore its context
//	StallAfter(d)           2m      when a partition whose commit does not move is stalled
//	RecordBudget(d)         none    each record's deadline, from its fetch
//	SessionTimeout(d)       45s     group session timeout
//	RebalanceTimeout(d)     60s     how long a member may take to rejoin
//	Start(s)                Earliest where a partition without a committed offset starts
//	MaxUnsettled(p, t)      10,000 rec/16 MiB per partition, 100,000 rec/128 MiB in total
//	LowWater(f)             0.5     fraction of the marks at which fetching resumes
//	InstanceID(id)          none    static membership (KIP-345)
//	GroupProtocol(p)        ProtocolClassic, or ProtocolConsumer (KIP-848)
//	AuthFailures(n)         5       authentication failures in a row that end Run
//	ExactlyOnce(id, w...)   off     transactions (see Exactly once)
//	TransactionTimeout(d)   derived the transactions' timeout
//	ShareGroup(name)        off     a share group member (see Share groups), with
//	                                ShareMaxRecords, ShareLanes, ShareDeliveryLimit, ShareRenewEvery,
//	                                ShareSinkAttempts
//	Logger(l)               slog.Default()
//	Hooks(hs...)            none    observers implementing Hook* interfaces (others refused)
//	ClientOpts(opts...)     none    raw franz-go options, after the consumer's own
//
// # Guarantees
//
// At least once, nothing lost. A record is settled when every branch of the
// pipeline that received it is finished with it (pipeline.Record.Settle).
// Records may settle in any order; per partition the consumer commits the
// watermark, the offset of the lowest unsettled record, with the leader epoch
// of the record before it (KIP-320). A commit never passes an unsettled
// record. Commits happen every CommitInterval (default 1s), every quarter
// of it once the consumer has read everything there is (every partition's
// last fetch reached the end of its log), on revoke, and on shutdown.
// Tracking costs memory for the records in flight, not for the
// offset range behind a stuck record.
//
// Graceful rebalance. The group uses the cooperative-sticky balancer. On
// revoke, the consumer stops handing out the revoked partitions' records
// (records fetched but not handed over are dropped, not processed), closes
// their pipeline partitions so that records already handed over finish, waits
// up to DrainTimeout, commits the watermarks synchronously, and only then lets
// the rebalance continue. A graceful join or leave therefore hands no record
// to two members. Polls and rebalance callbacks never overlap
// (kgo.BlockRebalanceOnPoll): routing fetched records is fast, so rebalances
// are not held up by it.
//
// Lost partitions (session expired, member fenced) are different: another
// member may already own them, so the consumer cancels their work contexts,
// drops everything buffered and commits nothing for them, not even records
// that settle after the loss.
//
// A topic that is deleted and recreated gets a new topic ID, which franz-go
// refuses (UNKNOWN_TOPIC_ID on fetches and commits) until the topic is
// purged from the client. The consumer notices, retires the topic's
// partitions like lost ones (work cancelled, nothing committed: their offsets
// belong to a log that no longer exists), purges and re-adds the topic, and
// starts its next assignment at the new log's start rather than at the
// offsets committed for the old log, which could skip the new log's first
// records. A member of the group that never saw the old topic ID uses the
// committed offsets as they are. A partition whose offsets go back for
// another reason (a truncated log) is restarted the same way.
//
// Bounded memory. Records are handed to the handler only while the unsettled
// records of the partition and of the consumer stay under their high-water
// marks (MaxUnsettled, in records and bytes): a stalled handler holds at most
// the marks. Fetched records waiting to be handed over count as well: when a
// partition's buffered work (waiting plus unsettled) reaches its mark, or the
// consumer's total reaches its mark, fetching pauses, and it resumes once the
// work falls to the low-water mark (LowWater). Fetch sizes are capped at the
// marks, so the records held are the marks plus at most one fetch per
// partition. Keys, values and header values are not copied: they point into
// the fetch response they arrived in (for a compressed batch, into the
// batch's decompressed bytes), which holds the records of every partition
// fetched with them, up to the fetch size (the consumer-wide byte mark or
// 50 MiB, whichever is less). A record not yet settled, or a key or value
// slice kept after it settled, keeps that whole response in memory: copy
// what you keep. A fetch always returns at least one whole record batch,
// and fetch sizes count compressed bytes, so for compressed topics one
// fetch can decompress to more than its size: keep producer batches
// moderate if this matters. A single record larger than the byte mark is
// handed over alone.
//
// Shutdown. Cancelling Run's context or calling Close stops fetching, drains
// (as for a revoke, within DrainTimeout), commits, leaves the group and closes
// the client. While it drains and commits, the member holds off rebalances
// (kgo.BlockRebalanceOnPoll) and keeps heartbeating, so that a rebalance
// another member starts meanwhile cannot take it into JoinGroup, where
// franz-go holds commits until the whole group has rejoined; the broker
// accepts commits of the current generation while a rebalance is being
// prepared. If a JoinGroup was already under way when the shutdown began,
// the final commit waits for it, up to RebalanceTimeout plus 10s (the
// broker ends a rebalance within the rebalance timeout). A final commit
// that still does not land, on shutdown or on revoke, is logged at ERROR
// and reported to HookCommitted with its error, and Run returns a
// *CommitError (ErrNotCommitted): the partition's next owner handles its
// settled records again. Leaving waits at most CloseGrace: franz-go waits
// for a pending JoinGroup before it leaves, which can take the rebalance
// timeout and more, so if a rebalance is under way Run returns without
// waiting (its commits are done; the group reassigns the partitions after
// the session timeout) and the client finishes closing in the background
// (Done). Stop cancels in-flight work at once and commits only what has
// settled; use it for a second SIGTERM. A handler that ignores cancellation
// for longer than CloseGrace is abandoned, logged, so that neither a
// rebalance nor a shutdown can hang on it. Run, Close and Stop are safe in
// any order and any number of times. In the worst case Run returns
// DrainTimeout + CloseGrace + RebalanceTimeout + 10s + CloseGrace after the
// shutdown began; without a rebalance under way, DrainTimeout + 2 x
// CloseGrace.
//
// Exactly once. With ExactlyOnce the consumer's client is transactional
// (kgo.GroupTransactSession) and writers (the Kafka sink's, the dead-letter
// publisher) produce through it. Every CommitInterval (a quarter of it once
// the consumer has read everything there is) the poll loop stops fetching,
// lets every fetched record be handed over and settle (a barrier bounded by
// DrainTimeout), checks that the offsets after each partition's last
// record are what the transaction will commit, and ends it: outputs
// and offsets commit together, read with read_committed isolation. A
// transaction holds no output of a record it does not commit, because
// every record it wrote for has settled. A revoke or loss during a
// transaction, a barrier that times out, or offsets the group refuses (a
// zombie member, fenced by its generation) abort it: outputs are
// discarded, every partition restarts from its committed offset with a
// fresh handler, and HookCommitted sees ErrAborted. Revoked partitions are
// not drained (their work is discarded anyway). The cost: fetching pauses
// at each barrier while the pipeline empties, and an abort redoes up to a
// CommitInterval of work; a shutdown whose last transaction cannot commit
// returns a *CommitError wrapping ErrAborted.
//
// Failed transaction ends. The transaction timeout (TransactionTimeout)
// covers CommitInterval, the barrier and a commit held by a rebalance, and
// the consumer gives up on a commit before the broker could abort the
// transaction by timeout. An end that fails anyway (its commit refused, an
// EndTxn of unknown outcome such as REQUEST_TIMED_OUT or a lost
// connection, a transaction the broker aborted by timeout, which Kafka
// answers PRODUCER_FENCED) is resolved before the next transaction begins:
// the consumer aborts again (franz-go's End with TryAbort; after an unknown
// outcome it re-initialises the producer at its epoch, which aborts
// whatever the broker still holds open) until the abort succeeds, then
// reads the group's offsets (read stably, after pending transactions) and
// starts every partition from them. So a commit the broker applied though
// its answer was lost counts as committed and is not handled again, and
// one it did not apply is redone. The consumer does not take
// PRODUCER_FENCED on a commit for a takeover by itself: it leaves that to
// the broker. If the broker accepts the abort or the re-initialisation
// (it does for its own timeout abort: KIP-588, KIP-890), the producer goes
// on at its new epoch and the transaction's records are handled again. If
// it refuses them because another producer with the same transactional ID
// took over (a restarted member; this one is a zombie), franz-go marks the
// producer fenced for good, the next transaction cannot begin, and Run
// returns the error: a fenced member stops rather than fence its
// successor in turn. A zombie that was also evicted from the group cannot
// commit anyway: the group refuses its generation.
//
// Flow control at the marks. Every stop path (revoke, loss, shutdown, a
// recreated topic) works with any mark reached, the consumer-wide one
// included; the flow-control state has one documented lock order (flow.go).
//
// Topics. The consumer reads the topics its handler lists (a
// *pipeline.Pipeline lists those of its Sources): a topic is named once,
// where it is read. A handler of your own lists them with a method
// Topics() []string; New refuses a handler that lists none.
//
// Deadlines. Every record gets Record.Deadline: the RecordBudget after it was
// fetched, or the absolute time in its pipeline.DeadlineHeader header when
// that is earlier. A malformed deadline header is ignored, logged (at most
// every 10s per partition) and told to HookMalformedDeadline.
//
// Errors. Configuration errors are reported by New (and Validate) as
// *sluice.ConfigError (errors.Is sluice.ErrConfig), naming the option. Authentication and authorization failures (a rejected SASL
// login, or a broker that closes the connection during it; a TLS handshake
// or certificate error; a group or topic ACL that denies the consumer) are
// *AuthError (ErrAuth): logged at ERROR as what they are, shown in
// Status.AuthErr and /readyz, told to HookAuthError, and after AuthFailures
// of one kind in a row (default 5) Run ends with the error. A success of
// the same kind (a connection, a join, a fetch of the topic) resets the
// count. Commits report every partition's result: OffsetCommit v10
// responses name topics by ID, which the consumer maps back to names
// itself, and a partition the response leaves out counts as failed. Fetch errors (a deleted topic, lost data, authorization) are
// logged at most every 10s per partition and error, reported to
// HookFetchError, and survived. An error from OpenPartition or a panic in the
// handler stops the consumer: Run returns it after a graceful shutdown.
//
// Observability. Hooks are small optional interfaces (HookFetched,
// HookPaused, HookCommitted, HookAssigned, HookRevoked, HookLost,
// HookFetchError, HookAuthError, HookMalformedDeadline, and in share mode
// HookShareAcked and HookShareAckError); the metrics package implements
// them. Logs go to the
// configured slog.Logger, franz-go's through kslog; payloads and credentials
// are never logged.
//
// # Choosing a mode
//
// A consumer is a member of one of three kinds of group:
//
//   - Group(name), the default protocol (ProtocolClassic): a consumer
//     group, cooperative-sticky, assigned by a member. Partitions are
//     owned: records of a key are handled in order, offsets are committed,
//     ExactlyOnce is available. Parallelism is at most the partition count
//     (times a FanOut's workers inside each). Use it unless a reason below
//     applies.
//   - Group(name) with GroupProtocol(ProtocolConsumer): the same consumer
//     group semantics under KIP-848 (Kafka 4.0+): the broker assigns, and a
//     member joining or leaving moves only the partitions that change
//     owner, without stopping the group, so rebalances are faster and
//     cheaper with many members. Choose it for large or often-changing
//     groups on brokers that serve it; it excludes ExactlyOnce for now,
//     and before Kafka 4.3 the broker refuses some commits that race with
//     an assignment change (see GroupProtocol).
//   - ShareGroup(name): a share group (KIP-932; a broker that serves
//     share groups, Kafka 4.1 and later), a queue. No partition is owned
//     and no order is kept: records are handed out one by one,
//     acknowledged one by one, and redelivered (delivery count rising)
//     when released or when a member dies. More members than
//     partitions all get work. Choose it for independent jobs whose
//     throughput must scale past the partition count, or whose handling
//     time varies so much that one slow record must not hold a partition.
//     It excludes ExactlyOnce, InstanceID and GroupProtocol.
//
// New refuses the combinations that do not exist (Group with ShareGroup,
// ExactlyOnce with ShareGroup or with ProtocolConsumer, ProtocolConsumer or
// InstanceID with ShareGroup) with a *sluice.ConfigError naming the option.
//
// # Share groups
//
// A share group (KIP-932, queues for Kafka) is the consumer's queue mode.
//
// With ShareGroup instead of Group, the consumer joins a share group: the
// broker hands records to members one by one, locks each record it hands
// out (the record lock, 30s by default), and takes a per-record
// acknowledgement instead of an offset commit. More members than partitions
// all get work. The consumer maps the pipeline's outcome of each record to
// its acknowledgement:
//
//   - settled (a sink succeeded, a stage dropped it): accept;
//   - dead-lettered, its dead letter acknowledged: reject;
//   - handed back by ShareDeadLetters (a transient failure before the
//     record's last delivery, see Share groups: failures): release, and
//     the broker delivers it again, its delivery count one higher
//     (pipeline.Record.Deliveries);
//   - unfinished when its batch is given up (a shutdown's DrainTimeout, Stop,
//     a record held for lack of a DeadLetterer): release.
//
// # Share groups: batches
//
// franz-go accepts, at the next poll, every record of the previous poll that
// has not been acknowledged. So the consumer never polls while a record of
// the last poll is unacknowledged: it polls a batch (at most ShareMaxRecords
// records, default 500), opens ShareLanes (default 4) pipeline partitions
// per topic partition in the batch, hands each record to the lane of its
// key, closes the partitions (which finishes every record handed over,
// flushing windows and batches), acknowledges each record as it settles,
// releases what did not settle, and polls again. The next batch is fetched
// when it is polled, so that no record waits locked, and not renewed, in
// franz-go's buffer while a long batch is handled. Work runs in parallel across lanes and inside
// each as the pipeline allows (FanOut); the next batch starts when the
// slowest record of this one is done, so a batch is as slow as its slowest
// record.
//
// Records that take long are renewed (AckRenew, Kafka 4.2 and later) every
// ShareRenewEvery (default 10s) until they settle, so the broker does not
// hand them to another member while they are being handled; a record whose
// lock would expire before the first renewal (it waited in franz-go's
// buffer while the batch before it was handled) is renewed when its batch
// starts. Records polled as a shutdown begins are released unhandled.
//
// # Share groups: order
//
// A share group keeps no order: a released record comes back later, maybe to
// another member. Inside one batch, records of a partition reach the
// pipeline in offset order, each key's in one lane, so a key's records of
// one batch keep their order, not across batches. Window and Batch stages see one batch:
// each batch's pipeline partitions are closed at its end, which emits what
// windows hold early. Use time windows and cross-batch order with a classic
// Group.
//
// # Share groups: delivery limit
//
// The broker delivers a record at most its delivery count limit times
// (ShareDeliveryLimit, default 5, which the consumer sets as the group's
// share.delivery.count.limit at start) and then archives it: a record
// released on its last delivery is gone. Wrap the pipeline's DeadLetterer
// with ShareDeadLetters: it hands transient failures (classes exhausted,
// budget, deadline, error) back for redelivery before the last delivery
// and dead-letters them on it, with class pipeline.ClassDeliveryLimit;
// permanent failures (decode, panic, permanent) are dead-lettered at once
// and rejected. Without a DeadLetterer a failed record is held, released at
// the end of its batch, and archived by the broker after its last delivery
// (logged at ERROR).
//
// # Share groups: failures
//
// A plain pipeline.Sink retries a transient failure in place, with backoff,
// for as long as it lasts (see pipeline.Sink). In share mode that would
// hold the record's batch, and its member, as long as the failure lasts,
// while another member, or a later delivery, might succeed. So every
// record of a share group carries pipeline.Record.SinkAttempts, from
// ShareSinkAttempts (default 5): a plain sink calls its function at most
// that many times per delivery (with the pipeline's default SinkBackoff,
// about a second of retries) and then gives the record up as
// ClassExhausted. ShareDeadLetters hands it back (pipeline.ErrReleased),
// the consumer releases it, and the broker delivers it again, its
// delivery count one higher; on its last delivery (ShareDeliveryLimit) it
// is dead-lettered with class pipeline.ClassDeliveryLimit and rejected. A
// record released this way counts as pipeline.OutcomeReleased
// (sluice_records_handled_total{outcome="released"} and
// sluice_share_acks_total{kind="release"}), not as a dead letter. A
// pipeline's own SinkAttempts applies when it is lower, and a deadline
// (RecordBudget, a deadline header) still ends retries first.
//
// The cost is that a downstream outage, which a classic group waits out
// (An outage is not a poison pill), turns with a plain sink into
// releases and, after ShareDeliveryLimit deliveries, into dead letters.
// Guard such sinks with package handlers: a guard's retry policy replaces
// ShareSinkAttempts (it gives up with its own class, which is then
// released or dead-lettered the same way), and while its circuit breaker is
// open a record waits in its batch, its lock renewed, without spending a
// delivery.
//
// # Share groups: start
//
// Start says where a new share group starts: the consumer sets the group's
// share.auto.offset.reset (earliest by default) at start; a failure to set
// it (an ACL) is logged, and the broker's setting (latest by default) holds.
//
// # Share groups: not in share mode
//
// ExactlyOnce (share groups have no transactional acknowledgement),
// InstanceID, GroupProtocol, CommitInterval's commits, SessionTimeout,
// RebalanceTimeout, rebalance callbacks and the partition water marks (a
// batch is bounded by ShareMaxRecords) do not apply; New refuses
// ExactlyOnce, InstanceID and GroupProtocol(ProtocolConsumer) with
// ShareGroup and ignores the others.
//
// Status: a share group assigns no partitions of its own to a member, so
// Status.Assigned are the partitions of the member's current batch (until
// a poll comes back empty), Status.Unsettled the records of the batch not
// yet acknowledged (which the member holds acquired), and Status.Stalled
// the partitions of those records when none of the batch was acknowledged
// for StallAfter. Status.Joined turns true once a share group heartbeat is
// answered. metrics.Watch computes no lag for a share group member (there
// are no committed offsets).
//
// A record that never settles (a guarded sink waiting through an outage,
// a sink that does not return, a held failure behind a key-ordered FanOut)
// keeps its batch, and the member, waiting and renewing its lock, as it
// would stall a classic partition: give records a RecordBudget to bound
// it.
//
// Acknowledgements are told to HookShareAcked (accept, release, reject, as
// they are marked). Those the broker refuses or that cannot be sent (an
// expired lock, a lost connection) are logged at most every 10s per
// partition and told to HookShareAckError: their records come again, so a
// sink may see a record twice. Share groups are at least once, as consumer
// groups are.
package consumer
