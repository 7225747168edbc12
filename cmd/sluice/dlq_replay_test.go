package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// replayCluster is a broker with 20 dead letters of orders (one partition
// each way).
func replayCluster(t *testing.T) *kafkatest.Cluster {
	t.Helper()
	c := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 20 {
		rec := &pipeline.Record{Topic: "orders", Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
		if err := pub.DeadLetter(context.Background(), pipeline.DeadLetter{Record: rec, Stage: "pg", Err: errors.New("bad"), Class: pipeline.ClassPermanent}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// hangProducesAfter makes the broker read every Produce request after the
// first n and never answer it; started is closed at the first of them.
func hangProducesAfter(c *kafkatest.Cluster, n int) (started <-chan struct{}) {
	var (
		mu   sync.Mutex
		seen int
		once sync.Once
		ch   = make(chan struct{})
	)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen <= n {
			return nil, nil, false
		}
		once.Do(func() { close(ch) })
		return nil, nil, true // no answer, ever
	})
	return ch
}

// checkSummary checks that the replay's summary says what a reader of
// orders and of the group's committed offsets sees, and returns the
// replayed count.
func checkSummary(t *testing.T, c *kafkatest.Cluster, out string) int64 {
	t.Helper()
	m := regexp.MustCompile(`replayed (\d+), refused`).FindStringSubmatch(out)
	g := regexp.MustCompile(`progress in group (\S+): continues at orders\.dlq/0@(\d+)\n`).FindStringSubmatch(out)
	if m == nil || g == nil {
		t.Fatalf("summary without counts or progress:\n%s", out)
	}
	replayed, _ := strconv.ParseInt(m[1], 10, 64)
	saved, _ := strconv.ParseInt(g[2], 10, 64)
	if held := c.EndOffsets(t, "orders")[0]; held != replayed {
		t.Errorf("the summary says %d replayed; orders holds %d\n%s", replayed, held, out)
	}
	if committed := c.Committed(t, g[1], "orders.dlq")[0]; committed != saved {
		t.Errorf("the summary says the progress continues at %d; the group committed %d\n%s", saved, committed, out)
	}
	if replayed == 0 || replayed == 20 {
		t.Errorf("want some records replayed and some not:\n%s", out)
	}
	return replayed
}

// TestDLQReplayBrokerRejectsWrites: a broker that refuses writes after a
// few produce requests. The summary counts only what Kafka acknowledged,
// says exactly what was saved, the command exits 1, and the error is
// printed once.
func TestDLQReplayBrokerRejectsWrites(t *testing.T) {
	c := replayCluster(t)
	var mu sync.Mutex
	seen := map[kmsg.Request]bool{}
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "orders", Err: kerr.InvalidRecord, Count: -1, When: func(req kmsg.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		seen[req] = true
		return len(seen) > 3
	}})
	out, errOut, code := runMain(t, "dlq", "replay", "orders.dlq", "--brokers", c.Addrs[0], "--rate", "100")
	if code != exitError {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	checkSummary(t, c, out)
	if !strings.Contains(out, "not acknowledged: ") || strings.Contains(out, "NOT saved") {
		t.Errorf("summary:\n%s", out)
	}
	if n := strings.Count(out+errOut, "INVALID_RECORD"); n != 1 || !strings.Contains(errOut, "sluice: produce replayed record to orders: INVALID_RECORD") {
		t.Errorf("the error appears %d times:\n%s%s", n, out, errOut)
	}
	// Once the broker takes writes again, the same command replays the
	// rest, and nothing twice.
	fault.Remove()
	if out, errOut, code := runMain(t, "dlq", "replay", "orders.dlq", "--brokers", c.Addrs[0]); code != 0 {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	keys := map[string]int{}
	cl := c.Client(t, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for len(keys) < 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := cl.PollFetches(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("orders holds keys %v", keys)
		}
		fs.EachRecord(func(r *kgo.Record) { keys[string(r.Key)]++ })
	}
	if n := c.EndOffsets(t, "orders")[0]; n != 20 {
		t.Fatalf("orders holds %d records for 20 dead letters: %v", n, keys)
	}
}

// TestDLQReplayBrokerNeverAnswers: a broker that stops answering produce
// requests. The replay stops after --produce-timeout with a clear error,
// and saves what was acknowledged.
func TestDLQReplayBrokerNeverAnswers(t *testing.T) {
	c := replayCluster(t)
	hangProducesAfter(c, 3)
	start := time.Now()
	out, errOut, code := runMain(t, "dlq", "replay", "orders.dlq", "--brokers", c.Addrs[0], "--rate", "100", "--produce-timeout", "1s")
	if code != exitError || !regexp.MustCompile(`\nsluice: \d+ replayed records? not acknowledged \(waited 1s; is the broker up\?\)\n$`).MatchString(errOut) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v with --produce-timeout 1s", d)
	}
	checkSummary(t, c, out)
}

// TestDLQReplaySecondInterruptQuits: Ctrl-C while the broker does not
// answer makes the replay wait for the records in flight (and say so); a
// second Ctrl-C quits at once with status 130.
func TestDLQReplaySecondInterruptQuits(t *testing.T) {
	c := replayCluster(t)
	hanging := hangProducesAfter(c, 0)
	p := startMain(t, "dlq", "replay", "orders.dlq", "--brokers", c.Addrs[0], "--produce-timeout", "1m")
	select {
	case <-hanging:
	case <-time.After(30 * time.Second):
		t.Fatal("the replay never produced")
	}
	p.signal(t, syscall.SIGINT)
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "interrupted: waiting up to 1m0s for Kafka") }, "the notice of the interrupt")
	p.quitsOnSecondInterrupt(t)
}

// mainProc is the real main running in a child process of the test binary.
type mainProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed when it has exited, with err
	err            error
}

func startMain(t *testing.T, args ...string) *mainProc {
	t.Helper()
	p := &mainProc{done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	p.cmd.Env = append(os.Environ(), runMainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitOutput waits until the process has written s to its standard output,
// failing t if it exits first or takes over 30s.
func (p *mainProc) waitOutput(t *testing.T, s string) {
	t.Helper()
	waitFor(t, func() bool {
		select {
		case <-p.done:
			t.Fatalf("exited (%v) before writing %q\nstdout:\n%s\nstderr:\n%s", p.err, s, p.stdout.String(), p.stderr.String())
		default:
		}
		return strings.Contains(p.stdout.String(), s)
	}, fmt.Sprintf("%q on standard output", s))
}

// quitsOnSecondInterrupt sends the second SIGINT and checks that the
// process quits at once with status 130, saying so.
func (p *mainProc) quitsOnSecondInterrupt(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGINT)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if !errors.As(p.err, &ee) || ee.ExitCode() != exitSignal || !strings.Contains(p.stderr.String(), "sluice: interrupt again: quitting now") {
			t.Fatalf("exit %v, stderr %q", p.err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second Ctrl-C did not quit at once")
	}
}

func (p *mainProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// TestDLQInspectShowsDroppedValue: a dead letter whose value did not fit
// says so in text and JSON, rather than showing "(null)".
func TestDLQInspectShowsDroppedValue(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders.dlq", 1))
	hs := dlq.Provenance{Topic: "orders", Partition: 2, Offset: 86, Stage: "ship", Class: pipeline.ClassDecode, ValueDropped: 2_000_000}.AppendHeaders(nil)
	c.Produce(t, &kgo.Record{Topic: "orders.dlq", Key: []byte("k"), Headers: hs})
	b := "--brokers=" + c.Addrs[0]
	out := mustCLI(t, "dlq", "inspect", "orders.dlq", b)
	if !strings.Contains(out, "value       (dropped: its 2000000 bytes did not fit the dead-letter topic; the original is at orders/2@86)") || strings.Contains(out, "(null)") ||
		!strings.Contains(out, "1 dead letter shown\n") {
		t.Fatalf("inspect:\n%s", out)
	}
	out = mustCLI(t, "dlq", "inspect", "orders.dlq", b, "--json")
	if !strings.Contains(out, `"value_dropped":2000000`) {
		t.Fatalf("inspect --json:\n%s", out)
	}
}

// TestDLQSilentBrokerHonoursTimeout: a listener that accepts connections
// and never answers fails after --timeout (not the 10s dial timeout), and
// the error says the connection was made.
func TestDLQSilentBrokerHonoursTimeout(t *testing.T) {
	addr, _ := silentListener(t)
	start := time.Now()
	_, errOut, code := runMain(t, "dlq", "list", "--brokers", addr, "--timeout", "1s")
	want := fmt.Sprintf("sluice: cannot reach brokers %[1]s: connected to %[1]s, but no answer within 1s", addr)
	if code != exitError || !strings.HasPrefix(errOut, want) {
		t.Fatalf("exit %d, stderr %q, want %q...", code, errOut, want)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("took %v with --timeout 1s", d)
	}
}

// TestInterruptedCommandSaysSo: Ctrl-C while a command waits on a broker
// stops it at once with "interrupted", not a raw context error.
func TestInterruptedCommandSaysSo(t *testing.T) {
	addr, connected := silentListener(t)
	p := startMain(t, "dlq", "list", "--brokers", addr, "--timeout", "1m")
	// Its signal handler is registered once main runs: wait until it has
	// connected.
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("the command never connected")
	}
	p.signal(t, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Ctrl-C did not stop the command")
	}
	if got := p.stderr.String(); !strings.HasSuffix(got, "sluice: interrupted\n") {
		t.Fatalf("exit %v, stderr %q", p.err, got)
	}
}

// silentListener accepts TCP connections and never writes to them;
// connected is closed at the first connection.
func silentListener(t *testing.T) (addr string, connected <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		first = make(chan struct{})
	)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if conns = append(conns, c); len(conns) == 1 { // held open, never written
				close(first)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepted
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), first
}

// TestDLQStatsWarnsOfNonDeadLetterTopic: stats of a topic without
// provenance headers warns that it is not a dead-letter topic; a
// --partition filter beyond the source topic's partitions says so.
func TestDLQStatsWarnsOfNonDeadLetterTopic(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2))
	c.Produce(t, &kgo.Record{Topic: "orders", Value: []byte("an order")})
	b := "--brokers=" + c.Addrs[0]
	_, errOut, err := runCLI(t, "dlq", "stats", "orders", b)
	if err != nil || !strings.Contains(errOut, "warning: none of the 1 records of orders has provenance headers: it is not a dead-letter topic written by Sluice") {
		t.Fatalf("stats of orders: %v, stderr %q", err, errOut)
	}
	out, errOut, err := runCLI(t, "dlq", "inspect", "orders.dlq", b, "--partition", "99")
	if err != nil || !strings.Contains(out, "0 dead letters shown") || !strings.Contains(errOut, "note: --partition 99: orders has 2 partitions (0-1)") {
		t.Fatalf("inspect --partition 99: %v\n%s%s", err, out, errOut)
	}
}

// TestDLQReplayBrokerDies: the broker dies (its data kept) while the replay
// produces. The command stops after --produce-timeout, and what it prints
// is what the restarted broker holds: the records Kafka acknowledged, no
// saved progress, and the warning that a rerun replays them again.
func TestDLQReplayBrokerDies(t *testing.T) {
	dir := t.TempDir()
	c := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1), kafkatest.Kfake(kfake.DataDir(dir)))
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rec := &pipeline.Record{Topic: "orders", Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}
		if err := pub.DeadLetter(context.Background(), pipeline.DeadLetter{Record: rec, Stage: "pg", Err: errors.New("bad"), Class: pipeline.ClassPermanent}); err != nil {
			t.Fatal(err)
		}
	}
	pub.Close()
	var (
		mu   sync.Mutex
		seen int
		once sync.Once
	)
	died := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen <= 3 {
			return nil, nil, false
		}
		once.Do(func() { close(died) })
		return nil, errors.New("broker dying"), true // the connection closes unanswered
	})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		<-died
		c.Close()
	}()
	out, _, err := runCLI(t, "dlq", "replay", "orders.dlq", "--brokers", c.Addrs[0], "--rate", "100", "--produce-timeout", "1s", "--timeout", "1s")
	<-closed
	if !errors.Is(err, dlq.ErrStalled) {
		t.Fatalf("err = %v, want a stall\n%s", err, out)
	}
	m := regexp.MustCompile(`replayed (\d+), refused`).FindStringSubmatch(out)
	u := regexp.MustCompile(`(\d+) replayed records? lies? beyond it: running the same command again replays`).FindStringSubmatch(out)
	if m == nil || u == nil || m[1] != u[1] || !strings.Contains(out, "progress NOT saved: commit progress in group") ||
		!strings.Contains(out, "nothing saved; a new run starts at the beginning") {
		t.Fatalf("summary:\n%s", out)
	}
	again := kafkatest.New(t, kafkatest.Kfake(kfake.DataDir(dir)))
	if held := again.EndOffsets(t, "orders")[0]; fmt.Sprint(held) != m[1] {
		t.Errorf("the summary says %s replayed; the restarted broker holds %d\n%s", m[1], held, out)
	}
	group := regexp.MustCompile(`progress in group (\S+):`).FindStringSubmatch(out)[1]
	if got := again.Committed(t, group, "orders.dlq"); len(got) != 0 {
		t.Errorf("the summary says nothing was saved; the group committed %v", got)
	}
}
