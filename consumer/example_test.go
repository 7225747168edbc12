package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/pipeline"
)

// printHandler handles a partition's records in order and settles each.
type printHandler struct {
	mu   sync.Mutex
	seen int
	done chan struct{}
}

func (h *printHandler) OpenPartition(ctx context.Context, tp pipeline.TopicPartition) (pipeline.Partition, error) {
	return h, nil
}

func (h *printHandler) Handle(ctx context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		fmt.Printf("%s key=%s value=%s\n", r, r.Key, r.Value)
		r.Settle() // done: the offset may be committed
		h.mu.Lock()
		if h.seen++; h.seen == 3 {
			close(h.done)
		}
		h.mu.Unlock()
	}
	return nil
}

func (h *printHandler) Close() {}

// Topics lists the topics the handler reads, which the consumer reads (a
// *pipeline.Pipeline lists those of its Sources).
func (h *printHandler) Topics() []string { return []string{"orders"} }

func Example() {
	broker, _ := devbroker.Start(devbroker.Config{Topics: []devbroker.Topic{{Name: "orders", Partitions: 1}}})
	defer broker.Close()
	addr := broker.ListenAddrs()[0]

	producer, _ := kgo.NewClient(kgo.SeedBrokers(addr))
	for i := range 3 {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Key: []byte("k"), Value: fmt.Appendf(nil, "order-%d", i)})
	}
	producer.Close()

	h := &printHandler{done: make(chan struct{})}
	c, err := consumer.New(
		consumer.Connection(sluice.Connection{Brokers: []string{addr}}),
		consumer.Group("example"),
		consumer.Handle(h), // reads the topics h lists
		consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
		}
		cancel() // graceful: drain, commit, leave
	}()
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// orders/0@0 key=k value=order-0
	// orders/0@1 key=k value=order-1
	// orders/0@2 key=k value=order-2
}

func ExampleNew_configError() {
	_, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:9092"}}))
	fmt.Println(err)
	// Output: consumer: Group: a consumer group name is required
}
