// Package pipeline is how a Sluice consumer is written: a typed graph from a
// source topic through stages to named sinks, in Go code, that commits a
// record's offset only when every branch the record reached has finished
// with it.
//
//	p := pipeline.New(pipeline.DeadLetters(dlq), pipeline.Logger(log))
//	orders := pipeline.Source(p, "orders", pipeline.JSON[Order]())
//	valid := stages.Filter(orders, "valid", func(o Order) bool { return o.Qty > 0 })
//	toWin, toShip := stages.Duplicate2(valid, "split")
//	pipeline.Sink(stages.Window(toWin, "per-sec", stages.Tumbling(time.Second)), "totals", saveTotals)
//	pipeline.Sink(stages.FanOut(toShip, "ship-workers", 64), "ship", ship)
//	if err := p.Err(); err != nil { ... }
//	consumer.New(consumer.Handle(p), ...)
//
// The stages (Map, Filter, Decode, Duplicate, Window, FanOut, Batches) live in
// package stages; this package has the graph, messages, settlement tokens,
// codecs, sinks and the dead-letter path. It knows nothing of Kafka: the
// consumer feeds it Records.
//
// # What a pipeline author needs
//
// New (a Pipeline) and its options (DeadLetters, Logger, Hooks, Clock,
// InputBuffer, SinkBackoff, SinkAttempts, DeadLetterBackoff); Source with a
// Codec (JSON, String, Bytes, DecodeFunc), which starts a Stream; Sink with
// a SinkFunc; Message; Permanent for
// errors that retrying cannot fix; Err, BuildError and sluice.ConfigError;
// DeadLetterer and DeadLetter; the Hook* interfaces and Outcome. The
// failure vocabulary (Failure, FailureError, the Class constants and their
// Err sentinels, PanicError, DecodeError, DeadlineError) is what dead letters,
// guards and metrics speak.
//
// The rest of this package is for two other readers. Stage authors (package
// stages, sinks/kafka) use Connect, Connect2, ConnectN, ConnectSink,
// StageInfo, Env, Inlet, Token, Wrapper, Grouper, Records, Group, WithValue,
// NewMessage and the token methods of Message (Token, WithToken, Hold,
// Settle): see Writing stages. Sources (package consumer) use Handler,
// Partition, TopicPartition, Record, Settler, Fate and DeadlineHeader: see
// Settlement.
//
// # Building
//
// Source, the stage functions and Sink each take the stream they consume and
// a name. Names are unique; they label errors, logs, dead letters
// (DeadLetter.Stage) and hooks. Types are checked by the compiler end to
// end. Mistakes that the compiler cannot see (a stream consumed twice or
// never, a duplicate or empty name, a nil function, a bad size, a window
// behind a key-ordered fan-out) are collected, never panicked, and reported
// together by Err as BuildErrors naming the stage; bad options are reported
// with them as *sluice.ConfigError, like every constructor's in Sluice.
// OpenPartition refuses to run a pipeline with build errors, and refuses a
// topic without a Source (ErrNoSource).
//
// # Running
//
// The Pipeline is a Handler. Each partition the consumer opens gets its own
// instance of the graph, like a Kafka Streams task: its own goroutines,
// buffers and window state, so partitions never wait for one another. Handle
// copies the records into a bounded input buffer (InputBuffer, default 1024
// records) and a source goroutine decodes them and pushes them through the
// stages. Map, Filter and sinks run in the goroutine that pushes to them;
// Duplicate branches, FanOut workers and window/batch timers have their own
// goroutines, all owned by the partition and stopped by Close or by
// cancelling the partition's context. Every buffer is bounded, so a slow sink
// backpressures the stage before it, the source, and finally Handle, which
// blocks; the consumer then pauses the partition.
//
// # Settlement
//
// Every message carries a Token. The source's token is the Record itself;
// Duplicate holds it once per branch; Window and Batches give each emitted
// group a token that settles all its members (a member of several sliding
// windows settles after its last window); FanOut wraps tokens to learn when a
// key's message has finished downstream. A record settles (Settler.Settled,
// which moves the commit watermark) when every holder has released it:
//
//   - a sink returned nil for it;
//   - a stage dropped it on purpose (Filter, a window's late record);
//   - it was dead-lettered and the DeadLetterer acknowledged the write.
//
// Nothing else settles a record. An error with no DeadLetterer configured
// leaves the record held, unsettled, logged and counted (OutcomeHeld): the
// partition's commits stop there and its backpressure eventually pauses it.
// A cancelled partition abandons its records unsettled.
//
// # Sinks and failures
//
// Sink calls the user's function with a context carrying the message's
// deadline (when it has one) and settles on nil. Its errors are sorted so
// that an outage never becomes dead letters:
//
//   - Transient (the default for an error that says nothing else): the sink
//     is called again after a capped, jittered backoff (SinkBackoff, default
//     100ms doubling to 30s), for as long as the partition is not cancelled
//     and the message's deadline allows; the partition holds (commits stop
//     before the message, backpressure pauses fetching). SinkAttempts caps
//     the attempts (default none).
//   - Final: an error marked Permanent, a decode error, a panic in any user
//     function (sink, stage function, codec; the stack goes to the log), a
//     deadline that passed, or any Failure other than ClassError (a guard's
//     verdict). Every record of the message goes to the DeadLetterer with a
//     class, attempt count and failure times read from the error through the
//     Failure interface.
//
// Package handlers adds what a production sink needs beyond that (a circuit
// breaker, adaptive concurrency, rate limits, retry budgets, classification
// of HTTP and gRPC errors); its guarded sink is accepted by Sink as is, and
// its final errors are Failures, which the pipeline does not retry again.
// Failed dead-letter writes are retried with jittered, capped backoff
// (DeadLetterBackoff) until acknowledged or the partition is cancelled.
//
// # Close and cancel
//
// Close drains: no more records come; the source finishes what Handle handed
// over; each stage, in order from the source, finishes what it holds and ends
// its outputs; windows and batches emit what they have early so their
// members can settle before the consumer's final commit; Close returns when
// every goroutine of the partition has stopped. Cancelling the partition's
// context instead stops every goroutine promptly and leaves unfinished
// records unsettled; the consumer cancels when a partition is lost or its
// drain timeout passes.
//
// # Observing
//
// Hooks (HookHandled, HookDeadLetter, HookDeadLetterError, HookSinkRetry)
// report records handled by each sink or stage with their Outcome and the
// sink's latency, dead letters by stage and class, and sink retries. They are small interfaces so that a
// metrics package can implement them; this package imports no metrics
// library.
//
// # Writing stages
//
// This section is for authors of stages and of sinks that settle
// messages themselves; a pipeline author does not need it. A stage is a
// function that calls Connect (or Connect2, ConnectN, or ConnectSink for a
// sink) with a StageInfo and a build function. Build runs once per
// partition with the partition's Env and the Inlet of whatever consumes the
// stage, and returns the stage's own Inlet. Push may be called concurrently
// (after a fan-out); End is called once, after the last Push. Env gives the
// partition's context, clock and logger, owned goroutines (Go,
// AfterCancel), panic recovery (Catch), the dead-letter path (Fail) and the
// HookHandled reports (Count, Timed, Handled). A stage that transforms
// values keeps the token (WithValue); one that groups messages makes a
// group token (Group, Grouper); one that must learn when a message has
// finished downstream wraps its token (Wrapper, Message.WithToken). Records
// yields the records behind any token. Every holder settles its hold once
// (Token).
package pipeline
