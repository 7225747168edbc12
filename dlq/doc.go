// Package dlq writes records that cannot be handled to a dead-letter topic,
// with headers that say where they came from and why they failed, and reads,
// counts and replays them. The `sluice dlq` command is built on it.
//
// # Publishing
//
// A Publisher implements pipeline.DeadLetterer. DeadLetter produces the
// record to its dead-letter topic (the source topic plus ".dlq" unless
// configured per source topic with Target) and returns nil only once the
// write is acknowledged by all in-sync replicas (acks=all, idempotent
// producer); only then may the pipeline settle the record. A failed or
// abandoned write returns an error and the record stays unsettled; the
// caller tries again. Because an abandoned write may still land, a dead
// letter can be written twice: dead-lettering is at-least-once.
//
// # Options of New
//
//	Connection(conn)     the cluster (sluice.Connection: brokers, TLS, SASL, client ID),
//	                     for a client of the Publisher's own; or
//	Client(cl)           a client to share, such as the consumer's (acks=all, idempotent)
//	ClientOpts(opts...)  more franz-go options for the own client (client hooks); default none
//	Suffix(s)            dead-letter topic = source topic + s; default ".dlq"
//	Target(src, dst)     dead letters of src go to dst instead; default none
//	Group(name)          the group written to sluice.dlq.group; default the Client's group
//	AutoCreate(rf)       create missing dead-letter topics; default off
//	Hooks(hs...)         HookWritten, HookWriteFailed; default none
//	Clock(clk)           times writes for hooks; default sluice.SystemClock
//
// Exactly one of Connection and Client is required. New returns a
// *sluice.ConfigError (errors.Is sluice.ErrConfig) naming the option at
// fault. Package sluicefx gives the Publisher the consumer's Connection.
//
// The dead letter has the original key, value and headers (so a W3C
// traceparent header travels with it), less any provenance headers of an
// earlier dead-lettering, plus the provenance headers below. Its timestamp
// is the time it was written, so the dead-letter topic's retention counts
// from the failure.
//
// # Provenance headers
//
// Every name starts with HeaderPrefix ("sluice.dlq."):
//
//	sluice.dlq.topic          original topic
//	sluice.dlq.partition      original partition (decimal)
//	sluice.dlq.offset         original offset (decimal)
//	sluice.dlq.timestamp      original record timestamp (Unix ms, decimal)
//	sluice.dlq.group          consumer group
//	sluice.dlq.stage          stage or sink that gave up
//	sluice.dlq.error          error text, at most MaxErrorBytes (1024) bytes
//	sluice.dlq.class          failure class (pipeline.ClassDecode, ...)
//	sluice.dlq.attempts       sink calls made (decimal)
//	sluice.dlq.first-failure  first failed attempt (Unix ms, decimal)
//	sluice.dlq.last-failure   last failed attempt (Unix ms, decimal)
//	sluice.dlq.replay-count   times replayed before this failure (decimal)
//	sluice.dlq.value-dropped  size of the value left out (decimal), see below
//
// Times are decimal Unix milliseconds, the unit of Kafka timestamps and of
// pipeline.DeadlineHeader; empty texts and zero times are left out.
// DecodeProvenance (and ProvenanceOf) read them back.
//
// # Records too large for the dead-letter topic
//
// A dead letter is the record plus about half a kilobyte of provenance, so a
// record near its topic's size limit may not fit the dead-letter topic. The
// Publisher's own client allows batches of Kafka's default max.message.bytes
// (DefaultMaxMessageBytes), above franz-go's default. A dead letter that is
// still too large for the client, or that the broker refuses as
// MESSAGE_TOO_LARGE, is written without its value: sluice.dlq.value-dropped
// gives the value's size and the provenance says where the original is
// (while the source topic's retention keeps it). It is counted by
// HookWritten (WriteInfo.ValueDropped). Replay never republishes such dead
// letters, forced or not (ReplayStats.Incomplete): it would publish an empty
// value. A dead letter that does not fit even without its value (a huge key
// or headers) fails, and the record stays unsettled.
//
// # Partitioning and order
//
// With Partitioner, which a Publisher's own client uses, a dead letter goes
// to partition (source partition mod dead-letter partitions): with as many
// dead-letter partitions as source partitions (AutoCreate makes it so),
// source partition p's dead letters are in partition p, in the order they
// were written. A client shared with the consumer keeps that order if it
// is built with kgo.RecordPartitioner(dlq.Partitioner(nil)); otherwise its
// own partitioner decides (kgo's default hashes the key, which keeps the
// order of records with the same key only).
//
// # Reading and replaying
//
// Admin reads a dead-letter topic up to the end offsets taken when it
// starts, so reads end even while failures keep arriving. A Filter selects
// letters by error text (substring or /regexp/), class, stage, failure time
// and source partition and offset.
//
// Replay republishes selected letters: to their original topic and
// partition (from the provenance headers) or, with ReplayConfig.To, to
// another topic by key hash. The replayed copy keeps key, value and
// original headers, drops the provenance headers except
// sluice.dlq.replay-count, which it increments; when a replayed record
// fails again, the Publisher carries that count into the new dead letter,
// and Replay refuses records whose count has reached MaxReplays (default
// 3) unless forced, which stops a poison record from looping forever. The
// replayed copy's timestamp is the replay time.
//
// Replay counts a record as replayed only once Kafka acknowledged it, and
// commits how far it got in a consumer group of its own after each batch:
// in each partition up to the first record that was not acknowledged.
// Its default name, ReplayGroup, is derived from the dead-letter topic,
// the target and the filter: running the same replay again continues
// where it stopped and republishes nothing twice, while a replay with
// other filters examines the topic from its start. Records that were
// filtered out are passed by the commit too; to examine them again, use
// another group or ReplayConfig.Reset. A record that Kafka refuses, or
// does not acknowledge within ReplayConfig.ProduceTimeout (default 30s;
// the same bound applies to fetches and commits, so a broker that stops
// answering stops the replay with a *StallError instead of hanging it),
// stops the replay; ReplayStats says what was replayed, what was saved
// (Saved, SaveErr) and what a rerun would replay again (Unsaved). A crash
// between an acknowledgement and its commit replays that record again
// (at-least-once). Two replays must not share a group at the same time.
//
// Records refused for their replay count are passed by the commit, but the
// commit's metadata remembers where they lie (offset ranges per partition
// with the MaxReplays that refused them, "sluice.dlq.refused=3-17@3"): a
// later run in the same group with Force re-reads from the first of them,
// replays exactly the records that were refused, and then continues where
// the group left off. ReplayStats.RefusedWaiting says that refused records
// wait for such a run; `sluice dlq replay` then exits with status 3.
//
// # Observability
//
// Publisher hooks (HookWritten, HookWriteFailed) report each dead letter by
// source, stage and class, and each failed write; this package imports no
// metrics library.
package dlq
