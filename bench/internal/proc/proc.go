// Package proc runs the benchmarks' helper processes (a broker, a
// downstream, a noisy neighbour) as copies of the benchmark's own binary,
// and measures processes and records what the benchmarks share.
package proc

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/devbroker"
)

// roleEnv names the role of a copy of the binary: "role=argument".
const roleEnv = "SLUICE_BENCH_ROLE"

// Child runs this process's role, if it was started as a helper by Start,
// and reports whether it did. Call it first thing in main. roles maps a
// role name to the function that runs it; "broker" is built in.
func Child(roles map[string]func(arg string)) bool {
	role, arg, ok := strings.Cut(os.Getenv(roleEnv), "=")
	if !ok {
		return false
	}
	if role == "broker" {
		runBroker(arg)
		return true
	}
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		os.Exit(2)
	}
	run(arg)
	return true
}

// Proc is a helper process.
type Proc struct {
	cmd *exec.Cmd
	// Addr is the first line the helper printed: its address, for a
	// server.
	Addr string
}

// Start starts a copy of this binary in role with argument arg and waits
// for the first line it prints. The helper dies with this process.
func Start(role, arg string) (*Proc, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+role+"="+arg)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not start: %w", role, err)
	}
	return &Proc{cmd: cmd, Addr: strings.TrimSpace(line)}, nil
}

// StartBroker starts a broker (kfake, as `sluice dev broker` runs it) with
// topics "name:partitions,...".
func StartBroker(topics string) (*Proc, error) { return Start("broker", topics) }

// Stop interrupts the helper and waits for it to exit.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
}

// CPU is the user+system CPU time the helper has used, or -1.
func (p *Proc) CPU() time.Duration { return CPU(p.cmd.Process.Pid) }

// Serve prints ready (the helper's address) and blocks until the process is
// interrupted; helpers call it when they are up.
func Serve(ready string) {
	fmt.Println(ready)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop()
}

func runBroker(spec string) {
	topics, err := devbroker.ParseTopics(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := devbroker.Start(devbroker.Config{Port: 0, Topics: topics})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	Serve(c.ListenAddrs()[0])
	c.Close()
}

// CPU is the user+system CPU time of a process of this user, from /proc;
// -1 if it cannot be read.
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime is field 14 and stime 15, in clock ticks.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// Produce writes n records of size random bytes to topic, keyed by 1,000
// keys in turn, and waits until the broker acknowledged them all.
func Produce(ctx context.Context, addr, topic string, n, size int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	value := make([]byte, size)
	_, _ = rand.Read(value)
	var failed atomic.Pointer[error]
	for i := range n {
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%1000), Value: value}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if err := failed.Load(); err != nil {
		return fmt.Errorf("produce: %w", *err)
	}
	return nil
}

// Median is the median of xs, NaN values left out (NaN if none is left).
func Median(xs []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(xs), func(x float64) bool { return x != x })
	if len(s) == 0 {
		return nan()
	}
	slices.Sort(s)
	return s[len(s)/2]
}

func nan() float64 { var z float64; return z / z }

// CPUProfile starts a CPU profile written to path, if path is not empty,
// and returns the function that stops it.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
