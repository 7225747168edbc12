package handlers

import (
	"fmt"
	"time"
)

// Hook is an observer of a guard chain: any value that implements one or
// more of the Hook interfaces below (HookRetry, HookBreakerState, ...). A
// metrics package implements them and checks so at compile time, as
// franz-go's kprom does:
//
//	var _ handlers.HookRetry = (*Metrics)(nil)
//
// Hooks are called synchronously on the sink's goroutine (the breaker hook
// under the breaker's lock): they must be fast, must not block and must not
// call back into the chain. Every hook receives the sink's name (Name),
// so one value can observe many sinks.
type Hook any

// HookAttempt is told about every call of the sink: its latency (the sink
// alone, as the limiter sees it) and its error (nil on success).
type HookAttempt interface {
	OnAttempt(sink string, latency time.Duration, err error)
}

// HookRetry is told before every backoff: the attempt that just failed
// (1-based), how long the chain will wait, and the error.
type HookRetry interface {
	OnRetry(sink string, attempt int, delay time.Duration, err error)
}

// HookBreakerState is told when the sink's breaker changes state. A breaker
// starts closed.
type HookBreakerState interface {
	OnBreakerState(sink string, from, to BreakerState)
}

// HookRateWait is told, for every attempt that passed the rate limiter, how
// long it waited there (often zero).
type HookRateWait interface {
	OnRateWait(sink string, wait time.Duration)
}

// HookOutcome is told once per record when the chain returns: outcome is
// OutcomeOK, OutcomeAbandoned or the failure class the record was given up
// with; attempts is how many times the sink was called; elapsed is the time
// spent in the chain, waits and backoffs included.
type HookOutcome interface {
	OnOutcome(sink string, outcome string, attempts int, elapsed time.Duration)
}

// Outcomes reported to HookOutcome besides the failure classes.
const (
	// OutcomeOK: the sink succeeded (after one or more attempts).
	OutcomeOK = "ok"
	// OutcomeAbandoned: the record's context was cancelled (revoke or
	// shutdown); the record stays unsettled and is not dead-lettered: the
	// word pipeline.OutcomeAbandoned uses for the same event.
	OutcomeAbandoned = "abandoned"
)

// hooks holds the configured hooks split by interface, so calls do not type
// assert on the hot path.
type hooks struct {
	attempt []HookAttempt
	retry   []HookRetry
	breaker []HookBreakerState
	rate    []HookRateWait
	outcome []HookOutcome
}

func newHooks(hs []Hook) (hooks, error) {
	var h hooks
	for i, x := range hs {
		n := 0
		if v, ok := x.(HookAttempt); ok {
			h.attempt = append(h.attempt, v)
			n++
		}
		if v, ok := x.(HookRetry); ok {
			h.retry = append(h.retry, v)
			n++
		}
		if v, ok := x.(HookBreakerState); ok {
			h.breaker = append(h.breaker, v)
			n++
		}
		if v, ok := x.(HookRateWait); ok {
			h.rate = append(h.rate, v)
			n++
		}
		if v, ok := x.(HookOutcome); ok {
			h.outcome = append(h.outcome, v)
			n++
		}
		if n == 0 {
			return hooks{}, configErr("Hooks", "", fmt.Sprintf("%T", x), fmt.Sprintf("hook %d implements none of HookAttempt, HookRetry, HookBreakerState, HookRateWait, HookOutcome", i))
		}
	}
	return h, nil
}
