package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/internal/kafkatest"
)

// The tests of this file pin down how kfake's KIP-848 groups differ from
// Kafka's, speaking the protocol by hand. They pass against kfake as it
// is; a kfake that changes fails them, and then the KIP-848 tests above
// should be looked at again.

// hb848 is a member speaking ConsumerGroupHeartbeat by hand.
type hb848 struct {
	t      *testing.T
	kc     *kafkatest.Cluster
	group  string
	id     string
	epoch  int32
	owned  []kmsg.ConsumerGroupHeartbeatRequestTopic
	topic  string
	lastHB int32 // the HeartbeatIntervalMillis of the last response
}

func (m *hb848) heartbeat() {
	m.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.MemberEpoch = m.group, m.id, m.epoch
	req.RebalanceTimeoutMillis = 10_000
	req.SubscribedTopicNames = []string{m.topic}
	req.Topics = append([]kmsg.ConsumerGroupHeartbeatRequestTopic{}, m.owned...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, m.kc.Client(m.t))
	if err != nil {
		m.t.Fatalf("heartbeat: %v", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		m.t.Fatalf("heartbeat of %s at epoch %d: %v", m.id, m.epoch, err)
	}
	m.epoch = resp.MemberEpoch
	m.lastHB = resp.HeartbeatIntervalMillis
	if resp.Assignment != nil {
		m.owned = nil
		for _, t := range resp.Assignment.Topics {
			rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
			rt.TopicID, rt.Partitions = t.TopicID, t.Partitions
			m.owned = append(m.owned, rt)
		}
	}
}

func (m *hb848) partitions() int {
	n := 0
	for _, t := range m.owned {
		n += len(t.Partitions)
	}
	return n
}

// commit commits offset 1 for the member's first owned partition at
// epoch and returns the partition's error.
func (m *hb848) commit(epoch int32) error {
	m.t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = m.group, m.id, epoch
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = m.topic, m.owned[0].TopicID
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = m.owned[0].Partitions[0], 1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, m.kc.Client(m.t))
	if err != nil {
		m.t.Fatalf("commit: %v", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			return kerr.ErrorForCode(p.ErrorCode)
		}
	}
	m.t.Fatal("the commit response names no partition")
	return nil
}

// TestKfake848AcceptsCommitsAtAnOlderEpoch pins kfake's KIP-1251
// behaviour (Kafka 4.3's assignment epochs): a member whose epoch moved on
// (a second member joined and the first gave up a partition) may still
// commit, at its previous epoch, a partition it has owned since then.
// Kafka 4.0-4.2 refuses such a commit with STALE_MEMBER_EPOCH: the race
// franz-go's ServerSideBalancer doc warns about, which on kfake therefore
// never happens by itself (TestKIP848StaleCommit* inject it). A commit at
// an epoch above the member's is refused by both.
func TestKfake848AcceptsCommitsAtAnOlderEpoch(t *testing.T) {
	const topic = "kfake848epoch"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 2))
	a := &hb848{t: t, kc: kc, group: "g848", id: "member-a-0123456789", topic: topic}
	a.heartbeat()
	a.heartbeat() // acknowledge
	if a.partitions() != 2 {
		t.Fatalf("member a owns %d partitions, want 2", a.partitions())
	}
	first := a.epoch
	b := &hb848{t: t, kc: kc, group: "g848", id: "member-b-0123456789", topic: topic}
	b.heartbeat()
	// a hears of b, gives up a partition and acknowledges, until its
	// epoch moves.
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		a.heartbeat()
		b.heartbeat()
		return a.epoch > first && a.partitions() == 1
	}, "member a's epoch never moved on after b joined (epoch %d, %d partitions)", a.epoch, a.partitions())
	if err := a.commit(first); err != nil {
		t.Fatalf("commit at the previous epoch %d (current %d): %v; kfake used to accept it (KIP-1251)", first, a.epoch, err)
	}
	if err := a.commit(a.epoch + 1); err == nil || !isStaleErr(err) {
		t.Fatalf("commit at an epoch above the member's: %v, want STALE_MEMBER_EPOCH", err)
	}
}

func isStaleErr(err error) bool { return errors.Is(err, kerr.StaleMemberEpoch) }

// TestKfake848IgnoresTheGroupHeartbeatInterval pins that kfake accepts the
// group config consumer.heartbeat.interval.ms but answers heartbeats with
// the broker's group.consumer.heartbeat.interval.ms (Kafka uses the
// group's). The reliability suite's KIP-848 scenarios set the broker's.
func TestKfake848IgnoresTheGroupHeartbeatInterval(t *testing.T) {
	const topic = "kfake848hb"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.consumer.heartbeat.interval.ms": "700",
	})))
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "ghb"
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = "consumer.heartbeat.interval.ms", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("300")
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, kc.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("set the group's heartbeat interval: %v", err)
	}
	m := &hb848{t: t, kc: kc, group: "ghb", id: "member-hb-0123456789", topic: topic}
	m.heartbeat()
	if m.lastHB != 700 {
		t.Fatalf("heartbeat interval %d ms; kfake answered the broker's 700 (the group's is 300): did kfake start using group configs? "+
			"then reliability/kip848.go can set it on the group", m.lastHB)
	}
}
