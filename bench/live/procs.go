package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-go/sluice/bench/internal/proc"
)

// This program runs in several processes: the benchmark itself, and copies
// of it started by proc.Start, one per helper: the broker (kfake), the
// downstream HTTP server and the noisy neighbour.
func child() bool {
	return proc.Child(map[string]func(string){"downstream": runDownstream, "burner": runBurner})
}

// runBurner is the noisy neighbour: it keeps every core busy until
// interrupted.
func runBurner(string) {
	for range runtime.GOMAXPROCS(0) {
		go func() {
			x := uint64(1)
			for {
				x = x*6364136223846793005 + 1442695040888963407
				if x == 0 {
					fmt.Println(x)
				}
			}
		}()
	}
	proc.Serve("burning")
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg is the machine's load averages (1, 5, 15 minutes).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
