package pipelinetest_test

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var tp = pipeline.TopicPartition{Topic: "orders", Partition: 1}

func TestSettlerWatermarkAndDoubleSettle(t *testing.T) {
	s := pipelinetest.NewSettler()
	recs := s.Records(tp, 10, 4, nil)
	tests := []struct {
		settle int
		want   int64
	}{
		{settle: 1, want: 10},
		{settle: 3, want: 10},
		{settle: 0, want: 12},
		{settle: 2, want: 14},
	}
	for _, tt := range tests {
		recs[tt.settle].Settle()
		if got := s.Watermark(tp); got != tt.want {
			t.Errorf("after settling offset %d: watermark %d, want %d", recs[tt.settle].Offset, got, tt.want)
		}
	}
	s.Settled(recs[2]) // a settler told twice: a bug in whoever told it
	if got := s.Twice(); len(got) != 1 || got[0] != "orders/1@12" || s.Count() != 4 {
		t.Errorf("Twice() = %v, Count() = %d", got, s.Count())
	}
}

func TestClockFiresTimersInOrder(t *testing.T) {
	c := pipelinetest.NewClock(time.Unix(100, 0))
	late, early, stopped := c.NewTimer(3*time.Second), c.NewTimer(time.Second), c.NewTimer(2*time.Second)
	if !stopped.Stop() || c.Timers() != 2 {
		t.Fatalf("Stop or Timers wrong: %d pending", c.Timers())
	}
	c.Advance(time.Second)
	select {
	case at := <-early.C():
		if !at.Equal(time.Unix(101, 0)) {
			t.Errorf("early fired at %v", at)
		}
	default:
		t.Error("early timer did not fire")
	}
	select {
	case <-late.C():
		t.Error("late timer fired early")
	default:
	}
	c.Advance(5 * time.Second)
	if at := <-late.C(); !at.Equal(time.Unix(103, 0)) || !c.Now().Equal(time.Unix(106, 0)) {
		t.Errorf("late fired at %v, now %v", at, c.Now())
	}
	if fired := c.NewTimer(0); len(fired.C()) != 1 {
		t.Error("a timer due now did not fire at once")
	}
}

func ExampleSettler() {
	s := pipelinetest.NewSettler()
	recs := s.Records(tp, 0, 3, nil)
	recs[1].Settle() // out of order: the commit cannot pass offset 0 yet
	fmt.Println(s.Watermark(tp))
	recs[0].Settle()
	fmt.Println(s.Watermark(tp))
	// Output:
	// 0
	// 2
}
