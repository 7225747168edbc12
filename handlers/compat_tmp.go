package handlers

import (
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/backpressure"
)

// Temporary old names for bench/, which another change edits until it is
// updated; removed with that update.

type Handler[M any] = Guarded[M]

func WithName(n string) Opt                     { return Name(n) }
func WithLogger(l *slog.Logger) Opt             { return Logger(l) }
func WithBudget(d time.Duration) Opt            { return Budget(d) }
func WithRetry(p RetryPolicy) Opt               { return Retry(p) }
func WithBreaker(p BreakerPolicy) Opt           { return Breaker(p) }
func WithRateLimit(r rate.Limit, burst int) Opt { return RateLimit(r, burst) }
func WithLimiter(l backpressure.Limiter) Opt    { return Limiter(l) }
func WithTimeout(d time.Duration) Opt           { return Timeout(d) }
