package demo

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/metrics"
)

// gauges is what the progress display shows, read from the demo's
// Prometheus registry: the same numbers /metrics serves and the dashboard
// plots.
type gauges struct {
	at          time.Time
	shippedOK   float64 // sluice_records_handled_total{stage="ship",outcome="ok"}
	lag         float64
	hasLag      bool
	paused      float64
	assigned    float64
	inFlight    float64
	limit       float64
	breaker     float64 // 0 closed, 1 half-open, 2 open
	breakerOpen float64 // times it opened
	retries     float64
	deadBy      map[string]float64 // by reason
	filtered    float64
}

// read gathers g into a gauges snapshot.
func read(g prometheus.Gatherer, now time.Time) gauges {
	out := gauges{at: now, deadBy: map[string]float64{}}
	fams, _ := g.Gather() // a failed collector leaves its numbers out
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			v := value(m)
			lbl := labels(m)
			switch f.GetName() {
			case metrics.RecordsHandled:
				switch {
				case lbl[metrics.LabelStage] == orders.SinkShip && lbl[metrics.LabelOutcome] == "ok":
					out.shippedOK += v
				case lbl[metrics.LabelStage] == orders.StageValid && lbl[metrics.LabelOutcome] == "filtered":
					out.filtered += v
				}
			case metrics.ConsumerLag:
				out.lag += v
				out.hasLag = true
			case metrics.PartitionsPaused:
				out.paused += v
			case metrics.PartitionsAssigned:
				out.assigned += v
			case metrics.ConcurrencyInFlight:
				out.inFlight += v
			case metrics.ConcurrencyLimit:
				out.limit += v
			case metrics.BreakerState:
				out.breaker = max(out.breaker, v)
			case metrics.BreakerTransitions:
				if lbl[metrics.LabelState] == "open" {
					out.breakerOpen += v
				}
			case metrics.Retries:
				out.retries += v
			case metrics.DeadLetters:
				out.deadBy[lbl[metrics.LabelReason]] += v
			}
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func breakerName(v float64) string {
	switch v {
	case 1:
		return "half-open"
	case 2:
		return "OPEN"
	}
	return "closed"
}

// byReason formats dead-letter counts as "decode 3, panic 1", in name order.
func byReason[N int | float64](m map[string]N) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %v", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sum[N int | float64](m map[string]N) N {
	var t N
	for _, v := range m {
		t += v
	}
	return t
}

// frame is one refresh of the progress display.
type frame struct {
	elapsed, total time.Duration
	producing      bool
	stopping       bool
	note           string // what the demo is waiting for, if anything
	phase          Phase
	produced       int
	unsettled      int64
	g, prev        gauges
}

func (f frame) rate() float64 {
	dt := f.g.at.Sub(f.prev.at).Seconds()
	if dt <= 0 || f.prev.at.IsZero() {
		return 0
	}
	return (f.g.shippedOK - f.prev.shippedOK) / dt
}

func (f frame) lag() string {
	if !f.g.hasLag {
		return "-"
	}
	return fmt.Sprint(f.g.lag)
}

func (f frame) state() string {
	if f.stopping {
		return fmt.Sprintf("%5.1fs stopping", f.elapsed.Seconds())
	}
	if f.producing {
		return fmt.Sprintf("%5.1fs/%s", f.elapsed.Seconds(), f.total)
	}
	return fmt.Sprintf("%5.1fs draining", f.elapsed.Seconds())
}

// lines renders the frame for a terminal, one fact per line.
func (f frame) lines() []string {
	ls := []string{
		fmt.Sprintf("sluice demo %s   downstream: %s", f.state(), f.phase),
		fmt.Sprintf("  produced    %d orders", f.produced),
		fmt.Sprintf("  shipped     %.0f/s, %.0f in all   lag %s   unsettled %d   paused %.0f/%.0f partitions",
			f.rate(), f.g.shippedOK, f.lag(), f.unsettled, f.g.paused, f.g.assigned),
		fmt.Sprintf("  ship sink   in-flight %.0f, limit %.0f   breaker %s (opened %.0fx)   retries %.0f",
			f.g.inFlight, f.g.limit, breakerName(f.g.breaker), f.g.breakerOpen, f.g.retries),
		fmt.Sprintf("  dead letters %.0f: %s", sum(f.g.deadBy), byReason(f.g.deadBy)),
	}
	if f.note != "" {
		ls = append(ls, "  "+f.note)
	}
	return ls
}

// line renders the frame as one plain line, for logs and pipes.
func (f frame) line() string {
	return fmt.Sprintf("[%s] downstream=%s produced=%d shipped=%.0f (%.0f/s) lag=%s unsettled=%d paused=%.0f/%.0f in-flight=%.0f limit=%.0f breaker=%s retries=%.0f dead-letters=%.0f",
		f.state(), f.phase, f.produced, f.g.shippedOK, f.rate(), f.lag(), f.unsettled, f.g.paused, f.g.assigned,
		f.g.inFlight, f.g.limit, breakerName(f.g.breaker), f.g.retries, sum(f.g.deadBy))
}

// display writes frames: on a terminal it redraws a block of lines in place,
// otherwise it appends plain lines (and a frame's note when it changes).
type display struct {
	w     io.Writer
	tty   bool
	drawn int    // lines of the block on screen
	note  string // the last note printed as a plain line
}

func (d *display) show(f frame) {
	if !d.tty {
		if f.note != "" && f.note != d.note {
			fmt.Fprintln(d.w, f.note)
			d.note = f.note
		}
		fmt.Fprintln(d.w, f.line())
		return
	}
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn) // back to the block's first line
	}
	ls := f.lines()
	for _, l := range ls {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	d.drawn = len(ls)
	io.WriteString(d.w, b.String())
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
