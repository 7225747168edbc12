package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/pipeline"
)

// printLetters prints the records it is given instead of parking them (a
// *dlq.Publisher in production).
type printLetters struct{}

func (printLetters) DeadLetter(_ context.Context, dl pipeline.DeadLetter) error {
	fmt.Printf("%s dead-lettered: %s\n", dl.Record, dl.Class)
	return nil
}

// A share group member: the second job fails once, is released after
// ShareSinkAttempts attempts (one here), and the broker delivers it again.
func ExampleShareGroup() {
	broker, _ := devbroker.Start(devbroker.Config{Topics: []devbroker.Topic{{Name: "jobs", Partitions: 1}}})
	defer broker.Close()
	addr := broker.ListenAddrs()[0]
	producer, _ := kgo.NewClient(kgo.SeedBrokers(addr))
	for i := range 3 {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "jobs", Key: []byte("k"), Value: fmt.Appendf(nil, "job-%d", i)})
	}
	producer.Close()

	done := make(chan struct{})
	var finished atomic.Int32
	p := pipeline.New(pipeline.DeadLetters(consumer.ShareDeadLetters(printLetters{})))
	pipeline.Sink(pipeline.Source(p, "jobs", pipeline.String()), "run", func(ctx context.Context, m pipeline.Message[string]) error {
		for r := range pipeline.Records(m.Token()) {
			if m.Value() == "job-1" && r.Deliveries == 1 {
				fmt.Printf("%s delivery %d: failed\n", m.Value(), r.Deliveries)
				return errors.New("worker busy")
			}
			fmt.Printf("%s delivery %d: done\n", m.Value(), r.Deliveries)
		}
		if finished.Add(1) == 3 {
			close(done)
		}
		return nil
	})
	c, err := consumer.New(
		consumer.Connection(sluice.Connection{Brokers: []string{addr}}),
		consumer.ShareGroup("workers"), // instead of Group
		consumer.ShareLanes(1),         // one record at a time, in offset order within a batch
		consumer.ShareSinkAttempts(1),  // release a failing record at once
		consumer.Handle(p),
		consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		cancel()
	}()
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// job-0 delivery 1: done
	// job-1 delivery 1: failed
	// job-2 delivery 1: done
	// job-1 delivery 2: done
}
