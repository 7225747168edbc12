package main

import (
	"fmt"

	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
)

// The share scenario runs the kill loop with members of a share group
// (the reference consumer's --share-group, consumer.ShareGroup): more
// members than partitions, records handed out one by one and acknowledged
// one by one. A killed member's unacknowledged records come back to the
// others when their record lock expires (3s here), so share groups are at
// least once: the check counts duplicates without bounding them, keeps no
// order, and reads no commits (check.Expectations.Share); nothing may be
// lost, and every record must end as expected, handled or, for the poison
// records mixed into the load, in the dead-letter topic.
//
// The outage scenario stops the sink for 15s under a share group: the
// reference consumer's guard (retry, then a breaker whose open state does
// not spend attempts) holds the records in their batches, their locks
// renewed every second, so none may reach its delivery limit and be
// dead-lettered: an outage is not a poison pill in share mode either.
func init() {
	scenarios = append(scenarios,
		scenario{
			name:   "kill-share",
			what:   "kill in a share group: 4 members on 2 partitions under load, with poison records; for 50s, SIGKILL a random one at a random point and restart it at once, the next kill 0.5-3s after every partition delivered again; record lock 3s, share session timeout 3s, heartbeat 500ms",
			expect: check.Expectations{Share: true},
			run:    scKillShare,
		},
		scenario{
			name:   "sink-outage-share",
			what:   "sink outage in a share group: 3 members on 2 partitions under load; the sink fails every call for 15s, then recovers; record lock 3s, renewed every 1s; delivery limit 5",
			expect: check.Expectations{Share: true},
			run:    scOutageShare,
		},
	)
}

// Share group timers of the scenario: a killed member's records come back
// after shareLock at the latest.
const (
	shareLock      = 3 * time.Second
	shareSession   = 3 * time.Second
	shareHeartbeat = 500 * time.Millisecond
	shareParts     = 2
)

func scKillShare(r *run) error {
	names := []string{"q1", "q2", "q3", "q4"}
	p, err := r.shareStart(poisonEvery, names...)
	if err != nil {
		return err
	}
	if err := r.killLoop(); err != nil {
		return err
	}
	err = p.close(time.Minute)
	r.noteShareWork(names)
	return err
}

func scOutageShare(r *run) error {
	r.memberArgs = append(r.memberArgs, "--share-renew-every", "1s")
	names := []string{"q1", "q2", "q3"}
	p, err := r.shareStart(0, names...)
	if err != nil {
		return err
	}
	r.sinkOutage()
	opened := 0
	for _, m := range r.live() {
		opened += len(m.logMatches(breakerOpened, 1000))
	}
	if opened == 0 {
		r.failf("no member's breaker opened during the outage")
	}
	r.notef("the members' breakers opened %d times", opened)
	err = p.close(time.Minute)
	r.noteShareWork(names)
	return err
}

// shareStart starts a share group run: the broker with its share timers,
// the named members, and the steady load on shareParts partitions (one
// record in poison a poison record, none for 0); it waits until every
// member has handled records.
func (r *run) shareStart(poison int, names ...string) (*producer, error) {
	r.share, r.parts = true, shareParts
	r.memberArgs = append(r.memberArgs, "--drain-timeout", "3s")
	if err := r.begin(brokerOpts{}); err != nil {
		return nil, err
	}
	if err := r.configureShare(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, err := r.startMember(n); err != nil {
			return nil, err
		}
	}
	p, err := r.newProducer(r.topic, 1, keys)
	if err != nil {
		return nil, err
	}
	p.poisonEvery = poison // dead-lettered at once, and rejected
	p.load(rate)
	if !waitFor(time.Minute, func() bool { return len(r.handledBy()) == len(names) }) {
		r.failf("not every member got work within a minute: %v", r.handledBy())
	}
	return p, nil
}

// noteShareWork notes how many records each member handled, and fails the
// run if one handled none.
func (r *run) noteShareWork(names []string) {
	by := r.handledBy()
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, by[n]))
		if by[n] == 0 {
			r.failf("member %s handled nothing", n)
		}
	}
	r.notef("records handled per member (all incarnations) by the end of the load: %s; %d members share %d partitions", strings.Join(parts, ", "), len(names), shareParts)
}

// configureShare sets the broker's share group timers (kfake reads them
// from the broker's configuration) and its lock sweep, so that a killed
// member's records are redelivered within seconds.
func (r *run) configureShare() error {
	broker := func(key string, d time.Duration) kmsg.IncrementalAlterConfigsRequestResource {
		return configResource(kmsg.ConfigResourceTypeBroker, "", key, millis(d))
	}
	return r.alterConfigs("the share group",
		broker("group.share.record.lock.duration.ms", shareLock),
		broker("share.record.lock.sweep.interval.ms", 100*time.Millisecond),
		broker("group.share.session.timeout.ms", shareSession),
		broker("group.share.heartbeat.interval.ms", shareHeartbeat),
	)
}

// handledBy counts the H events in the ledgers by member (its name
// without the incarnation).
func (r *run) handledBy() map[string]int {
	r.poll()
	r.mu.Lock()
	defer r.mu.Unlock()
	by := map[string]int{}
	for _, m := range r.members {
		base, _, _ := strings.Cut(m.name, ".")
		for _, e := range r.tails[m.ledgerPath].File().Events {
			if e.Kind == ledger.Handled {
				by[base]++
			}
		}
	}
	return by
}
