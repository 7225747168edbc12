package kfakebehaviour_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topic = "t"

func newCluster(t *testing.T, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topic),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// newClient returns a client closed when t ends, or earlier by the
// returned func (closing twice is fine).
func newClient(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) (*kgo.Client, func()) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeFn := func() { once.Do(cl.Close) }
	t.Cleanup(closeFn)
	return cl, closeFn
}

// described is what DescribeGroups says about a group.
type described struct {
	state   string
	members map[string][]int32 // member ID -> assigned partitions of topic (Stable only)
}

func (d described) has(id string) bool { _, ok := d.members[id]; return ok }

func describe(ctx context.Context, cl *kgo.Client, group string) (described, error) {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return described{}, err
	}
	if len(resp.Groups) != 1 {
		return described{}, fmt.Errorf("describe %s: %d groups in the response", group, len(resp.Groups))
	}
	g := resp.Groups[0]
	if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
		return described{}, fmt.Errorf("describe %s: %w", group, err)
	}
	d := described{state: g.State, members: map[string][]int32{}}
	for _, m := range g.Members {
		var ps []int32
		var a kmsg.ConsumerMemberAssignment
		if len(m.MemberAssignment) > 0 && a.ReadFrom(m.MemberAssignment) == nil {
			for _, at := range a.Topics {
				if at.Topic == topic {
					ps = append(ps, at.Partitions...)
				}
			}
		}
		d.members[m.MemberID] = ps
	}
	return d, nil
}

// waitDescribed polls DescribeGroups until cond holds, for at most timeout.
func waitDescribed(ctx context.Context, cl *kgo.Client, group string, timeout time.Duration, cond func(described) bool) (described, error) {
	deadline := time.Now().Add(timeout)
	for {
		d, err := describe(ctx, cl, group)
		if err == nil && cond(d) {
			return d, nil
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("after %v: group %s is %s with members %v (describe error: %v)", timeout, group, d.state, d.members, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawMember speaks the classic group protocol with kmsg requests, so that a
// test decides exactly when it joins, syncs and dies.
type rawMember struct {
	cl                 *kgo.Client
	kill               func()
	group, id          string
	session, rebalance time.Duration
}

func newRawMember(t *testing.T, c *kfake.Cluster, group string, session, rebalance time.Duration) *rawMember {
	cl, kill := newClient(t, c)
	return &rawMember{cl: cl, kill: kill, group: group, session: session, rebalance: rebalance}
}

func (m *rawMember) joinRequest() *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.SessionTimeoutMillis = int32(m.session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(m.rebalance.Milliseconds())
	req.ProtocolType = "consumer"
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = []string{topic}
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "cooperative-sticky"
	p.Metadata = meta.AppendTo(nil)
	req.Protocols = append(req.Protocols, p)
	return req
}

// memberID sends the first JoinGroup, which only hands out a member ID
// (KIP-394: MEMBER_ID_REQUIRED).
func (m *rawMember) memberID(ctx context.Context) error {
	resp, err := m.joinRequest().RequestWith(ctx, m.cl)
	if err != nil {
		return err
	}
	if !errors.Is(kerr.ErrorForCode(resp.ErrorCode), kerr.MemberIDRequired) {
		return fmt.Errorf("first join: want MEMBER_ID_REQUIRED, got %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	m.id = resp.MemberID
	return nil
}

// join sends a JoinGroup with the member ID and waits for its reply.
func (m *rawMember) join(ctx context.Context) (*kmsg.JoinGroupResponse, error) {
	resp, err := m.joinRequest().RequestWith(ctx, m.cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return resp, fmt.Errorf("join: %w", err)
	}
	return resp, nil
}

type joined struct {
	resp *kmsg.JoinGroupResponse
	err  error
	at   time.Time
}

// joinAsync sends a JoinGroup and delivers its outcome on the channel.
func (m *rawMember) joinAsync(ctx context.Context) <-chan joined {
	ch := make(chan joined, 1)
	go func() {
		resp, err := m.join(ctx)
		ch <- joined{resp, err, time.Now()}
	}()
	return ch
}

// sync sends a SyncGroup; the leader passes the plan (member ID ->
// partitions of topic).
func (m *rawMember) sync(ctx context.Context, generation int32, plan map[string][]int32) error {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.Generation = generation
	req.ProtocolType = kmsg.StringPtr("consumer")
	req.Protocol = kmsg.StringPtr("cooperative-sticky")
	for id, ps := range plan {
		a := kmsg.NewConsumerMemberAssignment()
		at := kmsg.NewConsumerMemberAssignmentTopic()
		at.Topic, at.Partitions = topic, ps
		a.Topics = append(a.Topics, at)
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, a.AppendTo(nil)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// ghostGroup is a Stable group whose members are a live leader and a
// member that died during its first JoinGroup and has no session timer.
type ghostGroup struct {
	group  string
	leader *rawMember
	ghost  string // the dead member's ID
	admin  *kgo.Client
}

const ghostSession = 100 * time.Millisecond

var (
	// errNoGhost: the dead member got a session timer this time (kfake's
	// reply to its closed connection landed in the connection's buffer)
	// and expired as Kafka would expire it.
	errNoGhost = errors.New("the dead member expired")
	// errStalled: the machine stalled for longer than the rebalance
	// timeout, so the rebalance completed before the leader rejoined.
	errStalled = errors.New("the leader's rejoin came after the rebalance timeout")
)

// makeGhost builds a ghostGroup: a leader alone in a Stable group, a new
// member that joins and dies (its client closed) while its JoinGroup is
// pending, the leader's rejoin that completes the rebalance, and the
// leader's SyncGroup that gives the dead member partition 1. It checks on
// the way that the dead member outlives its session while the group is in
// PreparingRebalance. It returns errNoGhost when kfake did start the dead
// member's session timer.
func makeGhost(ctx context.Context, t *testing.T, c *kfake.Cluster, group string, rebalance time.Duration) (*ghostGroup, error) {
	admin, _ := newClient(t, c)
	leader := newRawMember(t, c, group, 30*time.Second, rebalance)
	if err := leader.memberID(ctx); err != nil {
		return nil, err
	}
	resp, err := leader.join(ctx)
	if err != nil {
		return nil, err
	}
	if err := leader.sync(ctx, resp.Generation, map[string][]int32{leader.id: {0, 1}}); err != nil {
		return nil, err
	}

	dying := newRawMember(t, c, group, ghostSession, rebalance)
	if err := dying.memberID(ctx); err != nil {
		return nil, err
	}
	joinCtx, cancelJoin := context.WithCancel(ctx)
	pending := dying.joinAsync(joinCtx)
	if _, err := waitDescribed(ctx, admin, group, 10*time.Second, func(d described) bool {
		return d.state == "PreparingRebalance" && d.has(dying.id)
	}); err != nil {
		cancelJoin()
		return nil, fmt.Errorf("the second member's JoinGroup: %w", err)
	}
	cancelJoin()
	dying.kill() // its connection closes with the JoinGroup unanswered
	if j := <-pending; j.err == nil {
		return nil, errors.New("the dying member's JoinGroup was answered before it died")
	}

	// Ten session timeouts later the dead member is still there: nothing
	// expires a member whose first JoinGroup is pending.
	watchUntil := time.Now().Add(10 * ghostSession)
	for time.Now().Before(watchUntil) {
		d, err := describe(ctx, admin, group)
		if err != nil {
			return nil, err
		}
		if !d.has(dying.id) {
			return nil, fmt.Errorf("the member that died in its first JoinGroup was removed while the group was %s; kfake now expires it", d.state)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The leader rejoins: every member is "waiting in join", so the
	// rebalance completes at once, the dead member included.
	resp, err = leader.join(ctx)
	if errors.Is(err, kerr.UnknownMemberID) {
		return nil, errStalled
	}
	if err != nil {
		return nil, fmt.Errorf("leader rejoin: %w", err)
	}
	if resp.LeaderID != leader.id {
		return nil, fmt.Errorf("leader rejoin: leader is %s, not us", resp.LeaderID)
	}
	if !slices.ContainsFunc(resp.Members, func(m kmsg.JoinGroupResponseMember) bool { return m.MemberID == dying.id }) {
		return nil, errors.New("the completed rebalance does not list the dead member")
	}
	if err := leader.sync(ctx, resp.Generation, map[string][]int32{leader.id: {0}, dying.id: {1}}); err != nil {
		return nil, fmt.Errorf("leader sync: %w", err)
	}
	// The group is Stable with the dead member holding partition 1. If
	// kfake started its session timer, it goes within one session.
	watchUntil = time.Now().Add(20 * ghostSession)
	for time.Now().Before(watchUntil) {
		d, err := describe(ctx, admin, group)
		if err != nil {
			return nil, err
		}
		if !d.has(dying.id) {
			return nil, errNoGhost
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &ghostGroup{group: group, leader: leader, ghost: dying.id, admin: admin}, nil
}

// makeGhostRetrying calls makeGhost on fresh groups until it gets a ghost:
// each try gets one with probability 1/2 (kfake's select between the
// buffered response channel and the closed connection).
func makeGhostRetrying(ctx context.Context, t *testing.T, c *kfake.Cluster, prefix string, rebalance time.Duration) *ghostGroup {
	t.Helper()
	expired, stalled := 0, 0
	for try := 1; try <= 30; try++ {
		g, err := makeGhost(ctx, t, c, fmt.Sprintf("%s-%d", prefix, try), rebalance)
		switch {
		case err == nil:
			t.Logf("try %d: the dead member stayed (in %d tries before, it got a session timer and expired; %d were disturbed by a stalled machine)", try, expired, stalled)
			return g
		case errors.Is(err, errNoGhost):
			expired++
		case errors.Is(err, errStalled):
			stalled++
		default:
			t.Fatalf("try %d: %v", try, err)
		}
	}
	t.Fatalf("in 30 tries, no dead member stayed: %d expired (kfake started their session timer), %d disturbed by a stalled machine; if they all expired, kfake no longer keeps dead members (drop this test)", expired, stalled)
	return nil
}

// TestMemberKilledInFirstJoinGroupStaysWithoutSessionTimer shows that a
// member that dies while its first JoinGroup is pending is not expired
// while the group prepares its rebalance, and that, about one time in two,
// it stays in the group for good after the rebalance: the group is Stable,
// the dead member holds the partition the leader gave it, and nothing will
// remove it until another member joins or leaves. Kafka expires every
// member one session timeout after the join phase completes.
func TestMemberKilledInFirstJoinGroupStaysWithoutSessionTimer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, 2)
	g := makeGhostRetrying(ctx, t, c, "ghost", 10*time.Second)
	d, err := describe(ctx, g.admin, g.group)
	if err != nil {
		t.Fatal(err)
	}
	if d.state != "Stable" || !slices.Equal(d.members[g.ghost], []int32{1}) {
		t.Fatalf("want a Stable group with the dead member holding partition 1, got %s with %v", d.state, d.members)
	}
	t.Logf("group %s is Stable; the member that died in its first JoinGroup still holds partition 1 after %v (its session timeout is %v)",
		g.group, 30*ghostSession, ghostSession)
}

// stableGroup returns a Stable group of two raw members, a leader and a
// member that will not rejoin (as a slow revoker or a dead member would
// not), and an admin client.
func stableGroup(ctx context.Context, t *testing.T, c *kfake.Cluster, group string, rebalance time.Duration) (leader, other *rawMember, admin *kgo.Client) {
	t.Helper()
	admin, _ = newClient(t, c)
	leader = newRawMember(t, c, group, 30*time.Second, rebalance)
	other = newRawMember(t, c, group, 30*time.Second, rebalance)
	for _, m := range []*rawMember{leader, other} {
		if err := m.memberID(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := leader.join(ctx); err != nil {
		t.Fatal(err)
	}
	otherJoin := other.joinAsync(ctx) // the group prepares a rebalance for it
	if _, err := waitDescribed(ctx, admin, group, 10*time.Second, func(d described) bool {
		return d.state == "PreparingRebalance" && d.has(other.id)
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := leader.join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j := <-otherJoin; j.err != nil {
		t.Fatal(j.err)
	}
	syncs := make(chan error, 1)
	go func() { syncs <- other.sync(ctx, resp.Generation, nil) }()
	if err := leader.sync(ctx, resp.Generation, map[string][]int32{leader.id: {0}, other.id: {1}}); err != nil {
		t.Fatal(err)
	}
	if err := <-syncs; err != nil {
		t.Fatal(err)
	}
	return leader, other, admin
}

// TestEveryJoinRestartsTheRebalanceTimer shows that kfake waits a full
// rebalance timeout after the latest JoinGroup, not after the rebalance
// began: while one member does not rejoin (a slow revoker, or the dead
// member of the test above), joins less than a rebalance timeout apart
// keep the group in PreparingRebalance, and it completes only a rebalance
// timeout after the last one. Kafka bounds the join phase by one
// rebalance timeout.
func TestEveryJoinRestartsTheRebalanceTimer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const (
		rebalance = 3 * time.Second
		every     = rebalance / 4
		joins     = 6
	)
	c := newCluster(t, 2)
	const group = "livelock"
	leader, absent, admin := stableGroup(ctx, t, c, group, rebalance)

	began := time.Now()
	leaderJoin := leader.joinAsync(ctx) // absent never rejoins: the group waits for it
	if _, err := waitDescribed(ctx, admin, group, 10*time.Second, func(d described) bool {
		return d.state == "PreparingRebalance"
	}); err != nil {
		t.Fatal(err)
	}
	type join struct{ sent, seen time.Time }
	var (
		sent      []join
		completed joined
		done      bool
	)
	for i := 0; i < joins && !done; i++ {
		select {
		case completed = <-leaderJoin:
			done = true
			continue
		case <-time.After(every): // the scenario's pace, not a synchronisation
		}
		m := newRawMember(t, c, group, 30*time.Second, rebalance)
		if err := m.memberID(ctx); err != nil {
			t.Fatal(err)
		}
		j := join{sent: time.Now()}
		m.joinAsync(ctx)
		d, err := waitDescribed(ctx, admin, group, 10*time.Second, func(d described) bool { return d.has(m.id) })
		if err != nil {
			t.Fatal(err)
		}
		j.seen = time.Now()
		if d.state == "PreparingRebalance" {
			sent = append(sent, j)
		}
	}
	if !done {
		select {
		case completed = <-leaderJoin:
		case <-time.After(10 * rebalance):
			t.Fatalf("the group did not complete its rebalance %v after the last join", 10*rebalance)
		}
	}
	if completed.err != nil {
		t.Fatalf("leader's JoinGroup: %v", completed.err)
	}
	// Joins that kfake processed before the rebalance completed: each
	// restarted the timer, so the completion comes at least a rebalance
	// timeout after each was sent. Timers never fire early, so this holds
	// however loaded the machine is; without the restarts the rebalance
	// would complete a rebalance timeout after it began, before the
	// second join was sent.
	var counted int
	for i, j := range sent {
		if !j.seen.Before(completed.at) {
			continue
		}
		counted++
		if gap := completed.at.Sub(j.sent); gap < rebalance {
			t.Errorf("join %d was processed before the rebalance completed, yet the rebalance completed %v after it was sent (< the %v rebalance timeout): kfake no longer restarts the timer on every join", i+1, gap, rebalance)
		}
	}
	if counted < 2 {
		t.Skipf("only %d joins reached kfake before the rebalance completed (the machine stalled for more than %v): cannot tell", counted, rebalance-every)
	}
	if slices.ContainsFunc(completed.resp.Members, func(m kmsg.JoinGroupResponseMember) bool { return m.MemberID == absent.id }) {
		t.Errorf("the member that did not rejoin is still in the group after the rebalance timer fired")
	}
	t.Logf("the group stayed in PreparingRebalance for %v, waiting for a member that did not rejoin, with a %v rebalance timeout: %d joins, %v apart, each restarted the timer",
		completed.at.Sub(began).Round(10*time.Millisecond), rebalance, counted, every)
}

// ownership records which member holds each partition, from the members'
// assign, revoke and lost callbacks, and every moment two members held one.
type ownership struct {
	mu       sync.Mutex
	owner    map[int32]string
	overlaps []string
	changed  chan struct{} // closed and replaced on every change
}

func newOwnership() *ownership {
	return &ownership{owner: map[int32]string{}, changed: make(chan struct{})}
}

func (o *ownership) update(fn func()) {
	o.mu.Lock()
	fn()
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// wait blocks until cond (called under the lock) holds or timeout passes.
func (o *ownership) wait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		ok, ch := cond(), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			o.mu.Lock()
			defer o.mu.Unlock()
			t.Fatalf("after %v: %s; partitions held: %v", timeout, what, o.owner)
		}
	}
}

// count returns how many partitions name holds; call with the lock held.
func (o *ownership) count(name string) int {
	n := 0
	for _, who := range o.owner {
		if who == name {
			n++
		}
	}
	return n
}

// groupMember is a kgo group consumer whose callbacks feed an ownership
// and which records the values it fetched. Its revoke can be held.
type groupMember struct {
	name     string
	cl       *kgo.Client
	stop     func()
	own      *ownership
	hold     chan struct{} // non-nil: a revoke waits until it is closed
	revoking chan struct{} // closed when a held revoke begins
	joinSent chan struct{} // closed at the first JoinGroup written after armJoin

	mu      sync.Mutex
	held    map[int32]bool // what this member believes it holds
	fetched map[string]bool
	armed   bool
}

// startMember starts a member with the given session timeout. The slow
// member (a 30s session) has kgo's default request overhead and a 20s
// rebalance timeout, which kfake applies to the group (it takes the
// largest). The others have a 15s rebalance timeout and a 1s request
// overhead, so that a JoinGroup that kfake never answers times out after
// 16s rather than 30s: long enough for the test's checks on a busy
// machine, short enough to close them.
func startMember(t *testing.T, c *kfake.Cluster, own *ownership, group, name string, session time.Duration, hold chan struct{}) *groupMember {
	t.Helper()
	m := &groupMember{name: name, own: own, hold: hold, revoking: make(chan struct{}), joinSent: make(chan struct{}),
		held: map[int32]bool{}, fetched: map[string]bool{}}
	var revokeOnce sync.Once
	rebalance, overhead := 15*time.Second, time.Second
	if session >= 30*time.Second {
		rebalance, overhead = 20*time.Second, 10*time.Second
	}
	cl, closeCl := newClient(t, c,
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(session),
		kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.RebalanceTimeout(rebalance),
		kgo.RequestTimeoutOverhead(overhead),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.WithHooks(m),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			logEvent(t, name, "assigned", a[topic])
			own.update(func() {
				m.mu.Lock()
				defer m.mu.Unlock()
				for _, p := range a[topic] {
					if who, ok := own.owner[p]; ok && who != name {
						own.overlaps = append(own.overlaps, fmt.Sprintf("partition %d assigned to %s while %s holds it", p, name, who))
					}
					own.owner[p] = name
					m.held[p] = true
				}
			})
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			logEvent(t, name, "revoked", r[topic])
			if m.hold != nil && len(r[topic]) > 0 {
				revokeOnce.Do(func() { close(m.revoking) })
				<-m.hold
			}
			m.drop(r[topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) {
			logEvent(t, name, "lost", l[topic])
			m.drop(l[topic])
		}),
	)
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				m.mu.Lock()
				m.fetched[string(r.Value)] = true
				m.mu.Unlock()
				own.update(func() {})
			})
		}
	}()
	m.stop = func() {
		cancel()
		<-done
		closeCl()
	}
	t.Cleanup(m.stop)
	return m
}

// logEvent logs a callback that moved partitions, for the timeline in the
// verbose output.
func logEvent(t *testing.T, name, what string, ps []int32) {
	if len(ps) > 0 {
		t.Logf("%s %s %s %v", time.Now().Format("15:04:05.000"), name, what, ps)
	}
}

func (m *groupMember) drop(ps []int32) {
	m.own.update(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, p := range ps {
			if m.own.owner[p] == m.name {
				delete(m.own.owner, p)
			}
			delete(m.held, p)
		}
	})
}

// OnBrokerWrite implements kgo.HookBrokerWrite: it notes the first
// JoinGroup written after armJoin.
func (m *groupMember) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != int16(kmsg.JoinGroup) || err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.armed {
		m.armed = false
		close(m.joinSent)
	}
}

func (m *groupMember) armJoin() {
	m.mu.Lock()
	m.armed = true
	m.mu.Unlock()
}

func (m *groupMember) holds(p int32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[p]
}

func (m *groupMember) got(v string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetched[v]
}

func (m *groupMember) memberID() string { id, _ := m.cl.GroupMetadata(); return id }

// slowRevoker is a 6-partition group of two members, slow (whose revokes
// wait for hold to close) and fast, with 3 partitions each, that a third
// member, joining, has just joined: both give one partition up, and slow's
// revoke waits while fast and joining rejoin and wait in JoinGroup.
type slowRevoker struct {
	c                   *kfake.Cluster
	own                 *ownership
	slow, fast, joining *groupMember
	hold                chan struct{}
	release             func() // closes hold, once
	fastID              string
	admin               *kgo.Client
}

// newSlowRevoker sets a slowRevoker up; fast and joining have the given
// session timeout.
func newSlowRevoker(t *testing.T, session time.Duration) *slowRevoker {
	t.Helper()
	s := &slowRevoker{c: newCluster(t, 6), own: newOwnership(), hold: make(chan struct{})}
	var once sync.Once
	s.release = func() { once.Do(func() { close(s.hold) }) }
	own := s.own
	s.admin, _ = newClient(t, s.c)
	s.slow = startMember(t, s.c, own, "g", "slow", 30*time.Second, nil)
	// Runs before the members' cleanups: a test that fails with the slow
	// member's revoke held must not hang closing it.
	t.Cleanup(s.release)
	own.wait(t, 30*time.Second, "slow gets every partition", func() bool { return own.count("slow") == 6 })
	s.fast = startMember(t, s.c, own, "g", "fast", session, nil)
	own.wait(t, 30*time.Second, "slow and fast get 3 partitions each", func() bool {
		return own.count("slow") == 3 && own.count("fast") == 3
	})
	s.fastID = s.fast.memberID()
	s.slow.hold = s.hold
	s.fast.armJoin()
	s.joining = startMember(t, s.c, own, "g", "joining", session, nil)
	select {
	case <-s.slow.revoking:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow member was never asked to revoke a partition")
	}
	select {
	case <-s.fast.joinSent:
	case <-time.After(30 * time.Second):
		t.Fatal("the fast member never rejoined")
	}
	return s
}

// TestMembersWaitingInJoinGroupExpireBehindSlowRevoker shows that kfake
// expires, by session timeout, members whose JoinGroup waits for a slow
// member to finish revoking, although nothing can heartbeat while a
// JoinGroup is pending; that the rebalance then completes without them and
// gives their partitions to another member; and that they keep fetching
// those partitions, not told they lost them. Kafka keeps members awaiting
// join alive for the rebalance timeout.
func TestMembersWaitingInJoinGroupExpireBehindSlowRevoker(t *testing.T) {
	t.Parallel()
	const session = time.Second
	s := newSlowRevoker(t, session)
	c, own, slow, fast, joining, fastID, admin := s.c, s.own, s.slow, s.fast, s.joining, s.fastID, s.admin
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The fast member waits in JoinGroup; its session ends.
	waitStart := time.Now()
	if _, err := waitDescribed(ctx, admin, "g", 20*time.Second, func(d described) bool { return !d.has(fastID) }); err != nil {
		t.Fatalf("the fast member, waiting in JoinGroup behind the slow revoker, was never expired: %v", err)
	}
	t.Logf("the fast member was expired %v after it sent its JoinGroup (session timeout %v)", time.Since(waitStart).Round(10*time.Millisecond), session)
	var fastHeld []int32
	fast.mu.Lock()
	for p := range fast.held {
		fastHeld = append(fastHeld, p)
	}
	fast.mu.Unlock()
	if len(fastHeld) == 0 {
		t.Fatal("the fast member was told it lost its partitions; it should still hold them, waiting in JoinGroup")
	}

	// The slow member finishes its revoke and rejoins: the rebalance
	// completes without the fast member, whose partitions go to the
	// others while it still holds them.
	s.release()
	var p int32
	var other string
	own.wait(t, 30*time.Second, "a partition the fast member holds is assigned to another member", func() bool {
		for q, who := range own.owner {
			if who != fast.name && fast.holds(q) {
				p, other = q, who
				return true
			}
		}
		return false
	})
	others := map[string]*groupMember{slow.name: slow, joining.name: joining}

	// Both fetch it.
	probe, _ := newClient(t, c, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := probe.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("probe")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	own.wait(t, 30*time.Second, "both holders fetch the probe record", func() bool { return others[other].got("probe") && fast.got("probe") })
	if !fast.holds(p) {
		t.Fatalf("the fast member was told it lost partition %d before the test ended", p)
	}
	own.mu.Lock()
	t.Logf("%v; %s and the fast member both fetched a record produced to partition %d afterwards", own.overlaps, other, p)
	own.mu.Unlock()
}

// TestSessionLongerThanRevokeKeepsWaitingMembers is the configuration that
// avoids the behaviour above: when the members' session timeout exceeds
// the slow member's revoke, nobody is expired, the rebalance completes with
// every member and no partition is ever held by two.
func TestSessionLongerThanRevokeKeepsWaitingMembers(t *testing.T) {
	t.Parallel()
	const (
		session = 10 * time.Second
		revoke  = 2 * time.Second // the slow member's revoke, counted from the fast member's JoinGroup
	)
	s := newSlowRevoker(t, session)
	own, slow, fast, joining, fastID := s.own, s.slow, s.fast, s.joining, s.fastID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	time.Sleep(revoke) // the slow member's revoke takes this long: the scenario, not a synchronisation
	d, err := describe(ctx, s.admin, "g")
	if err != nil {
		t.Fatal(err)
	}
	if !d.has(fastID) {
		t.Fatalf("the fast member was expired while it waited %v in JoinGroup with a %v session", revoke, session)
	}
	s.release()
	own.wait(t, 30*time.Second, "every member holds 2 partitions", func() bool {
		return own.count(slow.name) == 2 && own.count(fast.name) == 2 && own.count(joining.name) == 2
	})
	own.mu.Lock()
	defer own.mu.Unlock()
	if len(own.overlaps) > 0 {
		t.Errorf("partitions held by two members: %v", own.overlaps)
	}
}
