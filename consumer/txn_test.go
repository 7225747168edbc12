package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// txnWriter is the smallest consumer.TxnWriter: it keeps the client.
type txnWriter struct {
	cl  *kgo.Client
	err error
}

func (w *txnWriter) InTransactions(cl *kgo.Client) error {
	w.cl = cl
	return w.err
}

func TestExactlyOnceConfigErrorsNameTheOption(t *testing.T) {
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	for _, tt := range []struct {
		give consumer.Opt
		want string
	}{
		{give: consumer.ExactlyOnce("", &txnWriter{}), want: "transactional ID"},
		{give: consumer.ExactlyOnce("id"), want: "no writer"},
		{give: consumer.ExactlyOnce("id", nil), want: "nil"},
		{give: consumer.ExactlyOnce("id", &txnWriter{err: errors.New("not today")}), want: "not today"},
	} {
		_, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: []string{"127.0.0.1:1"}}), consumer.Group("g"), consumer.Handle(listed(h, "t")), tt.give)
		var ce *sluice.ConfigError
		if !errors.As(err, &ce) || ce.Option != "ExactlyOnce" || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New: %v, want a ConfigError on ExactlyOnce saying %q", err, tt.want)
		}
	}
}

// A shutdown whose last transaction cannot commit (a record that does not
// settle within the drain timeout) aborts it, and Run says so with a
// *CommitError wrapping ErrAborted: the next owner handles those records
// again, and what the transaction wrote is discarded.
func TestExactlyOnceShutdownThatCannotCommitSaysSo(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("eos", 1), kafkatest.Topic("eos.out", 1))
	kc.ProduceN(t, "eos", 10, kafkatest.KeyedValue(1))
	w := &txnWriter{}
	stuck := make(chan struct{}, 1)
	h := &workHandler{fn: func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 5 {
			stuck <- struct{}{}
			<-ctx.Done() // never settles
			return ctx.Err()
		}
		return w.cl.ProduceSync(ctx, &kgo.Record{Topic: "eos.out", Value: r.Value}).FirstErr()
	}}
	c, err := consumer.New(append(baseOpts(kc, "eos", h, "eos"), consumer.ExactlyOnce("eos-1", w),
		consumer.DrainTimeout(500*time.Millisecond), consumer.CloseGrace(time.Second),
		// No barrier before the shutdown's: an earlier one would abort (the
		// stuck record) and rewind, leaving nothing to report. (An hour
		// would need a transaction timeout above the broker's cap.)
		consumer.CommitInterval(10*time.Minute))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	<-stuck
	cancel()
	var runErr error
	select {
	case runErr = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	var ce *consumer.CommitError
	if !errors.As(runErr, &ce) || !errors.Is(runErr, consumer.ErrAborted) {
		t.Fatalf("Run: %v, want a *CommitError wrapping ErrAborted", runErr)
	}
}
