package consumer

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// Opt configures a Consumer.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

// StartOffset says where a group with no committed offset for a partition
// starts reading it.
type StartOffset int

const (
	// Earliest starts at the log start: nothing already in the topic is
	// skipped. This is the default, because the alternative silently skips
	// records.
	Earliest StartOffset = iota
	// Latest starts at the log end: only records produced after the group
	// first sees the partition are read.
	Latest
)

// Water marks bound unsettled work. See MaxUnsettled.
type Water struct {
	// Records is the high-water mark in records.
	Records int
	// Bytes is the high-water mark in bytes (key + value + headers + a fixed
	// per-record overhead).
	Bytes int64
}

type cfg struct {
	conn    sluice.Connection
	group   string
	topics  []string // the handler's
	handler pipeline.Handler

	commitInterval   time.Duration
	drainTimeout     time.Duration
	closeGrace       time.Duration
	stallAfter       time.Duration
	recordBudget     time.Duration
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	start            StartOffset

	partHigh, totalHigh Water
	lowWater            float64

	logger    *slog.Logger
	hooks     []Hook
	kgoOpts   []kgo.Opt
	instance  string
	fetchWait time.Duration

	authFailures int

	eos        *eosCfg       // exactly-once mode; nil: at least once
	txnTimeout time.Duration // TransactionTimeout; zero: derived

	protocol Protocol // group protocol; default ProtocolClassic

	share *shareCfg // share-group mode (ShareGroup); nil: a consumer group
}

func defaults() cfg {
	return cfg{
		commitInterval:   time.Second,
		drainTimeout:     30 * time.Second,
		closeGrace:       5 * time.Second,
		stallAfter:       2 * time.Minute,
		sessionTimeout:   45 * time.Second,
		rebalanceTimeout: 60 * time.Second,
		partHigh:         Water{Records: 10_000, Bytes: 16 << 20},
		totalHigh:        Water{Records: 100_000, Bytes: 128 << 20},
		lowWater:         0.5,
		// How long the broker holds a fetch that finds no data. It
		// also bounds how long a partition resumed after a pause waits
		// for its first fetch: the fetch in flight while it was paused
		// left it out, and if every partition it did ask for is caught
		// up, the broker holds it this long (franz-go sends one fetch
		// per broker at a time). At 500ms an ETL run whose partitions
		// ended unevenly idled half a second per pause near its end
		// (bench/etl); 100ms costs an idle member ten empty fetches a
		// second per broker.
		fetchWait:    100 * time.Millisecond,
		authFailures: 5,
	}
}

// Connection says how to reach the cluster: the seed brokers (required),
// TLS, a SASL mechanism and the client ID (default "sluice"). Required.
// Give the same sluice.Connection to the dead-letter publisher
// (dlq.Connection) and to a Kafka sink's writer (kafka.Connection of
// sinks/kafka), so that the settings are written once.
func Connection(conn sluice.Connection) Opt { return optFunc(func(c *cfg) { c.conn = conn }) }

// Group sets the consumer group. Required, unless ShareGroup is given.
func Group(name string) Opt { return optFunc(func(c *cfg) { c.group = name }) }

// ShareGroup makes the consumer a member of the share group name (KIP-932,
// queues for Kafka) instead of a consumer group: records are handed to
// members one by one and acknowledged one by one (accept, release, reject),
// and more members than partitions all get work. No order is kept. It
// excludes Group, ExactlyOnce and InstanceID. See Share groups in the
// package doc for how outcomes map to acknowledgements, and
// ShareDeadLetters for the delivery limit.
func ShareGroup(name string) Opt {
	return shareOpt(func(s *shareCfg) { s.group = name })
}

// Handle sets what handles records, and so which topics the consumer reads:
// a handler lists them with a method Topics() []string, as a
// *pipeline.Pipeline lists the topics of its Sources (each topic is named
// once, in its Source). Required.
func Handle(h pipeline.Handler) Opt { return optFunc(func(c *cfg) { c.handler = h }) }

// CommitInterval sets how often settled watermarks are committed while
// running, overriding the default of 1s; once the consumer has read
// everything there is (every partition's last fetch reached the end of its
// log), every quarter of it, so that a consumer with no backlog commits
// sooner. Commits also happen on revoke and on shutdown. Shorter means
// fewer records handled twice after a crash, at the cost of more commit
// requests (one per interval, and none while no watermark moved). With
// ExactlyOnce it is the length of a transaction.
func CommitInterval(d time.Duration) Opt { return optFunc(func(c *cfg) { c.commitInterval = d }) }

// DrainTimeout bounds how long a revoke or shutdown waits for in-flight
// records to settle, overriding the default of 30s. When it passes, their
// contexts are cancelled and only settled work is committed; the rest is
// handled again by the partition's next owner. It must be shorter than the
// rebalance timeout, or the group evicts the member while it drains.
func DrainTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.drainTimeout = d }) }

// CloseGrace bounds how long the consumer waits, after cancelling a
// partition's work, for that work to stop, overriding the default of 5s. Work
// that ignores its context past this is abandoned (and logged) so that a
// rebalance or shutdown cannot hang on it.
func CloseGrace(d time.Duration) Opt { return optFunc(func(c *cfg) { c.closeGrace = d }) }

// StallAfter sets how long a partition may hold unsettled records without its
// commit watermark moving before Status reports it stalled, overriding the
// default of 2m. Progress is checked every CommitInterval. A stall is a
// signal (a stuck record, a sink that is down), not an error: the consumer
// keeps waiting.
func StallAfter(d time.Duration) Opt { return optFunc(func(c *cfg) { c.stallAfter = d }) }

// RecordBudget gives every record a deadline this long after it was
// fetched, overriding the default of none. A pipeline.DeadlineHeader set
// upstream wins when it is earlier. Guards stop retrying a record whose
// deadline has passed and dead-letter it.
func RecordBudget(d time.Duration) Opt { return optFunc(func(c *cfg) { c.recordBudget = d }) }

// SessionTimeout sets the group session timeout, overriding the default of
// 45s: how long the broker waits without heartbeats before it evicts the
// member, and so how long a crashed member's partitions wait before another
// member takes them. Heartbeats go every third of it, at most every 3s.
func SessionTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.sessionTimeout = d }) }

// RebalanceTimeout sets how long a member may take to rejoin during a
// rebalance, overriding the default of 60s. It bounds DrainTimeout.
func RebalanceTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.rebalanceTimeout = d }) }

// Start sets where a partition without a committed offset starts,
// overriding the default Earliest.
func Start(s StartOffset) Opt { return optFunc(func(c *cfg) { c.start = s }) }

// MaxUnsettled sets the high-water marks of unsettled records per partition
// and in total, overriding the defaults of 10,000 records / 16 MiB per
// partition and 100,000 records / 128 MiB in total. A zero field keeps its
// default.
//
// Records are handed to the handler only while the partition and the total
// stay under their marks, so unsettled work never exceeds them (except that a
// single record larger than the byte mark is handed over alone). Fetched
// records not yet handed over count too: at a high-water mark the partition's
// fetches pause (or every partition's, for the total), and they resume below
// the low-water mark. Memory is therefore bounded by the marks plus one fetch
// per partition, whatever the backlog; fetch sizes are capped to the marks.
func MaxUnsettled(perPartition, total Water) Opt {
	return optFunc(func(c *cfg) {
		if perPartition.Records != 0 {
			c.partHigh.Records = perPartition.Records
		}
		if perPartition.Bytes != 0 {
			c.partHigh.Bytes = perPartition.Bytes
		}
		if total.Records != 0 {
			c.totalHigh.Records = total.Records
		}
		if total.Bytes != 0 {
			c.totalHigh.Bytes = total.Bytes
		}
	})
}

// LowWater sets the low-water mark as a fraction of the high-water marks,
// overriding the default of 0.5. Paused fetches resume once buffered work
// falls to it. Higher resumes sooner and keeps the pipe fuller at the cost of
// more pause/resume churn.
func LowWater(fraction float64) Opt { return optFunc(func(c *cfg) { c.lowWater = fraction }) }

// Logger sets the logger, overriding slog.Default(). franz-go's own logs go
// to it too. Payloads are never logged; neither are credentials.
func Logger(l *slog.Logger) Opt { return optFunc(func(c *cfg) { c.logger = l }) }

// Hooks adds observers, each implementing one or more of the Hook
// interfaces (a *metrics.Metrics implements them all); New rejects a value
// that implements none. Default none.
func Hooks(hs ...Hook) Opt { return optFunc(func(c *cfg) { c.hooks = append(c.hooks, hs...) }) }

// AuthFailures sets how many authentication or authorization failures of
// one kind in a row end Run with an *AuthError (ErrAuth), overriding the
// default of 5. A failure is a rejected SASL login (or a broker that closes
// the connection during it), a TLS handshake or certificate error, or a
// group or topic ACL that denies the consumer; a success of the same kind
// (a connection, a join, a fetch of the topic) starts the count again.
// franz-go retries every few hundred milliseconds to seconds, so the
// default ends a consumer with bad credentials within seconds. A negative
// value keeps retrying forever; the failure is still logged at ERROR,
// shown in Status.AuthErr and told to HookAuthError.
func AuthFailures(n int) Opt { return optFunc(func(c *cfg) { c.authFailures = n }) }

// GroupProtocol sets the consumer group protocol, overriding the default
// ProtocolClassic (cooperative-sticky, assigned by a member).
// ProtocolConsumer is KIP-848's: the broker assigns, and a join or leave
// moves only the partitions that change owner, member by member, without
// the group-wide JoinGroup barrier (docs/BENCHMARKS.md has rebalance times).
// It needs Kafka 4.0+ (a broker without it gets the classic protocol);
// its group session timeout and heartbeat interval are the broker's
// group.consumer.* settings (or the group's consumer.* configs), not
// SessionTimeout. Every promise of the package holds under both (drain on
// revoke, commit before release, lost partitions commit nothing). The
// default stays classic because before Kafka 4.3 (KIP-1251) the broker
// refuses, with STALE_MEMBER_EPOCH, commits that race with an assignment
// change; the consumer commits a refused final commit again with the
// current epoch (safe: the partition cannot move before the member
// acknowledges its revocation), and a periodic one at the next interval,
// but on such brokers expect those refusals in the logs. ExactlyOnce is
// not supported with ProtocolConsumer yet.
func GroupProtocol(p Protocol) Opt { return optFunc(func(c *cfg) { c.protocol = p }) }

// InstanceID makes the member static (KIP-345): a restart within the session
// timeout gets its partitions back without a rebalance.
func InstanceID(id string) Opt { return optFunc(func(c *cfg) { c.instance = id }) }

// ClientOpts passes options straight to the franz-go client, after Sluice's
// own; use it for what Sluice does not wrap (kprom metrics, kotel tracing,
// dialers). Options that change commit or rebalance behaviour break the
// consumer's guarantees.
func ClientOpts(opts ...kgo.Opt) Opt {
	return optFunc(func(c *cfg) { c.kgoOpts = append(c.kgoOpts, opts...) })
}

func (c *cfg) validate() error {
	bad := func(field, format string, args ...any) error {
		return &sluice.ConfigError{Package: "consumer", Option: field, Reason: fmt.Sprintf(format, args...)}
	}
	if err := c.conn.Check("consumer"); err != nil {
		return err
	}
	switch {
	case c.group == "" && c.share == nil:
		return bad("Group", "a consumer group name is required")
	case c.handler == nil:
		return bad("Handle", "a handler is required")
	case c.commitInterval <= 0:
		return bad("CommitInterval", "must be positive, got %v", c.commitInterval)
	case c.drainTimeout <= 0:
		return bad("DrainTimeout", "must be positive, got %v", c.drainTimeout)
	case c.closeGrace <= 0:
		return bad("CloseGrace", "must be positive, got %v", c.closeGrace)
	case c.stallAfter <= 0:
		return bad("StallAfter", "must be positive, got %v", c.stallAfter)
	case c.recordBudget < 0:
		return bad("RecordBudget", "must not be negative, got %v", c.recordBudget)
	case c.sessionTimeout <= 0:
		return bad("SessionTimeout", "must be positive, got %v", c.sessionTimeout)
	case c.authFailures == 0:
		return bad("AuthFailures", "must be positive, or negative to retry forever, got 0")
	case c.rebalanceTimeout <= 0:
		return bad("RebalanceTimeout", "must be positive, got %v", c.rebalanceTimeout)
	case c.drainTimeout >= c.rebalanceTimeout:
		return bad("DrainTimeout", "%v must be shorter than RebalanceTimeout %v, or the group evicts the member while it drains", c.drainTimeout, c.rebalanceTimeout)
	case c.start != Earliest && c.start != Latest:
		return bad("Start", "unknown start offset %d", c.start)
	case c.partHigh.Records < 1 || c.partHigh.Bytes < 1:
		return badField("MaxUnsettled", "perPartition", "per-partition marks must be positive, got %d records / %d bytes", c.partHigh.Records, c.partHigh.Bytes)
	case c.totalHigh.Records < 1 || c.totalHigh.Bytes < 1:
		return badField("MaxUnsettled", "total", "total marks must be positive, got %d records / %d bytes", c.totalHigh.Records, c.totalHigh.Bytes)
	case c.totalHigh.Records < c.partHigh.Records || c.totalHigh.Bytes < c.partHigh.Bytes:
		return badField("MaxUnsettled", "total", "the total marks (%d records / %d bytes) must not be below the per-partition marks (%d / %d)",
			c.totalHigh.Records, c.totalHigh.Bytes, c.partHigh.Records, c.partHigh.Bytes)
	case !(c.lowWater > 0 && c.lowWater < 1):
		return bad("LowWater", "must be a fraction between 0 and 1 (exclusive), got %v", c.lowWater)
	}
	for i, h := range c.hooks {
		if !isHook(h) {
			return &sluice.ConfigError{Package: "consumer", Option: "Hooks", Value: fmt.Sprintf("%T", h),
				Reason: fmt.Sprintf("hook %d implements none of the consumer's Hook interfaces (HookFetched, HookCommitted, ...)", i)}
		}
	}
	if err := c.validateEOS(); err != nil {
		return err
	}
	if err := c.validateShare(); err != nil {
		return err
	}
	if err := c.validateProtocol(); err != nil {
		return err
	}
	return nil
}

// badField is a *sluice.ConfigError naming a part of an option.
func badField(option, field, format string, args ...any) error {
	return &sluice.ConfigError{Package: "consumer", Option: option, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// clientOpts translates the config into franz-go options.
func (c *cfg) clientOpts(cs *Consumer) []kgo.Opt {
	start := kgo.NewOffset().AtStart()
	if c.start == Latest {
		start = kgo.NewOffset().AtEnd()
	}
	opts := append(c.conn.ClientOpts(),
		kgo.ConsumerGroup(c.group),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(cs.onAssigned),
		kgo.OnPartitionsRevoked(cs.onRevoked),
		kgo.OnPartitionsLost(cs.onLost),
		kgo.AdjustFetchOffsetsFn(cs.adjustOffsets),
		kgo.ConsumeResetOffset(start),
		kgo.SessionTimeout(c.sessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, c.sessionTimeout/3)),
		kgo.RebalanceTimeout(c.rebalanceTimeout),
		kgo.FetchMaxWait(c.fetchWait),
		// Cap fetches to the water marks so that a fetch never brings in
		// much more than the marks allow.
		kgo.FetchMaxPartitionBytes(int32(min(c.partHigh.Bytes, 1<<20))),
		kgo.FetchMaxBytes(int32(min(c.totalHigh.Bytes, 50<<20))),
		kgo.WithLogger(kslogAdapter(c.logger)),
		kgo.WithHooks(cs.conns),
	)
	if c.instance != "" {
		opts = append(opts, kgo.InstanceID(c.instance))
	}
	opts = append(opts, c.eosClientOpts()...)
	opts = append(opts, c.protocolOpts()...)
	return append(opts, c.kgoOpts...)
}
