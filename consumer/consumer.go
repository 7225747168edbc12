package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// ErrRunning is returned by Run when the consumer is already running or has
// run.
var ErrRunning = errors.New("consumer: Run called more than once")

// ErrClosed is returned by Run when the consumer was closed before Run.
var ErrClosed = errors.New("consumer: closed")

// Consumer consumes a set of topics as a member of a consumer group and hands
// each assigned partition's records to a pipeline.Handler. See the package
// documentation for its guarantees.
//
// The consumer's jobs live in separate files: its life (lifecycle.go: Run,
// Close, Stop, the poll loop), partition ownership and rebalances
// (rebalance.go), commits (commit.go), flow control (flow.go: water marks,
// pauses, blocked feeders, with its lock order), deleted and recreated
// topics (recreate.go), errors (errors.go) and Status (status.go).
type Consumer struct {
	cfg   cfg
	log   *slog.Logger
	hooks hooks
	cl    *kgo.Client
	flow  *flow
	txn   *txnState // exactly-once mode; nil: at least once
	ends  logEnds   // whether everything there is was read

	// workCtx is the parent of every partition's work context; Stop
	// cancels it.
	workCtx    context.Context
	cancelWork context.CancelFunc

	mu    sync.Mutex // a leaf: nothing else is taken while it is held
	owned map[pipeline.TopicPartition]*partition

	// commitMu orders periodic commits against revoke commits, so that a
	// periodic commit can never land after, and rewind, a revoke's final
	// commit.
	commitMu sync.Mutex

	joined   atomic.Bool                // the last group session assigned partitions (maybe none)
	shareNow atomic.Pointer[shareBatch] // share mode: the current batch, for Status
	conns    *connWatch                 // the last broker connection error
	auth     *authWatch                 // authentication and authorization failures in a row
	errLog   *errLog                    // rate limit of fetch error logs

	stateMu  sync.Mutex
	state    runState
	runStop  context.CancelFunc // cancels the poll loop: graceful shutdown
	runDone  chan struct{}      // closed when Run returned, or by Close if Run never ran
	allDone  chan struct{}      // closed when the client is closed too
	fatalErr error

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

// topicLister is a handler that knows the topics it reads: a
// *pipeline.Pipeline lists the topics of its Sources.
type topicLister interface{ Topics() []string }

// configure applies and validates options.
func configure(opts []Opt) (cfg, error) {
	c := defaults()
	for _, o := range opts {
		if o == nil {
			return c, &sluice.ConfigError{Package: "consumer", Option: "Opt", Reason: "nil option"}
		}
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
			return c, &sluice.ConfigError{Package: "consumer", Option: "Handle", Reason: err.Error(), Err: err}
		}
	}
	if err := c.resolveTopics(); err != nil {
		return c, err
	}
	return c, nil
}

// resolveTopics takes the topics from the handler, which must list them:
// a topic is named once, where it is read (a pipeline's Source).
func (c *cfg) resolveTopics() error {
	tl, ok := c.handler.(topicLister)
	if !ok {
		return &sluice.ConfigError{Package: "consumer", Option: "Handle", Value: fmt.Sprintf("%T", c.handler),
			Reason: "the handler does not list the topics it reads (a method Topics() []string, as *pipeline.Pipeline has)"}
	}
	reads := tl.Topics()
	if len(reads) == 0 {
		return &sluice.ConfigError{Package: "consumer", Option: "Handle", Reason: "the handler reads no topic"}
	}
	for i, t := range reads {
		if t == "" {
			return &sluice.ConfigError{Package: "consumer", Option: "Handle", Reason: fmt.Sprintf("the handler's topic %d is empty", i)}
		}
	}
	c.topics = slices.Clone(reads)
	return nil
}

// New validates the options and creates a consumer. It does not contact the
// brokers; Run joins the group.
func New(opts ...Opt) (*Consumer, error) {
	cfg, err := configure(opts)
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg}
	if c.cfg.share != nil {
		c.log = c.cfg.logger.With("share_group", c.cfg.share.group)
	} else {
		c.log = c.cfg.logger.With("group", c.cfg.group)
	}
	c.hooks = c.cfg.hooks
	c.owned = make(map[pipeline.TopicPartition]*partition)
	c.errLog = newErrLog(fetchErrorEvery)
	c.recreated = make(map[string]bool)
	c.fromStart = make(map[string]bool)
	c.resetAt = make(map[string]time.Time)
	c.runDone = make(chan struct{})
	c.allDone = make(chan struct{})
	c.workCtx, c.cancelWork = context.WithCancel(context.Background())
	c.conns = new(connWatch)
	c.auth = newAuthWatch(c.cfg.authFailures)
	// The client is created without topics, so the group is not joined
	// until Run adds them.
	var cl *kgo.Client
	switch {
	case c.cfg.share != nil:
		cl, err = kgo.NewClient(c.cfg.shareClientOpts(c)...)
	case c.cfg.eos != nil:
		cl, c.txn, err = newTxnClient(c.cfg.clientOpts(c))
	default:
		cl, err = kgo.NewClient(c.cfg.clientOpts(c)...)
	}
	if err != nil {
		c.cancelWork()
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c.cl = cl
	if c.cfg.eos != nil {
		for _, w := range c.cfg.eos.writers {
			if err := w.InTransactions(cl); err != nil {
				cl.Close()
				c.cancelWork()
				return nil, &sluice.ConfigError{Package: "consumer", Option: "ExactlyOnce", Reason: fmt.Sprintf("writer %T: %v", w, err), Err: err}
			}
		}
	}
	c.flow = newFlow(&c.cfg, cl, c.hooks)
	sasls, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	c.conns.mu.Lock()
	c.conns.result = func(broker string, connected bool, err error) {
		if err == nil {
			c.auth.ok("", AuthSASL, AuthTLS)
		} else if e := classifyConnect(broker, connected, len(sasls) > 0, err); e != nil {
			c.authFailed(e)
		}
	}
	c.conns.mu.Unlock()
	return c, nil
}

func kslogAdapter(l *slog.Logger) kgo.Logger { return kslog.New(l.With("lib", "franz-go")) }

// Client returns the franz-go client, for producing (dead letters) or for
// admin requests with kadm. Do not consume or commit with it.
func (c *Consumer) Client() *kgo.Client { return c.cl }

// Topics returns the topics the consumer reads: those its handler lists.
func (c *Consumer) Topics() []string { return slices.Clone(c.cfg.topics) }
