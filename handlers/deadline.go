package handlers

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// GRPCTimeoutKey is the gRPC metadata key that carries a call's timeout.
const GRPCTimeoutKey = "grpc-timeout"

// Remaining returns the time left before ctx's deadline and whether ctx has
// one. The result is negative once the deadline has passed.
func Remaining(ctx context.Context) (time.Duration, bool) {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, false
	}
	return time.Until(dl), true
}

// maxGRPCValue is the largest TimeoutValue: at most 8 ASCII digits.
const maxGRPCValue = 1e8 - 1

var grpcUnits = [...]struct {
	d    time.Duration
	unit byte
}{
	{time.Nanosecond, 'n'},
	{time.Microsecond, 'u'},
	{time.Millisecond, 'm'},
	{time.Second, 'S'},
	{time.Minute, 'M'},
	{time.Hour, 'H'},
}

// GRPCTimeout formats d as a grpc-timeout value as the gRPC over HTTP/2
// protocol defines it: at most 8 digits followed by one unit of H, M, S, m,
// u or n. It picks the finest unit in which d fits and rounds up, never down,
// so the downstream never sees less time than there is; "1m" means at most
// one millisecond. A d of zero or less gives "0n".
func GRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	for _, u := range grpcUnits {
		v := int64(d / u.d)
		if d%u.d != 0 {
			v++
		}
		if v <= maxGRPCValue {
			return strconv.FormatInt(v, 10) + string(u.unit)
		}
	}
	// Unreachable: the largest Duration is about 2.6 million hours.
	return strconv.FormatInt(maxGRPCValue, 10) + "H"
}

// GRPCTimeoutMetadata returns the grpc-timeout value for the time left before
// ctx's deadline (see GRPCTimeout), for callers that build gRPC metadata by
// hand (proxies, raw HTTP/2 clients); grpc-go derives it from the context
// itself. It reports false if ctx has no deadline or it has passed.
func GRPCTimeoutMetadata(ctx context.Context) (string, bool) {
	d, ok := Remaining(ctx)
	if !ok || d <= 0 {
		return "", false
	}
	return GRPCTimeout(d), true
}

// waitErr maps the error of a wait that ended because the record's context
// is done: a cancellation is passed on as is; anything else (the record's
// deadline) means no attempt was started for lack of time.
func waitErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return errNoBudget
}
