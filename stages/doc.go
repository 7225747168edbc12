// Package stages has the stages of a Sluice pipeline: Map, TryMap, Filter,
// Decode, Duplicate, FanOut, Window and Batches. Each takes the stream it
// consumes and a name, and returns the stream it produces; see package
// pipeline for sources, sinks, settlement and the life of a partition.
//
// # Where stages run
//
// Map, TryMap, Filter and Decode run in the goroutine that pushes into them
// (no buffer, no goroutine, no allocation of their own). Duplicate gives
// each branch a goroutine and a bounded buffer. FanOut runs what follows it,
// up to and including the sink, in its workers. Window and Batches run in the
// pushing goroutine under a lock, with a timer goroutine for processing
// time. Everything a partition starts, it stops: Close waits for it.
//
// # Order
//
// Without a FanOut, a partition's messages reach each sink one at a time in
// offset order (partition order). FanOut is key-ordered by default: same key
// in offset order, one at a time; different keys in parallel. Records with a
// nil key carry no order and go to any free worker (a key-ordered fan-out
// that serialised them would leave keyless topics with one worker).
// Unordered drops key order. FanOut with one worker is partition order
// (it takes messages in offset order), which lets a slow sink run in its own
// goroutine, decoupled from the stages before it by the fan-out's buffer.
//
// # Bounds
//
// Every buffer is bounded, so a slow sink backpressures, through the stages
// before it, the partition's Handle, and the consumer then pauses the
// partition:
//
//   - Duplicate: Buffer messages per branch (default 256), counting those
//     the branch's goroutine is handing on.
//   - FanOut: Buffer messages waiting for a worker (default 1024), plus one
//     per worker being handed on.
//   - Batches: size messages.
//   - Window: the members of its open windows. A window cannot emit before
//     it is complete, so this bound is the window's own size (in messages,
//     or in messages per window length); the consumer's bound on unsettled
//     records per partition must be larger, or the partition pauses until
//     the window closes. Open windows are at most size/every + 1 (plus
//     lateness/every for event time).
//
// # Close and cancel
//
// When the partition closes (revoke or shutdown, pipeline.Partition.Close),
// stages end in order from the source: Duplicate branches drain their
// buffers; FanOut waits until every queued message has been handed out;
// Window emits its open windows at once, marked Early, and Batches its partial
// batch, so that their members can settle before the consumer's final
// commit instead of being handled again by the next owner. When the
// partition's context is cancelled (lost partition, drain timeout), every
// stage stops at once and what it holds stays unsettled.
//
// # Late data
//
// Event-time windows (EventTime) close when the partition's stream time (its
// largest record timestamp) passes a window's end plus the allowed
// lateness. A record that arrives after all its windows closed is late:
// Window settles and drops it, counted as filtered under the window's name;
// WindowWithLate sends it to a second output instead. Processing-time and
// count windows have no late records.
//
// # Stages that hold messages behind a fan-out
//
// A key-ordered FanOut hands out a key's next message only when the previous
// one has settled downstream. Window and Batches hold messages until their
// window or batch is done, so behind a key-ordered fan-out they would wait
// for messages the fan-out will not release: this is a build error. Put them
// before the fan-out, or make the fan-out Unordered.
//
// # Observing
//
// Filter reports filtered messages, Window late records it drops, and
// failing stage functions their dead letters, through the pipeline's hooks,
// under the stage's name.
package stages
