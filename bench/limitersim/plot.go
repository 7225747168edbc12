package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
	"time"
)

// The plot is drawn with the standard library alone (image, image/png and a
// 5x7 bitmap font below) so that the module takes no plotting dependency for
// one picture in the docs.

// glyphs is a 5x7 bitmap font: each row's low 5 bits, top row first.
var glyphs = map[rune][7]uint8{
	'A': {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11},
	'B': {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e},
	'C': {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e},
	'D': {0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e},
	'E': {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f},
	'F': {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10},
	'G': {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f},
	'H': {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11},
	'I': {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e},
	'J': {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c},
	'K': {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},
	'L': {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f},
	'M': {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11},
	'N': {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
	'O': {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e},
	'P': {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10},
	'Q': {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d},
	'R': {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11},
	'S': {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e},
	'T': {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
	'U': {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e},
	'V': {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04},
	'W': {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a},
	'X': {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11},
	'Y': {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04},
	'Z': {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f},
	'0': {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e},
	'1': {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e},
	'2': {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f},
	'3': {0x1e, 0x01, 0x01, 0x0e, 0x01, 0x01, 0x1e},
	'4': {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02},
	'5': {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e},
	'6': {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e},
	'7': {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
	'8': {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e},
	'9': {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c},
	'.': {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c},
	',': {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08},
	'-': {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00},
	'>': {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08},
	':': {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00},
	'(': {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},
	')': {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},
	'/': {0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10},
	'%': {0x19, 0x19, 0x02, 0x04, 0x08, 0x13, 0x13},
	'+': {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00},
	'=': {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00},
}

type canvas struct{ *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.Rect) {
		c.SetRGBA(x, y, col)
	}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.set(x, y, col)
		}
	}
}

// line draws a line of the given thickness; dash > 0 draws dashes of that
// many pixels.
func (c canvas) line(x0, y0, x1, y1 float64, thick int, dash int, col color.RGBA) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		if dash > 0 && (i/dash)%2 == 1 {
			continue
		}
		f := float64(i) / float64(n)
		x, y := int(math.Round(x0+(x1-x0)*f)), int(math.Round(y0+(y1-y0)*f))
		c.rect(x-thick/2, y-thick/2, x-thick/2+thick, y-thick/2+thick, col)
	}
}

// text draws s at (x, y) (top left), each font pixel scale x scale.
func (c canvas) text(x, y int, s string, scale int, col color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if ok {
			for row, bits := range g {
				for b := 0; b < 5; b++ {
					if bits&(1<<(4-b)) != 0 {
						c.rect(x+b*scale, y+row*scale, x+(b+1)*scale, y+(row+1)*scale, col)
					}
				}
			}
		}
		x += 6 * scale
	}
}

func textWidth(s string, scale int) int { return len(s) * 6 * scale }

var (
	white  = color.RGBA{255, 255, 255, 255}
	black  = color.RGBA{30, 30, 30, 255}
	grid   = color.RGBA{225, 225, 225, 255}
	gray   = color.RGBA{120, 120, 120, 255}
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
	img := canvas{image.NewRGBA(image.Rect(0, 0, pw*cols, header+ph*rows))}
	img.rect(0, 0, pw*cols, header+ph*rows, white)
	img.text(20, 14, "Concurrency limit over virtual time (dashed: ideal limit)", 2, black)
	lx := 20
	for i := len(seriesOrder) - 1; i >= 0; i-- {
		name := seriesOrder[i]
		img.rect(lx, 46, lx+24, 50, series[name])
		img.text(lx+30, 42, name, 2, black)
		lx += 30 + textWidth(name, 2) + 30
	}
	for i, p := range panels {
		drawPanel(img, (i%cols)*pw, header+(i/cols)*ph, pw, ph, p)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func drawPanel(img canvas, ox, oy, w, h int, p panel) {
	const left, right, top, bottom = 56, 16, 28, 34
	x0, y0 := float64(ox+left), float64(oy+top)
	x1, y1 := float64(ox+w-right), float64(oy+h-bottom)
	ideal := math.Max(p.sc.idealBefore, p.sc.idealAfter)
	ymax := niceCeil(2.2 * ideal)
	tmax := p.sc.duration
	X := func(t time.Duration) float64 { return x0 + (x1-x0)*float64(t)/float64(tmax) }
	Y := func(v float64) float64 { return y1 - (y1-y0)*math.Min(v, ymax)/ymax }

	img.text(ox+left, oy+8, p.sc.name, 2, black)
	step := ymax / 4
	for v := 0.0; v <= ymax+1e-9; v += step {
		img.line(x0, Y(v), x1, Y(v), 1, 0, grid)
		lbl := fmt.Sprintf("%.0f", v)
		img.text(int(x0)-8-textWidth(lbl, 1)*2, int(Y(v))-7, lbl, 2, gray)
	}
	tstep := 5 * time.Second
	if tmax > 40*time.Second {
		tstep = 10 * time.Second
	}
	for t := time.Duration(0); t <= tmax; t += tstep {
		img.line(X(t), y0, X(t), y1, 1, 0, grid)
		lbl := fmt.Sprintf("%ds", int(t.Seconds()))
		img.text(int(X(t))-textWidth(lbl, 2)/2, int(y1)+8, lbl, 2, gray)
	}
	img.line(x0, y1, x1, y1, 1, 0, gray)
	img.line(x0, y0, x0, y1, 1, 0, gray)
	if p.sc.changeAt > 0 {
		img.line(X(0), Y(p.sc.idealBefore), X(p.sc.changeAt), Y(p.sc.idealBefore), 2, 6, gray)
		img.line(X(p.sc.changeAt), Y(p.sc.idealAfter), X(tmax), Y(p.sc.idealAfter), 2, 6, gray)
	} else {
		img.line(X(0), Y(ideal), X(tmax), Y(ideal), 2, 6, gray)
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
			img.line(X(a.t), Y(float64(a.limit)), X(b.t), Y(float64(a.limit)), thick, 0, series[name])
			img.line(X(b.t), Y(float64(a.limit)), X(b.t), Y(float64(b.limit)), thick, 0, series[name])
		}
	}
}

func niceCeil(v float64) float64 {
	for _, s := range []float64{20, 40, 60, 80, 100, 120, 160, 200, 240, 320, 400, 800} {
		if v <= s {
			return s
		}
	}
	return math.Ceil(v/100) * 100
}
