package main

import (
	"fmt"
	"image/color"
	"math"
	"time"

	"github.com/sluice-go/sluice/bench/internal/chart"
)

var (
	series = map[string]color.RGBA{
		"adaptive":  {31, 119, 180, 255},
		"gradient2": {255, 127, 14, 255},
		"vegas":     {44, 160, 44, 255},
		"envoy":     {148, 103, 189, 255},
	}
	seriesOrder = []string{"envoy", "vegas", "gradient2", "adaptive"}
)

type panel struct {
	sc   *scenario
	runs map[string]metrics
}

// plot draws one panel per scenario: the limit over virtual time of the
// adaptive and reference limiters, with the ideal limit dashed.
func plot(path string, panels []panel) error {
	const pw, ph, cols = 620, 300, 2
	rows := (len(panels) + cols - 1) / cols
	const header = 70
	img := chart.New(pw*cols, header+ph*rows)
	img.Text(20, 14, "Concurrency limit over virtual time (dashed: ideal limit)", 2, chart.Black)
	lx := 20
	for i := len(seriesOrder) - 1; i >= 0; i-- {
		name := seriesOrder[i]
		img.Rect(lx, 46, lx+24, 50, series[name])
		img.Text(lx+30, 42, name, 2, chart.Black)
		lx += 30 + chart.TextWidth(name, 2) + 30
	}
	for i, p := range panels {
		drawPanel(img, (i%cols)*pw, header+(i/cols)*ph, pw, ph, p)
	}
	return img.Save(path)
}

func drawPanel(img chart.Canvas, ox, oy, w, h int, p panel) {
	const left, right, top, bottom = 56, 16, 28, 34
	x0, y0 := float64(ox+left), float64(oy+top)
	x1, y1 := float64(ox+w-right), float64(oy+h-bottom)
	ideal := math.Max(p.sc.idealBefore, p.sc.idealAfter)
	ymax := chart.NiceCeil(2.2 * ideal)
	tmax := p.sc.duration
	X := func(t time.Duration) float64 { return x0 + (x1-x0)*float64(t)/float64(tmax) }
	Y := func(v float64) float64 { return y1 - (y1-y0)*math.Min(v, ymax)/ymax }

	img.Text(ox+left, oy+8, p.sc.name, 2, chart.Black)
	step := ymax / 4
	for v := 0.0; v <= ymax+1e-9; v += step {
		img.Line(x0, Y(v), x1, Y(v), 1, 0, chart.Grid)
		lbl := fmt.Sprintf("%.0f", v)
		img.Text(int(x0)-8-chart.TextWidth(lbl, 1)*2, int(Y(v))-7, lbl, 2, chart.Gray)
	}
	tstep := 5 * time.Second
	if tmax > 40*time.Second {
		tstep = 10 * time.Second
	}
	for t := time.Duration(0); t <= tmax; t += tstep {
		img.Line(X(t), y0, X(t), y1, 1, 0, chart.Grid)
		lbl := fmt.Sprintf("%ds", int(t.Seconds()))
		img.Text(int(X(t))-chart.TextWidth(lbl, 2)/2, int(y1)+8, lbl, 2, chart.Gray)
	}
	img.Line(x0, y1, x1, y1, 1, 0, chart.Gray)
	img.Line(x0, y0, x0, y1, 1, 0, chart.Gray)
	if p.sc.changeAt > 0 {
		img.Line(X(0), Y(p.sc.idealBefore), X(p.sc.changeAt), Y(p.sc.idealBefore), 2, 6, chart.Gray)
		img.Line(X(p.sc.changeAt), Y(p.sc.idealAfter), X(tmax), Y(p.sc.idealAfter), 2, 6, chart.Gray)
	} else {
		img.Line(X(0), Y(ideal), X(tmax), Y(ideal), 2, 6, chart.Gray)
	}
	for _, name := range seriesOrder {
		m, ok := p.runs[name]
		if !ok {
			continue
		}
		thick := 1
		if name == "adaptive" {
			thick = 2
		}
		for i := 1; i < len(m.trace); i++ {
			a, b := m.trace[i-1], m.trace[i]
			if b.t > tmax {
				break
			}
			img.Line(X(a.t), Y(float64(a.limit)), X(b.t), Y(float64(a.limit)), thick, 0, series[name])
			img.Line(X(b.t), Y(float64(a.limit)), X(b.t), Y(float64(b.limit)), thick, 0, series[name])
		}
	}
}
