package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/reliability/check"
	"github.com/sluice-go/sluice/reliability/faultproxy"
)

// scenario is one row of the summary.
type scenario struct {
	name string
	// what says what the scenario does, for the report.
	what   string
	expect check.Expectations
	run    func(r *run) error
	// knownBug, when set, says which bug outside the suite makes the
	// scenario fail: its problems are reported but do not fail the run,
	// and a pass fails it (the mark must go once the bug is fixed).
	knownBug string
	// knownEvidence, if set with knownBug, matches the problems the
	// known bug explains; any other problem fails the run.
	knownEvidence *regexp.Regexp
	// wait bounds the final wait for every record to be delivered;
	// default 90s.
	wait time.Duration
}

// Load shared by the scenarios: 6 partitions, 120 keys, 800 records/s, a
// 2ms sink with 8 key-ordered workers per partition.
const (
	partitions = 6
	keys       = 120
	rate       = 800
)

var scenarios = []scenario{
	{
		name:   "kill",
		what:   "3 consumers under load; for 50s, SIGKILL a random one at a random point and restart it at once, the next kill 0.5-3s after the group recovered; session timeout 3s, rebalance timeout 6s",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scKill,
	},
	{
		name: "rebalance-storm",
		what: "2 steady consumers; every second a consumer joins or one of up to 3 extra ones leaves gracefully (SIGTERM), for 60s under load",
		run:  scStorm,
	},
	{
		name: "sink-outage",
		what: "2 consumers; the sink fails every call for 15s (an outage of minutes, compressed), then recovers",
		run:  scOutage,
	},
	{
		name: "slow-sink",
		what: "2 consumers, 4 workers per partition; sink latency 2ms -> 20ms (10x) for 15s, while a third consumer joins and leaves",
		run:  scSlowSink,
	},
	{
		name: "net-cut",
		what: "one of 2 consumers through a TCP proxy: all its connections cut 5 times, 3s apart",
		run:  scNetCut,
	},
	{
		name:   "net-refuse",
		what:   "one of 2 consumers through a TCP proxy: its connections cut and new ones refused (ECONNREFUSED) for 3s, half its session timeout",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scNetRefuse,
	},
	{
		name:   "net-stall",
		what:   "one of 2 consumers through a TCP proxy: every byte stalled for 2s, later for 9s (1.5x its 6s session timeout, so its partitions are lost)",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scNetStall,
	},
	{
		name: "net-slow",
		what: "one of 2 consumers through a TCP proxy that delays every chunk by 50ms, both ways, for 15s",
		run:  scNetSlow,
	},
	{
		name: "bad-input",
		what: "undecodable values, records within 1 KiB of message.max.bytes, nil keys, empty and nil values, odd header bytes, panicking and rejected records, mixed into the load",
		run:  scBadInput,
	},
	{
		name: "topic-recreated",
		what: "a second topic consumed alongside the load is deleted and recreated; records produced to the new topic must be consumed",
		run:  scTopicRecreated,
		wait: 20 * time.Second,
	},
	{
		name: "oversized-dead-letter",
		what: "an undecodable record within 1 KiB of the broker's message.max.bytes (1 MiB), behind it the steady load on all partitions",
		run:  scOversizedDeadLetter,
		wait: 20 * time.Second,
	},
	{
		name: "broker-unreachable",
		what: "2 consumers started before the broker exists; the broker starts 5s later on their port",
		run:  scUnreachable,
	},
	{
		name:   "broker-restart",
		what:   "broker with --data-dir stopped (SIGTERM) under load for 4s, restarted on the same port and directory",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scBrokerRestart,
	},
	{
		name:   "broker-faults",
		what:   "kfake faults through `sluice dev broker --control`, 3-6s each, 3s apart: commit failures, coordinator moves (NOT_COORDINATOR answers send the client to look the coordinator up again; with one broker it cannot really move), fetch errors, a forced rebalance, a fenced member",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scBrokerFaults,
	},
	{
		name:   "watermark-outage",
		what:   "2 consumers through TCP proxies with small marks (100 unsettled records per partition, 150 in all); the sink goes down until both sit at their consumer-wide mark; then, still at the mark and in the outage, a third consumer joins (revoke), one consumer's network stalls past its session (loss) and the other is sent SIGTERM (shutdown, within drain timeout 2s + close grace 2s); then the sink recovers",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scWatermarkOutage,
	},
	{
		name:   "slow-revoker",
		what:   "3 consumers on 7 partitions, one of them slow (its sink takes 0-1s per record) and holding 3; a fourth joins, so the slow one drains a revoked partition for up to its 25s drain timeout; a fifth joins during that drain, so the others wait in JoinGroup behind it, and a fast one is sent SIGTERM 3s after it rejoined; session timeout 35s, rebalance timeout 40s. Graceful moves only: every duplicate must come from a failure the consumer reported (a failed commit, a drain that timed out)",
		expect: check.Expectations{AllowForcedDuplicates: true},
		run:    scSlowRevoker,
		wait:   2 * time.Minute,
	},
	{
		name:   "churn",
		what:   "3 consumers, 12 partitions; for 60s, SIGKILL or SIGTERM a random consumer every 2-5s and restart it at once, with a 10s sink outage from 20s; session timeout 9s, rebalance timeout 6s, drain timeout 4s; the group must deliver on every partition again within session timeout + rebalance timeout (15s) of the last fault",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scChurn,
		wait:   2 * time.Minute,
	},
	{
		name:   "eos-kill",
		what:   "exactly-once Kafka sink (each record written to orders.out in a transaction with its offset; one record in 397 a poison record, dead-lettered in the transaction): 3 consumers under load; for 50s, SIGKILL a random one while it has outputs in its open transaction and restart it at once with the same transactional ID, the next kill 0.5-3s after the group recovered; session timeout 6.75s, rebalance timeout 4.5s, drain (barrier) timeout 3s, transaction timeout the consumer's default (commit interval + drain + rebalance timeouts + 15s)",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scEOSKill,
	},
	{
		name:   "eos-storm",
		what:   "exactly-once Kafka sink, as eos-kill: 2 steady consumers; every second a consumer joins or one of up to 3 extra ones leaves gracefully (SIGTERM), for 60s under load; each member has its own transactional ID",
		expect: check.Expectations{AllowForcedDuplicates: true},
		run:    scEOSStorm,
	},
	{
		name:   "eos-broker-faults",
		wait:   2 * time.Minute,
		what:   "exactly-once Kafka sink, as eos-kill, 2 consumers through TCP proxies: kfake faults through `sluice dev broker --control`, 3-5s each, 3s apart, on the transaction's requests (TxnOffsetCommit, EndTxn; franz-go sends no AddPartitionsToTxn or AddOffsetsToTxn to kfake, which supports KIP-890's implicit ones), on the writes of outputs and dead letters (Produce), and on the group (a forced rebalance, a fenced member); then all of one consumer's connections cut, twice, while it has work in its open transaction",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scEOSBrokerFaults,
	},
	{
		name:   "alo-kill",
		what:   "at-least-once Kafka sink (each record written to orders.out by a writer of its own, acks=all and idempotent, before its offset may be committed; one record in 397 a poison record): 3 consumers under load; for 50s, SIGKILL a random one while it has outputs written since its last commit and restart it at once, the next kill 0.5-3s after the group recovered; timeouts as eos-kill. Outputs may repeat, within the bound the W events give, and never be missing",
		expect: check.Expectations{AllowForcedDuplicates: true, AllowLostAssignments: true},
		run:    scALOKill,
	},
}

// begin starts the broker with the run's topics and the RSS sampler.
func (r *run) begin(o brokerOpts) error {
	if o.topics == "" {
		o.topics = fmt.Sprintf("%s:%d,%s.dlq:%d", r.topic, r.parts, r.topic, r.parts)
		if r.sink != check.NoOutputs {
			o.topics += fmt.Sprintf(",%s:%d", r.outTopic(), r.parts)
		}
	}
	b, err := r.startBroker(o)
	if err != nil {
		return err
	}
	r.broker = b
	r.watchRSS()
	return nil
}

// members starts the named members and waits for each to be assigned.
func (r *run) startMembers(names ...string) ([]*member, error) {
	var ms []*member
	for _, n := range names {
		m, err := r.startMember(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	for _, m := range ms {
		r.waitAssigned(m, 60*time.Second)
	}
	return ms, nil
}

// loaded starts the steady load on the run's topic.
func (r *run) loaded() (*producer, error) {
	p, err := r.newProducer(r.topic, 1, keys)
	if err != nil {
		return nil, err
	}
	if r.sink != check.NoOutputs {
		p.poisonEvery = poisonEvery
	}
	p.load(rate)
	return p, nil
}

// standard starts a broker with the run's topics, the named members
// (waiting for their assignments) and the steady load.
func (r *run) standard(names ...string) ([]*member, *producer, error) {
	if err := r.begin(brokerOpts{}); err != nil {
		return nil, nil, err
	}
	ms, err := r.startMembers(names...)
	if err != nil {
		return nil, nil, err
	}
	p, err := r.loaded()
	return ms, p, err
}

// phase lets time pass under load: the scenario's clock, not a
// synchronisation.
func (r *run) phase(d time.Duration) { time.Sleep(r.d(d)) }

// killLoop SIGKILLs a random live member 0.5-3s after the group recovered
// from the last kill, restarting each victim at once, for 50s.
func (r *run) killLoop() error {
	end := time.Now().Add(r.d(50 * time.Second))
	kills, stuck := 0, 0
	for time.Now().Before(end) {
		time.Sleep(500*time.Millisecond + time.Duration(r.rnd.Int64N(int64(2500*time.Millisecond))))
		live := r.live()
		if len(live) == 0 {
			break
		}
		at, err := r.killAndRestart(live[r.rnd.IntN(len(live))])
		if err != nil {
			return err
		}
		kills++
		if !r.waitProgress(at, time.Minute) {
			stuck++
		}
	}
	r.notef("%d SIGKILLs, each victim restarted at once; each kill came 0.5-3s after every partition had delivered again since the previous one", kills)
	if stuck > 0 {
		r.notef("%d times the group did not recover within a minute of a kill", stuck)
	}
	return nil
}

func scKill(r *run) error {
	r.memberArgs = []string{"--session-timeout", "3s", "--rebalance-timeout", "6s", "--drain-timeout", "3s"}
	_, p, err := r.standard("c1", "c2", "c3")
	if err != nil {
		return err
	}
	if err := r.killLoop(); err != nil {
		return err
	}
	return p.close(time.Minute)
}

// killAndRestart SIGKILLs m and starts its next incarnation at once; it
// returns when m was killed.
func (r *run) killAndRestart(m *member) (time.Time, error) {
	m.kill()
	at := time.Now()
	r.disrupted()
	base, _, _ := strings.Cut(m.name, ".")
	_, err := r.startMember(base)
	return at, err
}

func scStorm(r *run) error {
	r.memberArgs = []string{"--session-timeout", "10s"}
	return r.stormUnderLoad()
}

// stormUnderLoad runs 2 steady members, s1 and s2, under load, and the
// storm for 60s.
func (r *run) stormUnderLoad() error {
	_, p, err := r.standard("s1", "s2")
	if err != nil {
		return err
	}
	if err := r.storm(60 * time.Second); err != nil {
		return err
	}
	return p.close(time.Minute)
}

// storm starts or stops (SIGTERM) a member every second for d: up to 3
// extra members x<n>, each with a name of its own.
func (r *run) storm(d time.Duration) error {
	var (
		extra         []*member
		leaving       sync.WaitGroup
		joins, leaves int
	)
	end := time.Now().Add(r.d(d))
	t := time.NewTicker(time.Second)
	for now := range t.C {
		if now.After(end) {
			break
		}
		if len(extra) < 3 && (len(extra) == 0 || r.rnd.IntN(2) == 0) {
			m, err := r.startMember(fmt.Sprintf("x%d", joins))
			if err != nil {
				t.Stop()
				return err
			}
			extra = append(extra, m)
			joins++
			continue
		}
		i := r.rnd.IntN(len(extra))
		m := extra[i]
		extra = append(extra[:i], extra[i+1:]...)
		leaves++
		leaving.Add(1)
		go func() {
			defer leaving.Done()
			r.stopped(m, "graceful leave", m.terminate())
		}()
	}
	t.Stop()
	leaving.Wait()
	r.notef("%d joins and %d graceful leaves in %v", joins, leaves, r.d(d))
	return nil
}

var breakerOpened = regexp.MustCompile(`sink breaker state changed.*"to":"open"`)

func scOutage(r *run) error {
	ms, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	r.sinkOutage()
	for _, m := range ms {
		n := len(m.logMatches(breakerOpened, 1000))
		if n == 0 {
			r.failf("%s: the breaker never opened during the outage", m.name)
		}
		r.notef("%s: breaker opened %d times", m.name, n)
	}
	return p.close(time.Minute)
}

// sinkOutage runs 5s under load, the sink down for 15s, and 5s after.
func (r *run) sinkOutage() {
	r.phase(5 * time.Second)
	r.setSink(`{"down":true}`)
	r.phase(15 * time.Second)
	r.setSink(`{}`)
	r.disrupted()
	r.phase(5 * time.Second)
}

func scSlowSink(r *run) error {
	r.memberArgs = []string{"--workers", "4"}
	_, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	r.phase(5 * time.Second)
	r.setSink(`{"latency":"20ms"}`)
	r.phase(4 * time.Second)
	ms, err := r.startMembers("c3")
	if err != nil {
		return err
	}
	r.phase(5 * time.Second)
	r.stopped(ms[0], "leave during the slow sink", ms[0].terminate())
	r.phase(6 * time.Second)
	r.setSink(`{}`)
	r.disrupted()
	r.phase(5 * time.Second)
	return p.close(time.Minute)
}

func scNetCut(r *run) error {
	r.useProxy = true
	ms, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	px := ms[0].proxy
	r.phase(4 * time.Second)
	for range 5 {
		px.Cut()
		r.disrupted()
		r.phase(3 * time.Second)
	}
	r.notef("%s: %d connections accepted by its proxy", ms[0].name, px.Accepted())
	return p.close(time.Minute)
}

var heartbeatRefused = regexp.MustCompile(`heartbeat errored.*connection refused`)

func scNetRefuse(r *run) error {
	r.useProxy = true
	ms, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	px := ms[0].proxy
	r.phase(4 * time.Second)
	if err := px.Refuse(true); err != nil {
		return err
	}
	px.Cut()
	time.Sleep(3 * time.Second)
	r.heal(px)
	r.phase(6 * time.Second)
	if l := ms[0].logMatches(heartbeatRefused, 1); len(l) > 0 {
		r.notef("franz-go ends the group session on the first heartbeat whose dial is refused, so the member loses its partitions: `%s`", excerpt(l[0]))
	}
	return p.close(time.Minute)
}

func scNetStall(r *run) error {
	r.useProxy = true
	r.memberArgs = []string{"--session-timeout", "6s"}
	ms, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	px := ms[0].proxy
	r.phase(4 * time.Second)
	px.Stall()
	time.Sleep(2 * time.Second) // shorter than the session: nothing may be lost
	r.heal(px)
	r.phase(5 * time.Second)
	px.Stall()
	time.Sleep(9 * time.Second) // 1.5x the session: the group evicts c1
	r.heal(px)
	r.phase(10 * time.Second)
	return p.close(time.Minute)
}

func scNetSlow(r *run) error {
	r.useProxy = true
	ms, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	r.phase(4 * time.Second)
	ms[0].proxy.Slow(50 * time.Millisecond)
	r.phase(15 * time.Second)
	r.heal(ms[0].proxy)
	r.phase(4 * time.Second)
	return p.close(time.Minute)
}

// maxMessageBytes is the broker's message.max.bytes in the bad-input
// scenarios.
const maxMessageBytes = 1 << 20

// hugeProducer returns a producer whose batches may be as large as the
// broker allows, for records near message.max.bytes.
func (r *run) hugeProducer(topic string) (*producer, error) {
	p, err := r.newProducer(topic, 1, keys)
	if err != nil {
		return nil, err
	}
	p.cl.Close()
	p.cl, err = kgo.NewClient(kgo.SeedBrokers(r.broker.addr), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(maxMessageBytes))
	return p, err
}

func scBadInput(r *run) error {
	if err := r.begin(brokerOpts{maxMessageBytes: maxMessageBytes}); err != nil {
		return err
	}
	if _, err := r.startMembers("c1", "c2"); err != nil {
		return err
	}
	p, err := r.loaded()
	if err != nil {
		return err
	}
	odd := []kgo.RecordHeader{{Key: "\x00\xff\n\t", Value: []byte{0, 0xff, '\n', 0x80}}, {Key: "", Value: nil}, {Key: "dup", Value: []byte("1")}, {Key: "dup", Value: []byte{}}}
	for i := range 20 {
		k := fmt.Appendf(nil, "bad%02d", i%5)
		p.send(k, fmt.Appendf(nil, "not json %d {", i), check.ExpectDeadLetter)
		p.send(nil, fmt.Appendf(nil, `{"seq":%d}`, i), check.ExpectHandled)
		p.send(k, []byte{}, check.ExpectHandled)
		p.send(k, nil, check.ExpectHandled)
		p.send(k, fmt.Appendf(nil, `{"seq":%d}`, i), check.ExpectHandled, odd...)
		if i%4 == 0 {
			p.send(k, []byte(`{"panic":true}`), check.ExpectDeadLetter)
			p.send(k, []byte(`{"permanent":true}`), check.ExpectDeadLetter)
		}
	}
	huge, err := r.hugeProducer("orders")
	if err != nil {
		return err
	}
	hugeLen := 0
	for i := range 3 {
		// Within 1 KiB of message.max.bytes, batch framing included.
		v := fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, i, strings.Repeat("h", maxMessageBytes-1024))
		hugeLen = len(v)
		huge.send([]byte("huge"), v, check.ExpectHandled)
		if err := huge.close(time.Minute); err != nil {
			return err
		}
		if huge, err = r.hugeProducer("orders"); err != nil {
			return err
		}
	}
	if err := huge.close(time.Minute); err != nil {
		return err
	}
	r.notef("mixed into the load: 20 undecodable values, 20 nil keys, 20 empty and 20 nil values, 20 records with odd header bytes (NUL, 0xff, newline, an empty header key, a repeated key), 5 panicking and 5 rejected records, 3 records with %d-byte values (message.max.bytes %d)", hugeLen, maxMessageBytes)
	r.phase(10 * time.Second)
	return p.close(time.Minute)
}

func scTopicRecreated(r *run) error {
	r.consumeTopics = "orders,events"
	if err := r.begin(brokerOpts{topics: "orders:6,orders.dlq:6,events:3,events.dlq:3"}); err != nil {
		return err
	}
	if _, err := r.startMembers("c1", "c2"); err != nil {
		return err
	}
	p, err := r.loaded()
	if err != nil {
		return err
	}
	ev, err := r.newProducer("events", 1, 10)
	if err != nil {
		return err
	}
	for i := range 300 {
		ev.next(i)
	}
	if err := ev.close(time.Minute); err != nil {
		return err
	}
	r.waitDelivered(time.Minute)
	if err := r.recreateTopic("events", 3); err != nil {
		return err
	}
	r.disrupted()
	ev, err = r.newProducer("events", 2, 10)
	if err != nil {
		return err
	}
	for i := range 300 {
		ev.next(i)
	}
	if err := ev.close(time.Minute); err != nil {
		return err
	}
	r.phase(5 * time.Second)
	return p.close(time.Minute)
}

func scOversizedDeadLetter(r *run) error {
	if err := r.begin(brokerOpts{maxMessageBytes: maxMessageBytes}); err != nil {
		return err
	}
	if _, err := r.startMembers("c1"); err != nil {
		return err
	}
	huge, err := r.hugeProducer(r.topic)
	if err != nil {
		return err
	}
	huge.send([]byte("huge"), append([]byte("not json "), strings.Repeat("h", maxMessageBytes-1024)...), check.ExpectDeadLetter)
	if err := huge.close(time.Minute); err != nil {
		return err
	}
	p, err := r.loaded()
	if err != nil {
		return err
	}
	r.phase(5 * time.Second)
	return p.close(time.Minute)
}

var connRefused = regexp.MustCompile(`(?i)connection refused|unable to open connection`)

func scUnreachable(r *run) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	r.broker = &broker{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.watchRSS()
	var ms []*member
	for _, n := range []string{"c1", "c2"} {
		m, err := r.startMember(n)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	if !waitFor(30*time.Second, func() bool { return len(ms[0].logMatches(connRefused, 1)) > 0 }) {
		r.failf("%s did not report the unreachable broker within 30s", ms[0].name)
	}
	if l := ms[0].logMatches(connRefused, 1); len(l) > 0 {
		r.notef("first complaint in %s's log: `%s`", ms[0].name, excerpt(l[0]))
	}
	r.phase(3 * time.Second)
	if err := r.begin(brokerOpts{port: port}); err != nil {
		return err
	}
	r.disrupted()
	for _, m := range ms {
		r.waitAssigned(m, 60*time.Second)
	}
	p, err := r.loaded()
	if err != nil {
		return err
	}
	r.phase(10 * time.Second)
	return p.close(time.Minute)
}

func scBrokerRestart(r *run) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	o := brokerOpts{port: port, dataDir: filepath.Join(r.dir, "data")}
	if err := r.begin(o); err != nil {
		return err
	}
	ms, err := r.startMembers("c1", "c2")
	if err != nil {
		return err
	}
	p, err := r.loaded()
	if err != nil {
		return err
	}
	r.phase(6 * time.Second)
	if err := r.broker.stop(sigterm, time.Minute); err != nil {
		r.failf("broker stop: %v", err)
	}
	stopped := time.Now()
	time.Sleep(4 * time.Second)
	b, err := r.startBroker(o)
	if err != nil {
		return err
	}
	r.broker = b
	r.disrupted()
	r.notef("broker down for %v", time.Since(stopped).Round(100*time.Millisecond))
	r.phase(8 * time.Second)
	if l := ms[0].logMatches(connRefused, 1); len(l) > 0 {
		r.notef("%s's log while the broker was down: `%s`", ms[0].name, excerpt(l[0]))
	} else {
		r.failf("%s's log does not report the broker going away", ms[0].name)
	}
	return p.close(time.Minute)
}

func scBrokerFaults(r *run) error {
	_, p, err := r.standard("c1", "c2")
	if err != nil {
		return err
	}
	r.phase(4 * time.Second)
	phases := []faultPhase{
		{"commits fail (COORDINATOR_NOT_AVAILABLE)", []devbroker.FaultSpec{{Keys: []string{"OffsetCommit"}, Err: "COORDINATOR_NOT_AVAILABLE", Count: -1}}, 3 * time.Second},
		{"commits fail (UNKNOWN_SERVER_ERROR)", []devbroker.FaultSpec{{Keys: []string{"OffsetCommit"}, Err: "UNKNOWN_SERVER_ERROR", Count: -1}}, 3 * time.Second},
		{"coordinator moves (NOT_COORDINATOR)", []devbroker.FaultSpec{{Keys: []string{"Heartbeat", "OffsetCommit", "JoinGroup", "SyncGroup", "OffsetFetch"}, Err: "NOT_COORDINATOR", Count: 8}}, 4 * time.Second},
		{"fetch errors (NOT_LEADER_FOR_PARTITION)", []devbroker.FaultSpec{{Keys: []string{"Fetch"}, Partitions: []int32{0, 1, 2}, Topic: r.topic, Err: "NOT_LEADER_FOR_PARTITION", Count: -1}}, 3 * time.Second},
		{"fetch errors (KAFKA_STORAGE_ERROR)", []devbroker.FaultSpec{{Keys: []string{"Fetch"}, Topic: r.topic, Err: "KAFKA_STORAGE_ERROR", Count: -1}}, 3 * time.Second},
		{"forced rebalance (REBALANCE_IN_PROGRESS)", []devbroker.FaultSpec{{Keys: []string{"Heartbeat"}, Err: "REBALANCE_IN_PROGRESS", Count: 2}}, 5 * time.Second},
		{"fenced member (UNKNOWN_MEMBER_ID)", []devbroker.FaultSpec{{Keys: []string{"Heartbeat"}, Err: "UNKNOWN_MEMBER_ID", Count: 1}}, 6 * time.Second},
	}
	if err := r.injectFaults(phases); err != nil {
		return err
	}
	return p.close(time.Minute)
}

// faultPhase is a set of broker faults held for a while.
type faultPhase struct {
	name   string
	faults []devbroker.FaultSpec
	hold   time.Duration
}

// injectFaults installs each phase's faults, holds them, removes them and
// lets 3s pass before the next, noting how many requests each failed; a
// member that crashed meanwhile is reported and restarted.
func (r *run) injectFaults(phases []faultPhase) error {
	for _, ph := range phases {
		var ids []int
		for _, f := range ph.faults {
			id, err := r.broker.fault(f)
			if err != nil {
				return fmt.Errorf("%s: %w", ph.name, err)
			}
			ids = append(ids, id)
		}
		time.Sleep(ph.hold)
		hits, err := r.broker.faultHits()
		if err != nil {
			return err
		}
		n := 0
		for _, id := range ids {
			n += hits[id]
		}
		if err := r.broker.clearFaults(); err != nil {
			return err
		}
		r.disrupted()
		r.notef("%s: %d requests failed", ph.name, n)
		r.phase(3 * time.Second)
		r.reviveCrashed()
	}
	return nil
}

// heal ends a proxy's faults and marks the end of a disruption.
func (r *run) heal(px *faultproxy.Proxy) {
	if err := px.Heal(); err != nil {
		r.failf("heal proxy: %v", err)
	}
	r.disrupted()
}

// excerpt makes a JSON log line readable: its level, message and error.
func excerpt(line string) string {
	var rec struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Err   string `json:"err"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg == "" {
		return shorten(line, 300)
	}
	out := rec.Level + " " + rec.Msg
	if rec.Err != "" {
		out += ": " + rec.Err
	}
	return shorten(out, 300)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
