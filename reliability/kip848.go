package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/reliability/check"
)

// The KIP-848 scenarios run the kill and rebalance-storm scenarios with
// members that speak the next-generation group protocol (the reference
// consumer's --group-protocol consumer, consumer.ProtocolConsumer): the
// broker assigns partitions, and a member learns of a change on its next
// heartbeat. Under KIP-848 the session timeout is the group's
// (consumer.session.timeout.ms, set on the group before the members join)
// and the heartbeat interval the broker's (group.consumer.heartbeat.interval.ms;
// kfake accepts the group-level consumer.heartbeat.interval.ms but does not
// use it), not the members' --session-timeout. The checks are the same as
// for the classic scenarios: nothing lost, no duplicates beyond what kills
// explain, and none at all in the storm, whose moves are all graceful.
func init() {
	scenarios = append(scenarios,
		scenario{
			name:   "kill-kip848",
			what:   "kill under KIP-848: 3 consumers under load; for 50s, SIGKILL a random one at a random point and restart it at once, the next kill 0.5-3s after the group recovered; group session timeout 3s, heartbeat 500ms, rebalance timeout 6s",
			expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
			run:    scKill848,
		},
		scenario{
			name: "rebalance-storm-kip848",
			what: "rebalance-storm under KIP-848: 2 steady consumers; every second a consumer joins or one of up to 3 extra ones leaves gracefully (SIGTERM), for 60s under load; group session timeout 10s, heartbeat 500ms",
			run:  scStorm848,
		},
	)
}

// kip848Heartbeat is the broker's heartbeat interval in the KIP-848
// scenarios: a member learns of an assignment change within it.
const kip848Heartbeat = 500 * time.Millisecond

func scKill848(r *run) error {
	r.memberArgs = []string{"--group-protocol", "consumer", "--session-timeout", "3s", "--rebalance-timeout", "6s", "--drain-timeout", "3s"}
	p, err := r.standard848(3*time.Second, "c1", "c2", "c3")
	if err != nil {
		return err
	}
	if err := r.killLoop(); err != nil {
		return err
	}
	err = p.close(time.Minute)
	r.checkSpoke848()
	return err
}

func scStorm848(r *run) error {
	r.memberArgs = []string{"--group-protocol", "consumer", "--session-timeout", "10s"}
	p, err := r.standard848(10*time.Second, "s1", "s2")
	if err != nil {
		return err
	}
	if err := r.storm(60 * time.Second); err != nil {
		return err
	}
	err = p.close(time.Minute)
	r.checkSpoke848()
	return err
}

// checkSpoke848 makes sure the members used KIP-848: franz-go logs when it
// begins to manage a next-gen group, and when it falls back to the classic
// protocol for lack of broker support.
func (r *run) checkSpoke848() {
	r.mu.Lock()
	ms := append([]*member(nil), r.members...)
	r.mu.Unlock()
	nextGen := 0
	for _, m := range ms {
		b, err := os.ReadFile(m.logPath)
		if err != nil {
			r.failf("read %s's log: %v", m.name, err)
			continue
		}
		if bytes.Contains(b, []byte("falling back to standard consumer group management")) {
			r.failf("%s fell back to the classic protocol", m.name)
		}
		if bytes.Contains(b, []byte("beginning to manage the next-gen group lifecycle")) {
			nextGen++
		}
	}
	if nextGen == 0 {
		r.failf("no member logged that it manages a next-gen (KIP-848) group")
	} else {
		r.notef("%d of %d member incarnations logged that they manage a KIP-848 group; none fell back to the classic protocol", nextGen, len(ms))
	}
}

// standard848 is standard for a KIP-848 group: the broker, the group's
// session timeout and the broker's heartbeat interval, the named members
// (waiting for their assignments) and the steady load.
func (r *run) standard848(session time.Duration, names ...string) (*producer, error) {
	if err := r.begin(brokerOpts{}); err != nil {
		return nil, err
	}
	if err := r.configure848(session); err != nil {
		return nil, err
	}
	if _, err := r.startMembers(names...); err != nil {
		return nil, err
	}
	return r.loaded()
}

// configure848 sets the group's consumer.session.timeout.ms and the
// broker's group.consumer.heartbeat.interval.ms.
func (r *run) configure848(session time.Duration) error {
	return r.alterConfigs("the KIP-848 group",
		configResource(kmsg.ConfigResourceTypeGroupConfig, r.group, "consumer.session.timeout.ms", millis(session)),
		configResource(kmsg.ConfigResourceTypeBroker, "", "group.consumer.heartbeat.interval.ms", millis(kip848Heartbeat)),
	)
}

// millis is d in milliseconds, as Kafka's *.ms configs take it.
func millis(d time.Duration) string { return strconv.Itoa(int(d.Milliseconds())) }

// configResource sets key to value on one resource (a group, the broker).
func configResource(typ kmsg.ConfigResourceType, name, key, value string) kmsg.IncrementalAlterConfigsRequestResource {
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = typ, name
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op = key, kmsg.IncrementalAlterConfigOpSet
	c.Value = kmsg.StringPtr(value)
	res.Configs = append(res.Configs, c)
	return res
}

// alterConfigs applies resources to the run's broker; what names them in
// errors.
func (r *run) alterConfigs(what string, resources ...kmsg.IncrementalAlterConfigsRequestResource) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.broker.addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	req.Resources = resources
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("configure %s: %w", what, err)
	}
	for _, res := range resp.Resources {
		if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
			return fmt.Errorf("configure %s: %s %q: %w", what, res.ResourceType, res.ResourceName, err)
		}
	}
	return nil
}
