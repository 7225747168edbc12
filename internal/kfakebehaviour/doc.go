// Package kfakebehaviour documents, as tests, how franz-go's kfake (the
// broker behind `sluice dev broker`, the demo, the tests and the
// reliability suite) runs classic consumer groups where it differs from
// Kafka in ways that hurt under churn (issue 14, item 7). The tests use
// kgo clients, raw kmsg requests and an in-process kfake cluster only; no
// Sluice code. Each passes while kfake behaves as described, so a kfake
// upgrade that fixes a behaviour turns its test red: then drop the test
// and the workaround it names.
//
// What kfake (groups.go, v0.0.0-20260918054303-01f206a7e32c) does:
//
//  1. A member waiting in JoinGroup keeps the session timer of its last
//     heartbeat, and nothing heartbeats while a JoinGroup is pending
//     (handleJoin and updateMemberAndRebalance never stop or refresh m.t).
//     When a slow member holds the rebalance open for longer than the
//     others' session timeout (a member draining before it rejoins), the
//     waiting members expire: their JoinGroup is never answered, the
//     rebalance completes without them and their partitions go to others,
//     while they keep fetching them until their JoinGroup request times out
//     (rebalance timeout + RequestTimeoutOverhead). Kafka keeps a member
//     awaiting join alive (MemberMetadata.shouldKeepAlive) and removes it
//     only if it has not rejoined when the rebalance timeout ends.
//     Test: TestMembersWaitingInJoinGroupExpireBehindSlowRevoker.
//
//  2. A new member has no session timer while its first JoinGroup is
//     pending (addMemberAndRebalance calls stopPending, which stops the
//     pending member's timer), and a member gets one only when a reply
//     reaches its connection (reply calls updateHeartbeat only if
//     clientReq.reply returned true). clientReq.reply selects between a
//     buffered response channel and the closed connection, so for a member
//     that died during its first JoinGroup it reports failure about half
//     the time. Such a member stays in the group for good: the leader
//     assigns it partitions, the group turns Stable, and nobody consumes
//     those partitions until the next membership change. Kafka schedules a
//     heartbeat expiry for every member when the join phase completes,
//     whether or not the reply arrives, and times out a new member's join
//     (KAFKA-7610). Test: TestMemberKilledInFirstJoinGroupStaysWithoutSessionTimer.
//
//  3. Every JoinGroup (and every member removal) restarts the rebalance
//     timer (rebalance stops tRebalance and starts a new one of the full
//     rebalance timeout). Kafka starts the join phase's delay once. While
//     one member never rejoins (a dead member of 2., or a slow revoker),
//     joins that arrive less than a rebalance timeout apart keep the group
//     in PreparingRebalance indefinitely, and nobody consumes. Under churn
//     the joins come from restarted members and from members whose
//     JoinGroup request timed out (kgo retries it with the same member ID)
//     or who were expired by 1. and rejoin as new members, so a group can
//     stay stuck after the faults end. Test: TestEveryJoinRestartsTheRebalanceTimer.
//
// # What configuration can do
//
// No kfake option changes any of this (kfake offers only
// GroupMinSessionTimeout and GroupMaxSessionTimeout; the rebalance timeout
// is the client's). On the client side:
//
//   - 1. is avoided when every member's session timeout exceeds the
//     longest time another member can take to rejoin: its drain (Sluice's
//     DrainTimeout) plus its final commit. Sluice requires DrainTimeout <
//     RebalanceTimeout, so SessionTimeout >= RebalanceTimeout is a rule
//     that holds for any drain. Test:
//     TestSessionLongerThanRevokeKeepsWaitingMembers.
//   - 2. cannot be avoided by configuration: a process can die during its
//     first JoinGroup. Static membership (kgo.InstanceID, Sluice's
//     consumer.InstanceID) lets the restarted process replace the dead
//     member, but only if it restarts with the same instance ID.
//   - 3. ends once joins stop arriving for one rebalance timeout. With 1.
//     avoided, members waiting in JoinGroup are not expired, so the joins
//     that remain after the last fault are kgo's retries of a JoinGroup
//     request that timed out (after RebalanceTimeout +
//     RequestTimeoutOverhead). n members retrying periodically leave a gap
//     of a rebalance timeout only if RequestTimeoutOverhead >= (n-1) x
//     RebalanceTimeout; a larger overhead (up to kgo's 15m maximum)
//     removes the retries altogether.
//
// The package has no code outside its tests.
package kfakebehaviour
