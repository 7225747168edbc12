// Command live measures Sluice's guards and concurrency limiters on the real
// thing: the consumer and a pipeline (FanOut per partition) reading from a
// broker in a separate process (franz-go's kfake, as `sluice dev broker`
// runs it), calling a downstream that is either an HTTP server in its own
// process (workers, a service-time distribution and a schedule of changes)
// or an in-process sink that sleeps (a downstream of unlimited capacity). In
// one run it tries every mode of a scenario (no guard, the guard chain
// without a limiter, fixed limits, the adaptive limiter, the full chain) in
// turn, for several rounds with the order rotated, and reports goodput, call
// latency and the limit over time as ratios against a baseline measured in
// the same round.
//
//	go run ./bench/live                                   # every scenario, 5 rounds
//	go run ./bench/live -scenarios capacity,noisy -rounds 3
//	go run ./bench/live -png docs/limiter-live.png -debug schedule
//
// It is a program, not a test: its numbers depend on the machine and on
// what else runs on it, which it reports (load average) with every round.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/sluice-go/sluice/bench/internal/proc"
)

var (
	scenariosFlag = flag.String("scenarios", "unlimited-2ms,unlimited-20ms,capacity,schedule,noisy", "scenarios to run")
	modesFlag     = flag.String("modes", "", "run these modes (comma-separated: none, chain, fixed-N, adaptive, full) instead of each scenario's own")
	rounds        = flag.Int("rounds", 5, "rounds; each runs every mode of every scenario once, in an order rotated per round")
	size          = flag.Int("size", 100, "record value size in bytes")
	scaleFlag     = flag.Float64("scale", 1, "multiplies durations, schedule times and record counts (smaller for a quick look)")
	pngPath       = flag.String("png", "", "write the limit and goodput over time of the last round here")
	cpuProfile    = flag.String("cpuprofile", "", "write a CPU profile of the runs to this file (pprof labels: scenario, mode)")
	debug         = flag.String("debug", "", "print the adaptive limiter's decisions in this scenario")
)

func main() {
	if child() {
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "live:", err)
		os.Exit(1)
	}
}

func run() error {
	var selected []*scenario
	all := scenarios()
	for _, name := range strings.Split(*scenariosFlag, ",") {
		i := slices.IndexFunc(all, func(s *scenario) bool { return s.name == name })
		if i < 0 {
			var names []string
			for _, s := range all {
				names = append(names, s.name)
			}
			return fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(names, ", "))
		}
		sc := all[i]
		sc.scale(*scaleFlag)
		if *modesFlag != "" {
			sc.modes = strings.Split(*modesFlag, ",")
		}
		for _, m := range sc.modes {
			if _, err := parseMode(m); err != nil {
				return err
			}
		}
		selected = append(selected, sc)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var spec []string
	for _, sc := range selected {
		spec = append(spec, fmt.Sprintf("%s:%d", sc.topic(), sc.partitions))
	}
	broker, err := proc.StartBroker(strings.Join(spec, ","))
	if err != nil {
		return err
	}
	defer broker.Stop()
	e := &env{broker: broker.Addr, control: &http.Client{Timeout: 5 * time.Second}}
	for _, sc := range selected {
		if sc.http {
			ds, err := proc.Start("downstream", fmt.Sprintf("%d,%d,%g", sc.workers, int64(sc.service.mean), sc.service.sigma))
			if err != nil {
				return err
			}
			defer ds.Stop()
			e.downstream = ds
			break // one downstream serves every HTTP scenario: they all use the same service time
		}
	}
	fmt.Printf("broker %s and downstream %s in separate processes; GOMAXPROCS %d, %d CPUs, %s; load %s\n",
		broker.Addr, dsAddr(e), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), loadAvg())
	if e.downstream != nil {
		// The ideal limit of an HTTP downstream of c workers is not c: a
		// call's latency as the client sees it includes the time it spends
		// in the client, the network and the server's HTTP stack, during
		// which it holds a slot but no worker. By Little's law the ideal is
		// c times the unloaded call latency over the service time.
		l, err := calibrate(ctx, e)
		if err != nil {
			return err
		}
		for _, sc := range selected {
			if sc.http {
				f := float64(l) / float64(sc.service.mean)
				ideal := sc.ideal
				sc.ideal = func(t time.Duration) float64 { return f * ideal(t) }
				sc.idealNote = fmt.Sprintf("ideal = workers x %.2f (unloaded call latency %v over the mean service time %v)", f, l.Round(10*time.Microsecond), sc.service.mean)
			}
		}
		fmt.Printf("unloaded call latency %v (mean of 2000 calls, 8 at a time)\n", l.Round(10*time.Microsecond))
	}
	for _, sc := range selected {
		if err := produce(ctx, broker.Addr, sc); err != nil {
			return err
		}
	}

	stopProfile, err := proc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	var results []*runResult
	for r := range *rounds {
		for _, sc := range selected {
			n := len(sc.modes)
			for i := range n {
				m, _ := parseMode(sc.modes[(i+r)%n])
				runtime.GC()
				var res *runResult
				var err error
				pprof.Do(ctx, pprof.Labels("scenario", sc.name, "mode", m.name), func(ctx context.Context) {
					res, err = runOnce(ctx, e, sc, m, r)
				})
				if err != nil {
					return fmt.Errorf("round %d %s %s: %w", r+1, sc.name, m.name, err)
				}
				results = append(results, res)
				fmt.Println(res.line())
				if *debug == sc.name {
					printSeries(res)
					printDecisions(res)
				}
			}
		}
	}
	fmt.Println()
	for _, sc := range selected {
		fmt.Print(summary(sc, results))
	}
	if *pngPath != "" {
		if err := plot(*pngPath, selected, results); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	return nil
}

func dsAddr(e *env) string {
	if e.downstream == nil {
		return "(none)"
	}
	return e.downstream.Addr
}

// scale shrinks or stretches a scenario for a quick look.
func (sc *scenario) scale(f float64) {
	if f == 1 {
		return
	}
	d := func(x time.Duration) time.Duration { return time.Duration(float64(x) * f) }
	sc.duration, sc.warm = d(sc.duration), d(sc.warm)
	sc.records = int(float64(sc.records) * f)
	for i := range sc.events {
		sc.events[i].at, sc.events[i].burn = d(sc.events[i].at), d(sc.events[i].burn)
	}
	ideal := sc.ideal
	sc.ideal = func(t time.Duration) float64 { return ideal(time.Duration(float64(t) / f)) }
}

func produce(ctx context.Context, addr string, sc *scenario) error {
	start := time.Now()
	if err := proc.Produce(ctx, addr, sc.topic(), sc.records, *size); err != nil {
		return err
	}
	fmt.Printf("produced %d records to %s in %v\n", sc.records, sc.topic(), time.Since(start).Round(time.Millisecond))
	return nil
}
