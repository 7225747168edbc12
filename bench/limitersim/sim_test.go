package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func scenarioNamed(t *testing.T, scale float64, name string) *scenario {
	t.Helper()
	for _, sc := range scenarios(scale) {
		if sc.name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %s", name)
	return nil
}

func TestSimulationIsDeterministic(t *testing.T) {
	sc := scenarioNamed(t, 0.2, "capacity-drop")
	a := run(sc, "adaptive", adaptive().mk, 7)
	b := run(sc, "adaptive", adaptive().mk, 7)
	if a.ok != b.ok || !slices.Equal(a.lat, b.lat) || len(a.decisions) != len(b.decisions) {
		t.Fatalf("two runs with seed 7 differ: %d/%d ok, %d/%d decisions", a.ok, b.ok, len(a.decisions), len(b.decisions))
	}
	for i := range a.decisions {
		if a.decisions[i] != b.decisions[i] {
			t.Fatalf("decision %d differs: %+v vs %+v", i, a.decisions[i], b.decisions[i])
		}
	}
}

func TestFixedLimitMatchesQueueingTheory(t *testing.T) {
	// A fixed limit of 32 on 32 servers keeps every server busy without a
	// queue: goodput is c/mean service time and latency the service time.
	sc := scenarioNamed(t, 0.2, "steady")
	m := measure(sc, run(sc, "fixed-32", fixed(32).mk, 1))
	if want := capacity(32); m.goodput < 0.97*want || m.goodput > 1.03*want {
		t.Fatalf("goodput %.0f/s, want %.0f/s", m.goodput, want)
	}
	if m.p99 > 1.1*unloadedP99 {
		t.Fatalf("p99 %.1fms, want about the unloaded %.1fms", m.p99, unloadedP99)
	}
}

// long adds the scenarios of 768 clients (tens of seconds under -race).
var long = flag.Bool("long", false, "also run the large-demand scenarios (unlimited, cpu-bound)")

// TestAdaptiveMeetsTheTargets runs the targets on virtual time:
// they depend on the seed only, so they can be asserted. With -long, the
// large-demand scenarios too.
func TestAdaptiveMeetsTheTargets(t *testing.T) {
	const scale = 0.5
	names := []string{"steady", "latency-x3", "capacity-drop", "recovery", "caller-bound"}
	if *long {
		names = append(names, "unlimited", "cpu-bound")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc := scenarioNamed(t, scale, name)
			best := 0.0
			if name == "steady" {
				best = measure(sc, run(sc, "fixed-32", fixed(32).mk, 1)).goodput
			}
			for _, k := range sc.bestFixed() {
				if name != "steady" {
					best = max(best, measure(sc, run(sc, "fixed", fixed(k).mk, 1)).goodput)
				}
			}
			m := measure(sc, run(sc, "adaptive", adaptive().mk, 1))
			for _, tg := range targets(sc, m, best) {
				if !tg.pass {
					t.Errorf("%s: FAIL %s", tg.name, tg.figure)
				}
			}
			if m.demandRatio > 5 {
				t.Errorf("limit %.2f x in-flight demand, want <= 5", m.demandRatio)
			}
		})
	}
}

func TestReplaceSectionKeepsOtherSections(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"missing file", "", "# Benchmarks\n\n## Adaptive concurrency limiter\nnew\n"},
		{"appended", "# Benchmarks\n\n## Throughput\nfast\n", "# Benchmarks\n\n## Throughput\nfast\n\n## Adaptive concurrency limiter\nnew\n"},
		{
			"replaced between others",
			"# B\n\n## Throughput\nfast\n\n## Adaptive concurrency limiter\nold\nold\n\n## Memory\nsmall\n",
			"# B\n\n## Throughput\nfast\n\n## Adaptive concurrency limiter\nnew\n\n## Memory\nsmall\n",
		},
		{"replaced at end", "# B\n\n## Adaptive concurrency limiter\nold\n", "# B\n\n## Adaptive concurrency limiter\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
			if tt.give != "" {
				if err := os.WriteFile(path, []byte(tt.give), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := replaceSection(path, sectionHeading+"\nnew\n"); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
