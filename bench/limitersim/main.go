// Command limitersim runs Sluice's concurrency limiters (backpressure.Fixed
// and backpressure.Adaptive, the real code, driven through an injected
// virtual clock) and three reference algorithms against a simulated
// downstream, on virtual time: a discrete-event simulation whose results
// depend only on the seed, never on the speed or load of the machine.
//
//	go run ./bench/limitersim                         # report to stdout
//	go run ./bench/limitersim -update docs/BENCHMARKS.md -png docs/limiter-sim.png
//
// -update replaces the "## Adaptive concurrency limiter" section of the
// file (up to the next "## " heading), leaving other sections alone.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := run1(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "limitersim:", err)
		os.Exit(1)
	}
}

func run1(args []string) error {
	fs := flag.NewFlagSet("limitersim", flag.ContinueOnError)
	seed := fs.Uint64("seed", 1, "random seed of the reported run")
	seeds := fs.Int("seeds", 10, "also run the adaptive limiter's targets with seeds 1..N")
	scale := fs.Float64("scale", 1, "multiplies every scenario's duration and change time")
	update := fs.String("update", "", "replace the limiter section of this markdown file")
	pngPath := fs.String("png", "", "write the limit-over-time plot here")
	debug := fs.String("debug", "", "print the adaptive limiter's decisions in this scenario")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep := report(*seed, *seeds, *scale, *debug)
	if *pngPath != "" {
		if err := plot(*pngPath, rep.panels); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	md := rep.markdown(*pngPath, *update)
	if *update == "" {
		fmt.Print(md)
		return nil
	}
	return replaceSection(*update, md)
}

const sectionHeading = "## Adaptive concurrency limiter"

// replaceSection swaps the section in path for md, or appends md.
func replaceSection(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Benchmarks\n")
	}
	start := bytes.Index(old, []byte(sectionHeading+"\n"))
	var out []byte
	if start < 0 {
		out = append(bytes.TrimRight(old, "\n"), "\n\n"...)
		out = append(out, md...)
	} else {
		rest := old[start+len(sectionHeading)+1:]
		end := len(old)
		if i := bytes.Index(rest, []byte("\n## ")); i >= 0 {
			end = start + len(sectionHeading) + 1 + i + 1
		}
		out = append(append([]byte{}, old[:start]...), md...)
		if end < len(old) {
			out = append(append(out, '\n'), old[end:]...)
		}
	}
	if !strings.HasSuffix(string(out), "\n") {
		out = append(out, '\n')
	}
	return os.WriteFile(path, out, 0o644)
}
