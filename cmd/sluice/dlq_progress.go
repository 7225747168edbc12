package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sluice-go/sluice/dlq"
)

// isTerminal reports whether w is a character device, which is how a
// terminal looks to a stat of its file descriptor. It is a stat rather than
// golang.org/x/term (not a dependency of the module) because all it decides
// is whether to redraw a bar or print lines; the one miss, /dev/null, is
// also a character device and gets bars nobody sees.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress shows how a replay is going: on a terminal a bar redrawn in
// place at most every tick, otherwise a plain line at most every line
// interval. now is injected for tests.
type progress struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	every time.Duration
	last  time.Time
	verb  string   // "replayed", or "would replay" in a dry run
	shown bool     // something was shown
	seen  [3]int64 // examined, replayed, refused as last shown
}

const (
	barEvery  = 100 * time.Millisecond
	lineEvery = 5 * time.Second
	barWidth  = 30
)

func newProgress(w io.Writer, now func() time.Time, dryRun bool) *progress {
	p := &progress{w: w, tty: isTerminal(w), now: now, every: lineEvery, verb: "replayed"}
	if dryRun {
		p.verb = "would replay"
	}
	if p.tty {
		p.every = barEvery
	}
	return p
}

// update shows s if the last update is old enough.
func (p *progress) update(s dlq.ReplayStats) {
	if t := p.now(); p.last.IsZero() || t.Sub(p.last) >= p.every {
		p.last = t
		p.show(s)
	}
}

// done shows s whatever the time, unless the last update showed the same
// counts, and ends the bar's line.
func (p *progress) done(s dlq.ReplayStats) {
	if s.Total == 0 {
		return
	}
	if !p.shown || p.seen != [3]int64{s.Examined, s.Replayed, s.Refused} {
		p.show(s)
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) show(s dlq.ReplayStats) {
	p.shown, p.seen = true, [3]int64{s.Examined, s.Replayed, s.Refused}
	pct := 100.0
	if s.Total > 0 {
		pct = 100 * float64(s.Examined) / float64(s.Total)
	}
	counts := fmt.Sprintf("%d/%d %5.1f%%  %s %d  refused %d  skipped %d  ETA %s",
		s.Examined, s.Total, pct, p.verb, s.Replayed, s.Refused, s.Examined-s.Matched, eta(s))
	if !p.tty {
		fmt.Fprintf(p.w, "progress: %s\n", counts)
		return
	}
	fill := int(pct / 100 * barWidth)
	fmt.Fprintf(p.w, "\r[%s%s] %s\x1b[K", strings.Repeat("=", fill), strings.Repeat(" ", barWidth-fill), counts)
}

// eta extrapolates the rate so far to the records left.
func eta(s dlq.ReplayStats) string {
	left := s.Total - s.Examined
	switch {
	case left <= 0:
		return "0s"
	case s.Examined == 0 || s.Elapsed <= 0:
		return "?"
	}
	d := time.Duration(float64(s.Elapsed) * float64(left) / float64(s.Examined))
	return d.Round(time.Second).String()
}
