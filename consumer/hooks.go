package consumer

import (
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// Hook is an observer passed to the Hooks option. It implements one or more
// of the Hook interfaces below (New rejects one that implements none); the
// consumer calls those it implements. Hooks are
// called synchronously from the consumer's goroutines and must be quick and
// safe for concurrent use.
type Hook any

// HookFetched is told of records fetched for a partition.
type HookFetched interface {
	OnFetched(tp pipeline.TopicPartition, records int, bytes int64)
}

// HookFetchError is told of errors fetching a partition (an unknown or
// deleted topic, lost data, authorization), which the consumer logs and
// survives.
type HookFetchError interface {
	OnFetchError(tp pipeline.TopicPartition, err error)
}

// HookPaused is told when fetching a partition pauses or resumes because its
// buffered work crossed a water mark.
type HookPaused interface {
	OnPaused(tp pipeline.TopicPartition, paused bool)
}

// HookCommitted is told of each partition's commit: the offset and the
// error, if the commit failed.
type HookCommitted interface {
	OnCommitted(tp pipeline.TopicPartition, offset int64, err error)
}

// HookAssigned is told when partitions are assigned to this member.
type HookAssigned interface {
	OnAssigned(tps []pipeline.TopicPartition)
}

// HookRevoked is told when partitions were revoked and drained: how long the
// drain took and whether the drain timeout cut it short.
type HookRevoked interface {
	OnRevoked(tps []pipeline.TopicPartition, drain time.Duration, timedOut bool)
}

// HookLost is told when partitions were lost (session expired, fenced):
// their work was cancelled and nothing was committed for them.
type HookLost interface {
	OnLost(tps []pipeline.TopicPartition)
}

// HookAuthError is told of every authentication or authorization failure:
// wrong SASL credentials, a TLS certificate error, a group or topic ACL that
// denies the consumer. See AuthFailures.
type HookAuthError interface {
	OnAuthError(err *AuthError)
}

// HookMalformedDeadline is told of each record whose
// pipeline.DeadlineHeader is not a Unix time in milliseconds; the header is
// ignored.
type HookMalformedDeadline interface {
	OnMalformedDeadline(tp pipeline.TopicPartition, offset int64)
}

type hooks []Hook

func each[H any](hs hooks, fn func(H)) {
	for _, h := range hs {
		if h, ok := h.(H); ok {
			fn(h)
		}
	}
}

// isHook reports whether h implements at least one Hook interface.
func isHook(h Hook) bool {
	switch h.(type) {
	case HookFetched, HookFetchError, HookPaused, HookCommitted, HookAssigned, HookRevoked,
		HookLost, HookAuthError, HookMalformedDeadline, HookShareAckError, HookShareAcked:
		return true
	}
	return false
}
