package main

import (
	"fmt"

	"github.com/sluice-go/sluice/backpressure"
)

// recorder keeps an adaptive limiter's decisions.
type recorder struct{ ds []backpressure.Decision }

func (r *recorder) LimitChanged(int)                {}
func (r *recorder) InFlightChanged(int)             {}
func (r *recorder) Decided(d backpressure.Decision) { r.ds = append(r.ds, d) }

var _ backpressure.DecisionObserver = (*recorder)(nil)

type adaptiveRun struct {
	*backpressure.Adaptive
	rec *recorder
}

func (a adaptiveRun) decisions() []backpressure.Decision { return a.rec.ds }

type maker struct {
	name string
	mk   func(backpressure.Clock, uint64) limiter
}

func fixed(n int) maker {
	return maker{fmt.Sprintf("fixed-%d", n), func(backpressure.Clock, uint64) limiter {
		l, err := backpressure.NewFixed(n)
		if err != nil {
			panic(err)
		}
		return l
	}}
}

func adaptive() maker {
	return maker{"adaptive", func(clk backpressure.Clock, seed uint64) limiter {
		rec := &recorder{}
		l, err := backpressure.NewAdaptive(backpressure.WithClock(clk), backpressure.WithSeed(seed), backpressure.WithObserver(rec))
		if err != nil {
			panic(err)
		}
		return adaptiveRun{l, rec}
	}}
}
