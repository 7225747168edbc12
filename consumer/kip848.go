package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// Protocol is the consumer group protocol a member speaks. See
// GroupProtocol.
type Protocol int

const (
	// ProtocolClassic is the classic protocol (JoinGroup and SyncGroup)
	// with the cooperative-sticky balancer run by the group's leader, a
	// member. It is the default.
	ProtocolClassic Protocol = iota
	// ProtocolConsumer is the next-generation protocol of KIP-848
	// (ConsumerGroupHeartbeat, Kafka 4.0+): the broker's group
	// coordinator assigns partitions with its uniform assignor, and a
	// membership change moves only the partitions it has to, member by
	// member, without stopping the group. A broker that does not serve it
	// gets the classic protocol.
	ProtocolConsumer
)

func (p Protocol) String() string {
	switch p {
	case ProtocolClassic:
		return "classic"
	case ProtocolConsumer:
		return "consumer"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// protocolOpts are the franz-go options of the group protocol. Both
// protocols keep the cooperative-sticky balancer: it is what franz-go's
// KIP-848 mode maps to the broker's "uniform" assignor, and it is what the
// classic protocol falls back to when the broker does not serve KIP-848, so
// that a fallback is still cooperative (an eager balancer would revoke
// every partition at every rebalance).
func (c *cfg) protocolOpts() []kgo.Opt {
	if c.protocol != ProtocolConsumer {
		return nil
	}
	return []kgo.Opt{kgo.ServerSideBalancer()}
}

// validateProtocol checks the group protocol against the rest of the
// configuration.
func (c *cfg) validateProtocol() error {
	bad := func(format string, args ...any) error {
		return &sluice.ConfigError{Package: "consumer", Option: "GroupProtocol", Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.protocol != ProtocolClassic && c.protocol != ProtocolConsumer:
		return bad("unknown protocol %d", c.protocol)
	case c.protocol == ProtocolConsumer && c.eos != nil:
		// franz-go's transactional session handles KIP-848's epochs,
		// but the consumer's exactly-once mode has not been tested
		// under it (aborts on revoke, fenced commits): refuse rather
		// than promise.
		return bad("ExactlyOnce is not supported with ProtocolConsumer yet; use ProtocolClassic")
	case c.protocol == ProtocolConsumer && c.share != nil:
		return bad("a share group (ShareGroup) has its own protocol; GroupProtocol applies to consumer groups")
	}
	return nil
}

// staleRetryWait is how long a final commit refused with
// STALE_MEMBER_EPOCH waits before it tries again: about a heartbeat round
// trip, for the member to learn its new epoch.
const staleRetryWait = 200 * time.Millisecond

// isStale reports whether a commit failed because its member epoch was not
// the broker's current one (KIP-848). franz-go retries such commits itself
// only while its heartbeat moves the epoch forward, and before Kafka 4.3
// (KIP-1251, assignment epochs) the broker refuses a commit whose epoch was
// bumped by an assignment change it raced with, during ordinary operation.
// franz-go answers REBALANCE_IN_PROGRESS for the partitions it dropped from
// such a retry because the member no longer owns them (revoked ones).
func isStale(err error) bool {
	return errors.Is(err, kerr.StaleMemberEpoch) || errors.Is(err, kerr.RebalanceInProgress)
}

// retryStale commits again, until deadline, the partitions of failed whose
// commit the broker refused for a stale member epoch, and returns what
// still failed. It runs only under ProtocolConsumer and only for final
// commits (revoke and shutdown), where a commit that does not land means
// the next owner handles settled records again.
//
// Retrying is safe, and cannot commit over another member's offsets: a
// partition being revoked under KIP-848 is not given to another member
// until this member acknowledges the revocation in a heartbeat, and
// franz-go sends that acknowledgement only after OnPartitionsRevoked (which
// runs this commit) has returned; at shutdown the member has not left the
// group yet. A commit of the same offset twice is harmless. A periodic
// commit refused this way is not retried here: the partition is still
// owned, and the next interval commits it.
func (c *Consumer) retryStale(ctx context.Context, ps []*partition, failed map[pipeline.TopicPartition]commitFailure, deadline time.Time) map[pipeline.TopicPartition]commitFailure {
	if c.cfg.protocol != ProtocolConsumer {
		return failed
	}
	for attempt := 1; ; attempt++ {
		var again []*partition
		for _, p := range ps {
			if f, ok := failed[p.tp]; ok && isStale(f.err) {
				again = append(again, p)
			}
		}
		if len(again) == 0 {
			return failed
		}
		left := time.Until(deadline)
		if left <= staleRetryWait {
			return failed
		}
		c.log.Info("final commit refused for a stale member epoch; committing again with the current epoch",
			"partitions", len(again), "attempt", attempt)
		t := time.NewTimer(staleRetryWait)
		select {
		case <-t.C:
		case <-c.workCtx.Done(): // Stop: commit what is settled at once
			t.Stop()
		}
		retried := c.commit(ctx, again, time.Until(deadline))
		for _, p := range again {
			if f, ok := retried[p.tp]; ok {
				failed[p.tp] = f
			} else {
				delete(failed, p.tp)
			}
		}
		if c.workCtx.Err() != nil {
			return failed
		}
	}
}
