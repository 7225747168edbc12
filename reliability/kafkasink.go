package main

// Scenarios of issue 18: the Kafka sink, exactly once (eos-kill, eos-storm,
// eos-broker-faults) and at least once (alo-kill), with the helpers they
// share.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
)

// Settings of the Kafka sink scenarios, by the rule for groups on kfake
// (kafkatest.GroupTimeouts(3s)): drain < rebalance timeout < session
// timeout. In exactly-once mode the drain timeout bounds a transaction's
// barrier, and the rebalance timeout is the transaction timeout.
const (
	ksDrain     = 3 * time.Second
	ksRebalance = 4500 * time.Millisecond
	ksSession   = 6750 * time.Millisecond
	// poisonEvery: one record in poisonEvery of the load is a poison
	// record (undecodable, panicking or rejected, in turn); a prime, so
	// that poison records fall on many keys and every partition.
	poisonEvery = 397
)

// outTopic is the Kafka sink's output topic.
func (r *run) outTopic() string { return r.topic + ".out" }

// txnStats are what the members' logs and ledgers say about transactions.
type txnStats struct {
	committed int            // transactions that committed offsets (runs of C events)
	aborted   int            // "transaction aborted" log lines
	reasons   map[string]int // aborted, by reason
}

var txnAborted = regexp.MustCompile(`"msg":"transaction aborted`)

// transactions counts the members' committed and aborted transactions.
func (r *run) transactions() txnStats {
	st := txnStats{reasons: map[string]int{}}
	r.poll()
	r.mu.Lock()
	members := slices.Clone(r.members)
	for _, t := range r.tails {
		prev := ledger.Kind(0)
		for _, e := range t.File().Events {
			if e.Kind == ledger.Committed && prev != ledger.Committed {
				st.committed++
			}
			prev = e.Kind
		}
	}
	r.mu.Unlock()
	for _, m := range members {
		for _, line := range m.logMatches(txnAborted, 0) {
			var rec struct{ Reason, On, Err string }
			_ = json.Unmarshal([]byte(line), &rec)
			st.aborted++
			if rec.Reason == "" {
				rec.Reason = "the transaction could not end: " + kafkaError(rec.Err)
			}
			st.reasons[fmt.Sprintf("on %s, %s", rec.On, rec.Reason)]++
		}
	}
	return st
}

var kafkaErrorName = regexp.MustCompile(`\b[A-Z][A-Z_]{5,}\b`)

// kafkaError names the Kafka error in err, or shortens err.
func kafkaError(err string) string {
	if name := kafkaErrorName.FindString(err); name != "" {
		return name
	}
	if line, _, _ := strings.Cut(err, "\n"); len(line) <= 80 {
		return line
	}
	return err[:80] + "..."
}

func (st txnStats) String() string {
	s := fmt.Sprintf("%d transactions committed offsets, %d aborted", st.committed, st.aborted)
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(st.reasons)) {
		parts = append(parts, fmt.Sprintf("%d %s", st.reasons[k], k))
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, "; ") + ")"
	}
	return s
}

// readOutputs reads the output topic and the dead-letter topic into in: in
// exactly-once mode with read_committed (and once more with
// read_uncommitted, to count what aborted transactions wrote), at least
// once as they are.
func (r *run) readOutputs(in *check.Input) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := []string{r.broker.addr}
	dlqTopic := r.topic + ".dlq"
	iso := kgo.ReadUncommitted()
	if r.sink == check.ExactlyOnce {
		iso = kgo.ReadCommitted()
	}
	in.Mode = r.sink
	var err error
	if in.Outputs, err = check.ReadOutputs(ctx, brokers, r.outTopic(), iso); err != nil {
		return err
	}
	if in.DeadLetters, err = check.ReadDeadLettersThrough(ctx, brokers, dlqTopic, iso); err != nil {
		return err
	}
	if r.sink != check.ExactlyOnce {
		return nil
	}
	in.SeenUncommitted = map[string]int{}
	for name, topic := range map[string]string{"outputs": r.outTopic(), "dead letters": dlqTopic} {
		n := 0
		if err := check.ReadThrough(ctx, brokers, topic, kgo.ReadUncommitted(), func(*kgo.Record) { n++ }); err != nil {
			return err
		}
		in.SeenUncommitted[name] = n
	}
	return nil
}

// openWork waits until m's ledger shows records handled (or, with the
// Kafka sink at least once, being written) since its last commit or abort,
// and returns how many: m is then in the middle of a transaction, or of a
// commit interval.
func (r *run) openWork(m *member, timeout time.Duration) (int, bool) {
	n := 0
	ok := waitFor(timeout, func() bool {
		r.poll()
		r.mu.Lock()
		defer r.mu.Unlock()
		rids := map[string]bool{}
		for _, e := range r.tails[m.ledgerPath].File().Events {
			switch e.Kind {
			case ledger.Committed, ledger.CommitFailed:
				clear(rids)
			case ledger.Handled, ledger.Writing, ledger.DeadLettered:
				rids[e.RID] = true
			}
		}
		n = len(rids)
		return n > 0
	})
	return n, ok
}

var fatalStop = regexp.MustCompile(`"msg":"consumer stopping on a fatal error"`)

// fatal returns ": " and the fatal error m's consumer stopped on, if its
// log has one.
func (m *member) fatal() string {
	if l := m.logMatches(fatalStop, 1); len(l) > 0 {
		return ": " + strings.ReplaceAll(excerpt(l[0]), "\n", " / ")
	}
	return ""
}

// latest returns the latest incarnation of the member called base.
func (r *run) latest(base string) *member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m *member
	for _, x := range r.members {
		if b, _, _ := strings.Cut(x.name, "."); b == base {
			m = x
		}
	}
	return m
}

// reviveCrashed restarts, as a supervisor would, every member whose
// latest incarnation exited on its own (neither killed nor stopped by the
// scenario), reporting each crash as a problem.
func (r *run) reviveCrashed() {
	r.mu.Lock()
	latest := map[string]*member{}
	for _, m := range r.members {
		base, _, _ := strings.Cut(m.name, ".")
		latest[base] = m
	}
	r.mu.Unlock()
	for _, base := range slices.Sorted(maps.Keys(latest)) {
		m := latest[base]
		if m.alive() || m.killed || m.stopping.Load() {
			continue
		}
		m.crashed = true
		r.failf("%s exited on its own%s (see %s); restarted", m.name, m.fatal(), m.logPath)
		if _, err := r.startMember(base); err != nil {
			r.failf("restart %s: %v", base, err)
		}
	}
}

// killMidWork SIGKILLs a random member for d, each time while it has
// uncommitted work (openWork), restarting it at once under the same name
// (so the same transactional ID), the next kill 0.5-3s after every
// partition delivered again.
func (r *run) killMidWork(d time.Duration, what string) {
	end := time.Now().Add(r.d(d))
	kills, stuck, idle, open := 0, 0, 0, 0
	for time.Now().Before(end) {
		time.Sleep(500*time.Millisecond + time.Duration(r.rnd.Int64N(int64(2500*time.Millisecond))))
		r.reviveCrashed()
		live := r.live()
		if len(live) == 0 {
			break
		}
		victim := live[r.rnd.IntN(len(live))]
		n, ok := r.openWork(victim, 5*time.Second)
		if ok {
			open += n
		} else {
			idle++
		}
		at, err := r.killAndRestart(victim)
		kills++
		if err != nil {
			r.failf("restart %s: %v", victim.name, err)
			return
		}
		if !r.waitProgress(at, time.Minute) {
			stuck++
		}
	}
	r.notef("%d SIGKILLs, each victim restarted at once under its name; %d of them with %s (%d records in all, %.0f a kill on average), %d with none within 5s",
		kills, kills-idle, what, open, float64(open)/float64(max(1, kills-idle)), idle)
	if stuck > 0 {
		r.notef("%d times the group did not deliver on every partition within a minute of a kill", stuck)
	}
}

// eosGroup configures members for a Kafka sink scenario.
func (r *run) eosGroup(mode check.SinkMode) {
	r.sink = mode
	r.memberArgs = groupArgs(ksSession, ksRebalance, ksDrain)
}

func scEOSKill(r *run) error {
	return r.killUnderLoad(check.ExactlyOnce, "outputs in its open transaction (handled since its last commit or abort)")
}

func scALOKill(r *run) error {
	return r.killUnderLoad(check.AtLeastOnce, "outputs written or being written since its last commit")
}

// killUnderLoad runs 3 members with the Kafka sink in mode under load, and
// kills them for 50s (killMidWork).
func (r *run) killUnderLoad(mode check.SinkMode, what string) error {
	r.eosGroup(mode)
	_, p, err := r.standard("c1", "c2", "c3")
	if err != nil {
		return err
	}
	r.killMidWork(50*time.Second, what)
	return p.close(time.Minute)
}

func scEOSStorm(r *run) error {
	r.eosGroup(check.ExactlyOnce)
	return r.stormUnderLoad()
}

func scEOSBrokerFaults(r *run) error {
	r.eosGroup(check.ExactlyOnce)
	r.useProxy = true
	_, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	r.phase(4 * time.Second)
	out, dlq := r.outTopic(), r.topic+".dlq"
	fault := func(key, err string, count int, topLevel bool) devbroker.FaultSpec {
		return devbroker.FaultSpec{Keys: []string{key}, Err: err, Count: count, TopLevel: topLevel}
	}
	produce := func(topic, err string, count int) devbroker.FaultSpec {
		return devbroker.FaultSpec{Keys: []string{"Produce"}, Topic: topic, Err: err, Count: count}
	}
	phases := []faultPhase{
		{"offsets refused in the transaction (TxnOffsetCommit ILLEGAL_GENERATION)", []devbroker.FaultSpec{fault("TxnOffsetCommit", "ILLEGAL_GENERATION", 2, false)}, 3 * time.Second},
		{"offsets not committable (TxnOffsetCommit COORDINATOR_NOT_AVAILABLE)", []devbroker.FaultSpec{fault("TxnOffsetCommit", "COORDINATOR_NOT_AVAILABLE", -1, false)}, 3 * time.Second},
		{"transaction coordinator moves (EndTxn NOT_COORDINATOR)", []devbroker.FaultSpec{fault("EndTxn", "NOT_COORDINATOR", 4, true)}, 3 * time.Second},
		{"transaction end of unknown outcome (EndTxn REQUEST_TIMED_OUT, not applied)", []devbroker.FaultSpec{fault("EndTxn", "REQUEST_TIMED_OUT", 2, true)}, 3 * time.Second},
		{"offsets added to the transaction but answered REQUEST_TIMED_OUT (TxnOffsetCommit, applied)", []devbroker.FaultSpec{fault("TxnOffsetCommit", "REQUEST_TIMED_OUT", 2, false)}, 3 * time.Second},
		{"outputs refused (Produce NOT_LEADER_FOR_PARTITION on " + out + ")", []devbroker.FaultSpec{produce(out, "NOT_LEADER_FOR_PARTITION", -1)}, 3 * time.Second},
		{"outputs written but not acknowledged (Produce NOT_ENOUGH_REPLICAS_AFTER_APPEND on " + out + ")", []devbroker.FaultSpec{produce(out, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 6)}, 3 * time.Second},
		{"outputs fail (Produce UNKNOWN_SERVER_ERROR on " + out + ")", []devbroker.FaultSpec{produce(out, "UNKNOWN_SERVER_ERROR", 2)}, 3 * time.Second},
		{"dead letters refused (Produce NOT_LEADER_FOR_PARTITION on " + dlq + ")", []devbroker.FaultSpec{produce(dlq, "NOT_LEADER_FOR_PARTITION", -1)}, 4 * time.Second},
		{"forced rebalance (Heartbeat REBALANCE_IN_PROGRESS)", []devbroker.FaultSpec{fault("Heartbeat", "REBALANCE_IN_PROGRESS", 2, false)}, 4 * time.Second},
		{"fenced member (Heartbeat UNKNOWN_MEMBER_ID)", []devbroker.FaultSpec{fault("Heartbeat", "UNKNOWN_MEMBER_ID", 1, false)}, 5 * time.Second},
	}
	if err := r.injectFaults(phases); err != nil {
		return err
	}
	// The network: every connection of c1 cut, twice, mid-transaction.
	open := 0
	var cut []string
	for range 2 {
		c1 := r.latest("c1")
		if _, ok := r.openWork(c1, 5*time.Second); ok {
			open++
		}
		c1.proxy.Cut()
		cut = append(cut, c1.name)
		r.disrupted()
		r.phase(3 * time.Second)
		r.reviveCrashed()
	}
	slices.Sort(cut)
	r.notef("all the connections of %s cut, twice, %d times of 2 while it had work in its open transaction", strings.Join(slices.Compact(cut), " then "), open)
	r.phase(3 * time.Second)
	return p.close(time.Minute)
}
