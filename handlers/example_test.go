package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

// Order is the message of the examples.
type Order struct{ ID string }

func ExampleGuard() {
	// A downstream that answers 503 twice, then accepts.
	calls := 0
	store := func(ctx context.Context, o Order) error {
		calls++
		if calls <= 2 {
			return &handlers.HTTPError{Status: http.StatusServiceUnavailable}
		}
		return nil
	}
	sink, err := handlers.Guard(store,
		handlers.Name("orders-db"),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}),
		handlers.Breaker(handlers.BreakerPolicy{}),
		handlers.RateLimit(rate.Limit(500), 10),
		handlers.Timeout(time.Second),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(sink(ctx, Order{ID: "o-1"}), calls)
	// Output: <nil> 3
}

// A Guarded sink is called like the sink it wraps. When it gives a record
// up, its error is a *pipeline.FailureError that says why (its class, the
// attempts made) and matches the sentinel of its class.
func ExampleGuarded() {
	down := errors.New("connection refused")
	save := func(ctx context.Context, o Order) error { return down }
	var store handlers.Guarded[Order]
	store, err := handlers.Guard(save, handlers.Name("orders-db"),
		handlers.Retry(handlers.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	if err != nil {
		fmt.Println(err)
		return
	}
	err = store(context.Background(), Order{ID: "o-1"})
	fmt.Println(err)
	fmt.Println(errors.Is(err, pipeline.ErrExhausted), errors.Is(err, down))
	// Output:
	// exhausted after 3 attempts: connection refused
	// true true
}

// A sink error marked with pipeline.Permanent is not retried: the record is
// given up at once with class permanent.
func ExampleGuard_permanent() {
	validate := func(ctx context.Context, o Order) error {
		if o.ID == "" {
			return pipeline.Permanent(errors.New("order without id"))
		}
		return nil
	}
	sink, _ := handlers.Guard(validate, handlers.Retry(handlers.RetryPolicy{}))
	err := sink(context.Background(), Order{})
	var fe *pipeline.FailureError
	if errors.As(err, &fe) {
		fmt.Println(fe.FailureClass(), fe.FailureAttempts())
	}
	fmt.Println(err)
	// Output:
	// permanent 1
	// permanent after 1 attempt: order without id
}

func ExampleGRPCTimeout() {
	for _, d := range []time.Duration{0, 1500 * time.Microsecond, 3 * time.Second, 3*time.Second + 1, 48 * time.Hour} {
		fmt.Println(handlers.GRPCTimeout(d))
	}
	// Output:
	// 0n
	// 1500000n
	// 3000000u
	// 3000001u
	// 172800S
}

func ExampleClassifyHTTPStatus() {
	for _, code := range []int{404, 429, 500, 503} {
		fmt.Printf("%d %+v\n", code, handlers.ClassifyHTTPStatus(code))
	}
	// Output:
	// 404 {Permanent:true Overload:false RetryAfter:0s}
	// 429 {Permanent:false Overload:true RetryAfter:0s}
	// 500 {Permanent:false Overload:false RetryAfter:0s}
	// 503 {Permanent:false Overload:true RetryAfter:0s}
}

func ExampleGroupRateLimit() {
	// members follows the consumer group's size, updated by the
	// application from the consumer's rebalance callbacks.
	members := func() int { return 4 }
	_, err := handlers.Guard(func(context.Context, Order) error { return nil },
		handlers.GroupRateLimit(1000, 50, members)) // 250/s for this member
	fmt.Println(err)
	// Output: <nil>
}

// A Guarded[pipeline.Message[T]] is a pipeline sink as it is. Here
// the pipeline is fed by hand; under a consumer, consumer.Handle(p) does it.
func ExampleGuard_pipelineSink() {
	save := func(ctx context.Context, m pipeline.Message[string]) error {
		if m.Value() == "bad" {
			return pipeline.Permanent(errors.New("rejected"))
		}
		return nil
	}
	store, err := handlers.Guard(save, handlers.Name("store"),
		handlers.Retry(handlers.RetryPolicy{}), handlers.Breaker(handlers.BreakerPolicy{}))
	if err != nil {
		fmt.Println(err)
		return
	}
	dlq := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dlq))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.String()), "store", store)

	tp := pipeline.TopicPartition{Topic: "orders"}
	settler := pipelinetest.NewSettler()
	recs := settler.Records(tp, 0, 3, func(i int, r *pipeline.Record) {
		r.Value = []byte([]string{"ok", "bad", "ok"}[i])
	})
	if err := pipelinetest.Feed(context.Background(), p, tp, recs, 0); err != nil {
		fmt.Println(err)
		return
	}
	for _, dl := range dlq.Letters() {
		fmt.Println(dl.Record, dl.Stage, dl.Class, dl.Attempts)
	}
	fmt.Println("commit at", settler.Watermark(tp))
	// Output:
	// orders/0@1 store permanent 1
	// commit at 3
}
