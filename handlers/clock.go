package handlers

import (
	"context"
	"time"

	"github.com/sluice-go/sluice"
)

// sleep waits for d on clock's timer, or until ctx is done and then returns
// ctx.Err(). A d of zero or less returns at once (nil, or ctx.Err() if ctx
// is already done), and so does a ctx that is already done.
func sleep(ctx context.Context, clock sluice.Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	t := clock.NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
