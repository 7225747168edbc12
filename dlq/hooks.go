package dlq

import "time"

// Hook is any of the Hook* interfaces below. A Publisher calls every hook
// that implements one (New rejects a value that implements none); hooks are
// called synchronously from DeadLetter, so they must be fast and safe for
// concurrent use. A metrics package plugs in
// here (dead letters written by class and stage, write failures) without
// this package importing it.
type Hook any

// WriteInfo describes one dead-letter write.
type WriteInfo struct {
	// SourceTopic and SourcePartition locate the original record.
	SourceTopic     string
	SourcePartition int32
	// Topic is the dead-letter topic written to.
	Topic string
	// Stage is the stage or sink that gave up on the record.
	Stage string
	// Class is the failure class, the reason the record was given up on.
	Class string
	// Latency is how long the write took until acknowledged or failed.
	Latency time.Duration
	// ValueDropped is the size of the value the dead letter left out
	// because it would not fit the dead-letter topic (HeaderValueDropped);
	// zero when the value was kept.
	ValueDropped int
}

// HookWritten is told about every acknowledged dead letter.
type HookWritten interface {
	OnDeadLetterWritten(WriteInfo)
}

// HookWriteFailed is told about every dead-letter write that failed
// (including one abandoned because its context ended). The record stays
// unsettled and the caller tries again, so one record may fail many times.
type HookWriteFailed interface {
	OnDeadLetterWriteFailed(WriteInfo, error)
}
