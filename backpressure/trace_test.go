package backpressure

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var updateTrace = flag.Bool("update-trace", false, "rewrite testdata/adaptive_trace.golden")

// phase is one stretch of a traced script: closed-loop calls at most conc at
// once, each with the latency lat gives times a noise factor, and the signal
// sig gives for the call's index, until windows decisions were taken.
type phase struct {
	name    string
	conc    int
	lat     latencyFunc
	noise   float64 // sigma of a lognormal factor on each latency; 0: none
	sig     func(i int) Signal
	windows int
	// After the first decision for reason on (if set), the downstream
	// changes to lat2 and sig2: a change timed to a state of the limiter.
	on   Reason
	lat2 latencyFunc
	sig2 func(i int) Signal
}

func always(s Signal) func(int) Signal { return func(int) Signal { return s } }

// every returns s for every nth call and Success otherwise.
func every(n int, s Signal) func(int) Signal {
	return func(i int) Signal {
		if i%n == 0 {
			return s
		}
		return Success
	}
}

// traceScript drives one limiter through every rule: slow start, the knee,
// probes, capacity drops and recoveries (runs of cuts, confirmations,
// rebaselines and their verification), latency rises, faster windows,
// overload, ignored signals, a caller-bound demand, a microsecond sink and
// noisy windows (suspect windows, exploration).
var traceScript = []phase{
	{"slow start", 1000, servers(200, 10*ms), 0, always(Success), 30, "", nil, nil},
	{"knee, noisy", 1000, servers(32, 10*ms), 0.3, always(Success), 40, "", nil, nil},
	{"drop 32 -> 8", 1000, servers(8, 10*ms), 0, always(Success), 15, "", nil, nil},
	{"recovery 8 -> 32", 1000, servers(32, 10*ms), 0, always(Success), 25, "", nil, nil},
	{"latency x3", 1000, servers(32, 30*ms), 0, always(Success), 20, "", nil, nil},
	{"faster", 64, flat(5 * ms), 0, always(Success), 10, "", nil, nil},
	{"stall", 64, flat(12 * ms), 0, always(Success), 2, "", nil, nil},
	{"unstalled", 64, flat(5 * ms), 0.05, always(Success), 10, "", nil, nil},
	{"overload 1 in 4", 1000, servers(32, 10*ms), 0, every(4, Overload), 6, "", nil, nil},
	{"ignore 1 in 3", 1000, servers(32, 10*ms), 0.1, every(3, Ignore), 15, "", nil, nil},
	{"caller-bound", 4, flat(10 * ms), 0, always(Success), 20, "", nil, nil},
	{"demand returns", 1000, servers(64, 10*ms), 0.2, always(Success), 40, "", nil, nil},
	{"microseconds", 16, flat(50 * time.Microsecond), 0.5, always(Success), 4, "", nil, nil},
	{"mild rise", 1000, servers(48, 14*ms), 0.1, always(Success), 25, "", nil, nil},
	{"latency x4, noisy", 1000, servers(48, 56*ms), 0.3, always(Success), 25, "", nil, nil},
	{"drop 48 -> 4", 1000, servers(4, 14*ms), 0, always(Success), 15, "", nil, nil},
	{"drop 4 -> 1", 1000, servers(1, 14*ms), 0.1, always(Success), 20, "", nil, nil},
	{"big recovery", 1000, servers(160, 10*ms), 0.1, always(Success), 40, "", nil, nil},
	{"unlimited, noisy", 400, flat(10 * ms), 0.4, always(Success), 40, "", nil, nil},
	{"settle", 1000, servers(32, 10*ms), 0, always(Success), 30, "", nil, nil},
	{"rise, then a drop refutes the rebaseline", 1000, servers(32, 30*ms), 0, always(Success), 20,
		ReasonRebaseline, servers(8, 30*ms), always(Success)},
	{"drop during a probe", 1000, servers(32, 10*ms), 0, always(Success), 80,
		ReasonProbe, servers(4, 10*ms), always(Success)},
	{"overload during a probe", 1000, servers(32, 10*ms), 0, always(Success), 80,
		ReasonProbe, servers(32, 10*ms), every(2, Overload)},
}

// traceConfigs are the option sets the script runs with.
var traceConfigs = []struct {
	name string
	opts []AdaptiveOpt
}{
	{"defaults", nil},
	{"seed 7", []AdaptiveOpt{Seed(7)}},
	{"tight", []AdaptiveOpt{Seed(3), Tolerance(1.5), Quantile(0.5), InitialLimit(5), MinLimit(2), MaxLimit(300), Probe(2*time.Second, 0.1)}},
	{"small windows", []AdaptiveOpt{Seed(5), Window(20*ms, 20), DemandFactor(1.5), OverloadThreshold(0.05)}},
}

// trace runs traceScript on a limiter made with opts and writes one line per
// decision.
func trace(t *testing.T, buf *bytes.Buffer, opts []AdaptiveOpt) {
	h := newHarness(t, opts...)
	t0 := h.clk.Now()
	rng := rand.New(rand.NewPCG(11, 13))
	calls := 0
	for _, p := range traceScript {
		fmt.Fprintf(buf, "# %s\n", p.name)
		start := len(h.rec.decisions)
		lat, sig := p.lat, p.sig
		for steps := 0; len(h.rec.decisions)-start < p.windows; steps++ {
			if steps > 1_000_000*p.windows {
				t.Fatalf("%s: no decision after %d steps", p.name, steps)
			}
			for len(h.held) < p.conc && h.l.TryAcquire() {
				h.held = append(h.held, h.clk.Now())
			}
			if p.on != "" && len(h.rec.decisions) > start && h.rec.decisions[len(h.rec.decisions)-1].Reason == p.on {
				lat, sig = p.lat2, p.sig2
			}
			d := lat(len(h.held))
			if p.noise > 0 {
				d = time.Duration(float64(d) * math.Exp(p.noise*rng.NormFloat64()))
			}
			h.clk.Advance(max(time.Microsecond, d/time.Duration(len(h.held))))
			h.held = h.held[1:]
			calls++
			h.l.Release(d, sig(calls))
		}
		for _, d := range h.rec.decisions[start:] {
			fmt.Fprintf(buf, "%v %s limit=%d probing=%v samples=%d overloads=%d q=%v base=%v n=%v max=%d x=%v\n",
				d.At.Sub(t0), d.Reason, d.Limit, d.Probing, d.Samples, d.Overloads, d.Latency, d.Baseline, d.InFlight, d.MaxInFlight, d.Throughput)
		}
	}
	fmt.Fprintf(buf, "limits %v\n", h.rec.limits)
}

// TestAdaptiveTraceIsUnchanged drives the adaptive limiter through a fixed
// script of windows on a fake clock, under several option sets, and compares
// every decision (reason, limit, latency, baseline, in-flight, throughput)
// and every limit change with the recorded trace. It guards refactors of the
// controller: any change of behaviour shows as a diff. Run with
// -update-trace to record a deliberate change.
func TestAdaptiveTraceIsUnchanged(t *testing.T) {
	var buf bytes.Buffer
	seen := map[Reason]bool{}
	for _, tc := range traceConfigs {
		fmt.Fprintf(&buf, "## %s\n", tc.name)
		var one bytes.Buffer
		trace(t, &one, tc.opts)
		buf.Write(one.Bytes())
		for _, r := range allReasons {
			if bytes.Contains(one.Bytes(), []byte(" "+string(r)+" ")) {
				seen[r] = true
			}
		}
	}
	for _, r := range allReasons {
		if !seen[r] {
			t.Errorf("the script never decides %s", r)
		}
	}
	path := filepath.Join("testdata", "adaptive_trace.golden")
	if *updateTrace {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes(); !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("trace differs at line %d:\ngot  %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("trace has %d lines, want %d", len(gl), len(wl))
	}
}

var allReasons = []Reason{
	ReasonGrow, ReasonExplore, ReasonKnee, ReasonHold, ReasonCut, ReasonConfirm,
	ReasonRebaseline, ReasonFaster, ReasonOverload, ReasonProbe, ReasonProbed, ReasonStart,
}
