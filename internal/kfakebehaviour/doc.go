// Package kfakebehaviour documents, as tests, how franz-go's kfake (the
// broker behind `sluice dev broker`, the demo, the tests and the
// reliability suite) runs classic consumer groups where it differs from
// Kafka in ways that hurt under churn (issue 14, item 7). The tests use
// kgo clients, raw kmsg requests and an in-process kfake cluster only, no
// Sluice code, so they can go upstream as they are. Each passes while
// kfake behaves as described: a kfake that fixes a behaviour turns its
// test red (checked against kfake-groups.patch, below), and then the test
// and the workaround it names should go.
//
// What kfake (groups.go, v0.0.0-20260918054303-01f206a7e32c) does:
//
//  1. A member waiting in JoinGroup keeps the session timer of its last
//     heartbeat, and nothing can heartbeat while a JoinGroup is pending
//     (handleJoin and updateMemberAndRebalance neither stop nor refresh
//     m.t; updateHeartbeat's timer removes the member whatever it is
//     doing). When a member that must revoke partitions drains for longer
//     than the others' session timeout before it rejoins, the members
//     waiting for it expire: their JoinGroup is never answered, the
//     rebalance completes without them, their partitions go to others,
//     and they keep fetching those partitions, told nothing, until their
//     JoinGroup request times out (rebalance timeout +
//     RequestTimeoutOverhead). Kafka keeps a member awaiting join alive
//     (MemberMetadata.shouldKeepAlive) and removes it only if it has not
//     rejoined when the rebalance timeout ends. Test:
//     TestMembersWaitingInJoinGroupExpireBehindSlowRevoker.
//
//  2. A new member has no session timer while its first JoinGroup is
//     pending (addMemberAndRebalance calls stopPending, which stops the
//     pending member's timer), and a member gets one only when a reply
//     reaches its connection (reply calls updateHeartbeat only if
//     clientReq.reply returned true). For a connection that has closed,
//     clientReq.reply selects between the response channel (buffered, so
//     ready) and the closed connection's done channel: it reports failure
//     about one time in two. A member that died during its first
//     JoinGroup is therefore never expired while the group prepares the
//     rebalance, and, one time in two, it stays for good after it: the
//     leader assigns it partitions, the group turns Stable, and nobody
//     consumes those partitions until another member joins or leaves (a
//     dead member in a later rebalance holds it open for a full rebalance
//     timeout, see 3). Kafka schedules every member's heartbeat expiry
//     when the join phase completes, whether or not the reply arrives, and
//     times out a new member's join (KAFKA-7610). Test:
//     TestMemberKilledInFirstJoinGroupStaysWithoutSessionTimer.
//
//  3. Every JoinGroup, and every removal of a member, restarts the
//     rebalance timer (rebalance stops tRebalance and starts a new one of
//     the full rebalance timeout). Kafka bounds the join phase by one
//     rebalance timeout from its start (DelayedJoin). While one member does
//     not rejoin (a dead member of 2., or a slow revoker), joins that come
//     less than a rebalance timeout apart keep the group in
//     PreparingRebalance, and nobody consumes. Under churn the joins come
//     from restarted members, from members expired by 1. that rejoin as new
//     members once their JoinGroup times out, and from kgo retrying a
//     JoinGroup that timed out. Test: TestEveryJoinRestartsTheRebalanceTimer.
//
// The reliability suite's churn scenario shows the three together: after
// the last fault the group sometimes sits in PreparingRebalance (or
// Stable) with up to nine members whose processes have exited, and takes
// up to twice the session plus rebalance timeout to consume again.
//
// # What configuration can do
//
// No kfake option changes any of this: kfake offers GroupMinSessionTimeout
// and GroupMaxSessionTimeout, and the rebalance timeout is the client's.
// On the client side:
//
//   - 1. is avoided when the session timeout exceeds the longest time a
//     member can wait in JoinGroup for another to finish draining: Sluice's
//     DrainTimeout plus a commit, and at most the rebalance timeout (Sluice
//     requires DrainTimeout < RebalanceTimeout). internal/kafkatest's
//     GroupTimeouts gives drain < rebalance < session. Test:
//     TestSessionLongerThanRevokeKeepsWaitingMembers.
//   - 2. and 3. are not avoided by any client setting: a process can always
//     die during its first JoinGroup, and a longer RequestTimeoutOverhead
//     only makes a member that 1. expired wait longer to learn it. Static
//     membership (kgo.InstanceID, Sluice's consumer.InstanceID) lets a
//     restarted process replace its dead predecessor, but only if it
//     restarts with the same instance ID, and a static member does not
//     leave the group when it stops.
//
// # The fix in kfake
//
// kfake-groups.patch changes groups.go in three places, as Kafka does: a
// member awaiting join is not expired by its session timer; reply starts
// the member's session timer whether or not the reply reached it; and the
// rebalance timer starts when the group enters PreparingRebalance and is
// not restarted by later joins. With it, the three behaviour tests fail
// (as they should), TestSessionLongerThanRevokeKeepsWaitingMembers and
// kfake's own tests pass, and the churn scenario consumed again 200ms
// after its last fault (6s session, 20s rebalance timeout).
//
// The package has no code outside its tests.
package kfakebehaviour
