package dlq_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
)

func ExampleDecodeProvenance() {
	hs := dlq.Provenance{Topic: "orders", Partition: 3, Offset: 42, Class: pipeline.ClassDecode, Error: "bad json"}.
		AppendHeaders([]kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-...")}})
	for _, h := range hs {
		fmt.Printf("%s=%s\n", h.Key, h.Value)
	}
	p, _ := dlq.DecodeProvenance(hs)
	fmt.Println(p.Topic, p.Partition, p.Offset, p.Class)
	// Output:
	// traceparent=00-...
	// sluice.dlq.topic=orders
	// sluice.dlq.partition=3
	// sluice.dlq.offset=42
	// sluice.dlq.error=bad json
	// sluice.dlq.class=decode
	// sluice.dlq.attempts=0
	// sluice.dlq.replay-count=0
	// orders 3 42 decode
}

func ExampleParseErrorPattern() {
	re, _ := dlq.ParseErrorPattern("/timeout|refused/")
	fmt.Println(re.Match("dial tcp: connection refused"))
	_, err := dlq.ParseErrorPattern("/(/")
	fmt.Println(errors.Is(err, dlq.ErrBadFilter))
	// Output:
	// true
	// true
}

// A Publisher dead-letters a record; Admin reads it back and replays it.
func ExampleNew() {
	c, _ := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"))
	defer c.Close()
	ctx := context.Background()

	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.ListenAddrs()}), dlq.Group("billing"), dlq.AutoCreate(-1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	rec := &pipeline.Record{Topic: "orders", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("{")}
	err = pub.DeadLetter(ctx, pipeline.DeadLetter{Record: rec, Stage: "decode", Err: errors.New("unexpected end of JSON input"), Class: pipeline.ClassDecode, Attempts: 1})
	fmt.Println("dead-lettered:", err == nil)

	a, err := dlq.NewAdmin(ctx, dlq.Conn{Connection: sluice.Connection{Brokers: c.ListenAddrs()}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	_ = a.Read(ctx, "orders.dlq", nil, func(l dlq.Letter) error {
		p := l.Provenance
		fmt.Printf("%s/%d@%d group=%s stage=%s class=%s error=%q\n", p.Topic, p.Partition, p.Offset, p.Group, p.Stage, p.Class, p.Error)
		return nil
	})
	s, err := a.Replay(ctx, dlq.ReplayConfig{Topic: "orders.dlq"})
	fmt.Println("replayed:", s.Replayed, err)
	// Output:
	// dead-lettered: true
	// orders/1@7 group=billing stage=decode class=decode error="unexpected end of JSON input"
	// replayed: 1 <nil>
}
