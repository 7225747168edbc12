package main

import (
	"fmt"
	"image/color"
	"math"
	"time"

	"github.com/sluice-go/sluice/bench/internal/chart"
)

var (
	blue   = color.RGBA{31, 119, 180, 255}
	orange = color.RGBA{255, 127, 14, 255}
	green  = color.RGBA{44, 160, 44, 255}
)

// plot draws, for each scenario, the last round's adaptive run: its limit
// over time next to the ideal limit (left), and its goodput next to the
// baseline mode's (right).
func plot(path string, scs []*scenario, results []*runResult) error {
	const pw, ph, header = 620, 280, 70
	img := chart.New(2*pw, header+ph*len(scs))
	img.Text(20, 14, "Live: adaptive limit over time (left), goodput every 100ms (right)", 2, chart.Black)
	legend := []struct {
		name string
		col  color.RGBA
	}{{"limit", blue}, {"in-flight", green}, {"adaptive goodput", blue}, {"baseline goodput", orange}}
	lx := 20
	for _, l := range legend {
		img.Rect(lx, 46, lx+24, 50, l.col)
		img.Text(lx+30, 42, l.name, 2, chart.Black)
		lx += 30 + chart.TextWidth(l.name, 2) + 30
	}
	for i, sc := range scs {
		var adaptive, base *runResult
		for _, r := range results {
			switch {
			case r.sc != sc:
			case r.mode == "adaptive":
				adaptive = r
			case r.mode == baselineMode(sc):
				base = r
			}
		}
		if adaptive == nil {
			continue
		}
		y := header + i*ph
		limitPanel(img, 0, y, pw, ph, sc, adaptive)
		goodputPanel(img, pw, y, pw, ph, sc, adaptive, base)
	}
	return img.Save(path)
}

// baselineMode is the mode the goodput panel compares with.
func baselineMode(sc *scenario) string {
	if sc.baseline == "best-fixed" {
		return "fixed-64"
	}
	return sc.baseline
}

type axes struct {
	x0, y0, x1, y1 float64
	tmax           time.Duration
	ymax           float64
}

func (a axes) X(t time.Duration) float64 { return a.x0 + (a.x1-a.x0)*float64(t)/float64(a.tmax) }
func (a axes) Y(v float64) float64       { return a.y1 - (a.y1-a.y0)*math.Min(v, a.ymax)/a.ymax }

// frame draws a panel's title, grid and labels.
func frame(img chart.Canvas, ox, oy, w, h int, title string, tmax time.Duration, ymax float64, unit string) axes {
	const left, right, top, bottom = 80, 16, 28, 34
	a := axes{x0: float64(ox + left), y0: float64(oy + top), x1: float64(ox + w - right), y1: float64(oy + h - bottom), tmax: tmax, ymax: ymax}
	img.Text(ox+left, oy+8, title, 2, chart.Black)
	for v := 0.0; v <= ymax+1e-9; v += ymax / 4 {
		img.Line(a.x0, a.Y(v), a.x1, a.Y(v), 1, 0, chart.Grid)
		lbl := fmt.Sprintf("%.0f%s", v, unit)
		img.Text(int(a.x0)-8-chart.TextWidth(lbl, 2), int(a.Y(v))-7, lbl, 2, chart.Gray)
	}
	step := 2 * time.Second
	if tmax > 20*time.Second {
		step = 5 * time.Second
	}
	for t := time.Duration(0); t <= tmax; t += step {
		img.Line(a.X(t), a.y0, a.X(t), a.y1, 1, 0, chart.Grid)
		lbl := fmt.Sprintf("%ds", int(t.Seconds()))
		img.Text(int(a.X(t))-chart.TextWidth(lbl, 2)/2, int(a.y1)+8, lbl, 2, chart.Gray)
	}
	img.Line(a.x0, a.y1, a.x1, a.y1, 1, 0, chart.Gray)
	img.Line(a.x0, a.y0, a.x0, a.y1, 1, 0, chart.Gray)
	return a
}

func limitPanel(img chart.Canvas, ox, oy, w, h int, sc *scenario, r *runResult) {
	tmax := r.end - r.first
	peak := sc.ideal(0)
	for _, p := range r.trace {
		peak = math.Max(peak, float64(p.limit))
	}
	a := frame(img, ox, oy, w, h, sc.name+": limit", tmax, chart.NiceCeil(1.1*peak), "")
	// The ideal limit, dashed, in steps.
	for t := time.Duration(0); t < tmax; t += bucket {
		v := sc.ideal(t)
		img.Line(a.X(t), a.Y(v), a.X(min(t+bucket, tmax)), a.Y(v), 2, 6, chart.Gray)
	}
	series := func(get func(limitPoint) int, col color.RGBA, thick int) {
		for i := 1; i < len(r.trace); i++ {
			p, q := r.trace[i-1], r.trace[i]
			tp, tq := p.at-r.first, q.at-r.first
			if tp < 0 || tq > tmax {
				continue
			}
			img.Line(a.X(tp), a.Y(float64(get(p))), a.X(tq), a.Y(float64(get(p))), thick, 0, col)
			img.Line(a.X(tq), a.Y(float64(get(p))), a.X(tq), a.Y(float64(get(q))), thick, 0, col)
		}
	}
	series(func(p limitPoint) int { return p.inFlight }, green, 1)
	series(func(p limitPoint) int { return p.limit }, blue, 2)
	marks(img, a, sc)
}

func goodputPanel(img chart.Canvas, ox, oy, w, h int, sc *scenario, r, base *runResult) {
	tmax := r.end - r.first
	m := r.metrics()
	var bm metrics
	peak := 0.0
	for _, v := range m.series {
		peak = math.Max(peak, v)
	}
	if base != nil {
		bm = base.metrics()
		for _, v := range bm.series {
			peak = math.Max(peak, v)
		}
	}
	a := frame(img, ox, oy, w, h, sc.name+": goodput (k/s), vs "+baselineMode(sc), tmax, chart.NiceCeil(1.1*peak/1000), "")
	draw := func(s []float64, col color.RGBA, thick int) {
		for i := 1; i < len(s); i++ {
			t0, t1 := time.Duration(i-1)*bucket, time.Duration(i)*bucket
			if t1+bucket > tmax {
				break // the last bucket is cut short by the end of the run
			}
			img.Line(a.X(t0), a.Y(s[i-1]/1000), a.X(t1), a.Y(s[i]/1000), thick, 0, col)
		}
	}
	if base != nil {
		draw(bm.series, orange, 1)
	}
	draw(m.series, blue, 2)
	marks(img, a, sc)
}

// marks draws the scenario's events as vertical dashed lines.
func marks(img chart.Canvas, a axes, sc *scenario) {
	for _, ev := range sc.events {
		if ev.at > a.tmax {
			continue
		}
		img.Line(a.X(ev.at), a.y0, a.X(ev.at), a.y1, 1, 4, chart.Gray)
		if ev.burn > 0 {
			img.Line(a.X(ev.at+ev.burn), a.y0, a.X(ev.at+ev.burn), a.y1, 1, 4, chart.Gray)
		}
	}
}
