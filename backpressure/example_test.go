package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

// call is a stand-in for a sink call.
func call(context.Context) error { return nil }

func ExampleNewFixed() {
	lim, err := backpressure.NewFixed(8)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := lim.Acquire(ctx); err != nil {
		return // ctx done: nothing to release
	}
	start := time.Now()
	err = call(ctx)
	signal := backpressure.Success
	if errors.Is(err, context.DeadlineExceeded) {
		signal = backpressure.Overload
	}
	lim.Release(time.Since(start), signal)
	fmt.Println(lim.Limit(), lim.InFlight())
	// Output: 8 0
}

func ExampleNewAdaptive() {
	lim, err := backpressure.NewAdaptive(
		backpressure.InitialLimit(16),
		backpressure.MaxLimit(256),
		backpressure.Window(200*time.Millisecond, 100),
	)
	if err != nil {
		panic(err)
	}
	fmt.Println(lim.Limit())

	_, err = backpressure.NewAdaptive(backpressure.Tolerance(0.9))
	fmt.Println(err)
	// Output:
	// 16
	// backpressure: Tolerance = 0.9: must be a finite ratio greater than 1
}

// The limiter follows a downstream of 32 servers that loses 24 of them:
// latency is 10ms up to the server count and grows in proportion above. The
// clock is moved by hand, so that the example runs instantly and always
// prints the same.
func ExampleAdaptive_capacityDrop() {
	clk := pipelinetest.NewClock(time.Unix(0, 0))
	lim, _ := backpressure.NewAdaptive(backpressure.Clock(clk), backpressure.Seed(1))
	inFlight := 0
	run := func(servers int, d time.Duration) {
		for end := clk.Now().Add(d); clk.Now().Before(end); {
			for lim.TryAcquire() {
				inFlight++
			}
			lat := 10 * time.Millisecond * time.Duration(max(inFlight, servers)) / time.Duration(servers)
			clk.Advance(lat / time.Duration(inFlight))
			inFlight--
			lim.Release(lat, backpressure.Success)
		}
	}
	run(32, 5*time.Second)
	fmt.Println("32 servers, limit in [32, 48]:", lim.Limit() >= 32 && lim.Limit() <= 48)
	run(8, 2*time.Second)
	fmt.Println("8 servers, limit in [8, 12]:", lim.Limit() >= 8 && lim.Limit() <= 12)
	// Output:
	// 32 servers, limit in [32, 48]: true
	// 8 servers, limit in [8, 12]: true
}

func ExamplePartitions() {
	lim, _ := backpressure.NewFixed(10, backpressure.Partitions(
		backpressure.Partition{Name: "payments", Share: 0.6},
		backpressure.Partition{Name: "audit", Share: 0.2},
	))
	payments, _ := lim.Flow("payments")
	audit, _ := lim.Flow("audit")

	// Payments is idle, so audit may borrow its share.
	for audit.TryAcquire() {
	}
	fmt.Println("audit holds", audit.InFlight(), "of", lim.Limit())

	// Payments gets the next slot freed, ahead of any audit waiter.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = payments.Acquire(context.Background())
	}()
	audit.Release(time.Millisecond, backpressure.Success)
	<-done
	fmt.Println("payments holds", payments.InFlight(), "reserved", payments.Reserved())
	// Output:
	// audit holds 10 of 10
	// payments holds 1 reserved 6
}
