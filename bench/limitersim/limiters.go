package main

import (
	"fmt"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
)

// recorder keeps an adaptive limiter's decisions.
type recorder struct{ ds []backpressure.Decision }

func (r *recorder) OnDecision(d backpressure.Decision) { r.ds = append(r.ds, d) }

var _ backpressure.HookDecision = (*recorder)(nil)

type adaptiveRun struct {
	*backpressure.Adaptive
	rec *recorder
}

func (a adaptiveRun) decisions() []backpressure.Decision { return a.rec.ds }

type maker struct {
	name string
	mk   func(sluice.Clock, uint64) limiter
}

func fixed(n int) maker {
	return maker{fmt.Sprintf("fixed-%d", n), func(sluice.Clock, uint64) limiter {
		l, err := backpressure.NewFixed(n)
		if err != nil {
			panic(err)
		}
		return l
	}}
}

func adaptive() maker {
	return maker{"adaptive", func(clk sluice.Clock, seed uint64) limiter {
		rec := &recorder{}
		l, err := backpressure.NewAdaptive(backpressure.Clock(clk), backpressure.Seed(seed), backpressure.Hooks(rec))
		if err != nil {
			panic(err)
		}
		return adaptiveRun{l, rec}
	}}
}
