package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

func TestTransactionTimeoutConfigErrorsNameTheOption(t *testing.T) {
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	eos := consumer.ExactlyOnce("id", &txnWriter{})
	for _, tt := range []struct {
		name string
		give []consumer.Opt
		want string
	}{
		{name: "negative", give: []consumer.Opt{eos, consumer.TransactionTimeout(-time.Second)}, want: "negative"},
		{name: "above the broker's cap", give: []consumer.Opt{eos, consumer.TransactionTimeout(16 * time.Minute)}, want: "transaction.max.timeout.ms"},
		{
			name: "derived above the broker's cap",
			give: []consumer.Opt{eos, consumer.DrainTimeout(10 * time.Minute), consumer.RebalanceTimeout(11 * time.Minute)},
			want: "transaction.max.timeout.ms",
		},
		{
			name: "shorter than a barrier",
			give: []consumer.Opt{eos, consumer.CommitInterval(time.Second), consumer.DrainTimeout(10 * time.Second), consumer.TransactionTimeout(15 * time.Second)},
			want: "must exceed CommitInterval + DrainTimeout",
		},
		{name: "without ExactlyOnce", give: []consumer.Opt{consumer.TransactionTimeout(time.Minute)}, want: "only with ExactlyOnce"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := consumer.New(append([]consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}}), consumer.Group("g"), consumer.Handle(listed(h, "t"))}, tt.give...)...)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Option != "TransactionTimeout" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want a ConfigError on TransactionTimeout saying %q", err, tt.want)
			}
		})
	}
}

// The producer's transaction timeout (InitProducerID's) covers a whole
// transaction: CommitInterval, the barrier (DrainTimeout) and a commit that
// waits for a rebalance (RebalanceTimeout), plus a margin of 15s; it used to
// be RebalanceTimeout alone. TransactionTimeout overrides it.
func TestTransactionTimeoutCoversBarrierAndCommit(t *testing.T) {
	for _, tt := range []struct {
		name string
		give []consumer.Opt
		want time.Duration
	}{
		{name: "derived", want: (1 + 2 + 3 + 15) * time.Second},
		{name: "set", give: []consumer.Opt{consumer.TransactionTimeout(time.Minute)}, want: time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kc := kafkatest.New(t, kafkatest.Topic("in", 1), kafkatest.Topic("out", 1))
			got := make(chan int32, 1)
			kc.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
				kc.KeepControl()
				if r := req.(*kmsg.InitProducerIDRequest); r.TransactionalID != nil {
					select {
					case got <- r.TransactionTimeoutMillis:
					default:
					}
				}
				return nil, nil, false
			})
			h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
			c, err := consumer.New(append([]consumer.Opt{consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("g"), consumer.Handle(listed(h, "in")),
				consumer.CommitInterval(time.Second), consumer.DrainTimeout(2 * time.Second), consumer.RebalanceTimeout(3 * time.Second),
				consumer.ExactlyOnce("id", &txnWriter{}), consumer.Logger(quietLogger())}, tt.give...)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Run(ctx) }()
			kc.ProduceN(t, "in", 1, kafkatest.KeyedValue(1))
			select {
			case ms := <-got:
				if d := time.Duration(ms) * time.Millisecond; d != tt.want {
					t.Errorf("transaction timeout %v, want %v", d, tt.want)
				}
			case err := <-errc:
				t.Fatalf("Run returned before the producer was initialised: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("no InitProducerID within 30s")
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
