package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
	"github.com/sluice-go/sluice/reliability/faultproxy"
)

// suite is one run of the suite: the binaries and the processes it started.
type suite struct {
	bin, work string
	verbose   bool
	// txnTimeout, if set, is the exactly-once members' transaction
	// timeout (-txn-timeout).
	txnTimeout time.Duration

	mu    sync.Mutex
	procs map[*exec.Cmd]struct{} // alive children, killed by killAll
}

func (s *suite) logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// build compiles sluice and the reference consumer into s.bin.
func (s *suite) build(root string) error {
	for _, b := range []struct{ out, pkg string }{
		{"sluice", "./cmd/sluice"},
		{"refconsumer", "./internal/refconsumer"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(s.bin, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func (s *suite) track(cmd *exec.Cmd, alive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if alive {
		s.procs[cmd] = struct{}{}
	} else {
		delete(s.procs, cmd)
	}
}

// killAll kills every child still running: the suite never leaves
// processes behind, whatever happened.
func (s *suite) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cmd := range s.procs {
		_ = cmd.Process.Kill()
	}
}

// proc is a child process. Its waiter goroutine reaps it and closes exited.
type proc struct {
	s       *suite
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

func (s *suite) start(cmd *exec.Cmd, stdout func(io.Reader)) (*proc, error) {
	p := &proc{s: s, cmd: cmd, exited: make(chan struct{})}
	var out io.ReadCloser
	if stdout != nil {
		var err error
		if out, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.track(cmd, true)
	go func() {
		if out != nil {
			stdout(out)
		}
		p.exitErr = cmd.Wait()
		s.track(cmd, false)
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to wait for the exit; then it kills.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("pid %d ignored %v for %v and was killed", p.pid(), sig, wait)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// broker is `sluice dev broker` in a child process.
type broker struct {
	*proc
	addr, control string
	args          []string
}

type brokerOpts struct {
	port            int
	topics          string
	dataDir         string
	maxMessageBytes int
}

func (r *run) startBroker(o brokerOpts) (*broker, error) {
	args := []string{"dev", "broker", "--port", strconv.Itoa(o.port), "--topics", o.topics, "--control", "127.0.0.1:0"}
	if o.dataDir != "" {
		args = append(args, "--data-dir", o.dataDir)
	}
	if o.maxMessageBytes > 0 {
		args = append(args, "--max-message-bytes", strconv.Itoa(o.maxMessageBytes))
	}
	stderr, err := os.OpenFile(filepath.Join(r.dir, "broker.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd := exec.Command(filepath.Join(r.s.bin, "sluice"), args...)
	cmd.Stderr = stderr
	lines := make(chan string, 2)
	p, err := r.s.start(cmd, func(out io.Reader) {
		sc := bufio.NewScanner(out)
		for i := 0; sc.Scan(); i++ {
			if i < 2 {
				lines <- sc.Text()
			}
		}
		close(lines)
	})
	if err != nil {
		return nil, err
	}
	b := &broker{proc: p, args: args}
	for _, prefix := range []string{"sluice dev broker listening on ", "sluice dev broker fault control on "} {
		select {
		case line, ok := <-lines:
			if !ok || !strings.HasPrefix(line, prefix) {
				p.stop(syscall.SIGKILL, 10*time.Second)
				return nil, fmt.Errorf("broker: want %q..., got %q (see %s)", prefix, line, filepath.Join(r.dir, "broker.log"))
			}
			if b.addr == "" {
				b.addr = strings.TrimPrefix(line, prefix)
			} else {
				b.control = strings.TrimPrefix(line, prefix)
			}
		case <-time.After(60 * time.Second):
			p.stop(syscall.SIGKILL, 10*time.Second)
			return nil, errors.New("broker did not start within 60s")
		}
	}
	return b, nil
}

// fault installs a broker-side fault and returns its id.
func (b *broker) fault(spec devbroker.FaultSpec) (int, error) {
	body, _ := json.Marshal(spec)
	resp, err := http.Post(b.control+"/faults", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("install fault: %s: %s", resp.Status, msg)
	}
	var created struct{ ID int }
	return created.ID, json.Unmarshal(msg, &created)
}

// faultHits returns the hits of every installed fault by id.
func (b *broker) faultHits() (map[int]int, error) {
	resp, err := http.Get(b.control + "/faults")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []devbroker.FaultStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	hits := map[int]int{}
	for _, f := range list {
		hits[f.ID] = f.Hits
	}
	return hits, nil
}

func (b *broker) clearFaults() error {
	req, _ := http.NewRequest(http.MethodDelete, b.control+"/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("clear faults: %s", resp.Status)
	}
	return nil
}

// member is one incarnation of a reference consumer process.
type member struct {
	*proc
	name       string
	ledgerPath string
	logPath    string
	proxy      *faultproxy.Proxy // nil unless routed through a proxy
	args       []string
	killed     bool
	// stopping is set once the scenario asks the member to stop
	// (SIGTERM).
	stopping atomic.Bool
	// crashed is set once the member was reported as having exited on
	// its own (reviveCrashed).
	crashed bool

	mu  sync.Mutex
	hwm int64 // VmHWM in kB, the largest seen
}

// sampleRSS reads the member's peak resident set size.
func (m *member) sampleRSS() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid()))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			m.mu.Lock()
			m.hwm = max(m.hwm, kb)
			m.mu.Unlock()
		}
	}
}

func (m *member) peakKB() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hwm
}

// kill SIGKILLs the member, after a last RSS sample.
func (m *member) kill() {
	m.sampleRSS()
	m.killed = true
	_ = m.stop(syscall.SIGKILL, 30*time.Second)
}

// terminate asks for a graceful shutdown and waits for it.
func (m *member) terminate() error {
	m.stopping.Store(true)
	m.sampleRSS()
	if err := m.stop(syscall.SIGTERM, 60*time.Second); err != nil {
		return fmt.Errorf("%s: %w (see %s)", m.name, err, m.logPath)
	}
	return nil
}

// logMatches returns the first lines of the member's log matching re.
func (m *member) logMatches(re *regexp.Regexp, n int) []string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if re.MatchString(line) {
			out = append(out, line)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// run is one scenario's world: a broker, members, a producer, and the
// evidence they leave.
type run struct {
	s     *suite
	name  string
	dir   string
	rnd   *rand.Rand
	scale float64
	topic string
	parts int
	// consumeTopics is what members consume, comma-separated; default
	// topic.
	consumeTopics string

	broker     *broker
	group      string
	memberArgs []string // flags every member gets
	useProxy   bool
	// sink is the Kafka sink mode of the members: with ExactlyOnce each
	// member gets --eos with its name (the same for every incarnation),
	// with AtLeastOnce --kafka-sink; outputs go to topic + ".out".
	sink check.SinkMode
	// share makes the members a share group (--share-group): no
	// assignments, no commits to read.
	share bool

	mu          sync.Mutex
	members     []*member
	producers   []*producer
	incarnation map[string]int
	produced    []check.Produced
	disruptions []time.Time
	notes       []string
	failures    []string
	known       []string
	crashes     int // members that stopped on their own, without a graceful end

	rssStop chan struct{}
	rssDone chan struct{}
	tails   map[string]*ledger.Tail
	seen    map[string]bool                // rids delivered (H or D in a ledger)
	last    map[check.TopicPartition]int64 // time of each partition's last delivery
}

func (r *run) notef(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *run) failf(format string, args ...any) {
	r.record(&r.failures, "problem", format, args...)
}

// knownf records a problem that a known bug outside the suite explains:
// reported, not failing the run (see "Decisions" in main.go).
func (r *run) knownf(format string, args ...any) {
	r.record(&r.known, "known problem", format, args...)
}

func (r *run) record(list *[]string, what, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.s.logf("%s: %s: %s", r.name, what, msg)
	r.mu.Lock()
	*list = append(*list, msg)
	r.mu.Unlock()
}

// stopped judges how a member's graceful stop (what) went: an error is a
// problem, except the reference consumer's exit status 4, a stop whose
// final commits failed and were reported, which is noted.
func (r *run) stopped(m *member, what string, err error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == exitNotCommitted:
		r.notef("%s: %s stopped gracefully and reported that its final commits failed (exit status %d)", what, m.name, exitNotCommitted)
	default:
		r.failf("%s: %v", what, err)
	}
}

// exitNotCommitted is the reference consumer's exit status after a
// graceful stop whose final commits failed.
const exitNotCommitted = 4

func (r *run) disrupted() {
	r.mu.Lock()
	r.disruptions = append(r.disruptions, time.Now())
	r.mu.Unlock()
}

// startMember starts an incarnation of the member called name.
func (r *run) startMember(name string, extra ...string) (*member, error) {
	r.mu.Lock()
	r.incarnation[name]++
	inc := fmt.Sprintf("%s.%d", name, r.incarnation[name])
	r.mu.Unlock()
	m := &member{
		name:       inc,
		ledgerPath: filepath.Join(r.dir, inc+".ledger"),
		logPath:    filepath.Join(r.dir, inc+".log"),
	}
	topics := r.consumeTopics
	if topics == "" {
		topics = r.topic
	}
	args := []string{
		"--brokers", r.broker.addr, "--group", r.group, "--topics", topics,
		"--name", inc, "--ledger", m.ledgerPath, "--control", filepath.Join(r.dir, "control.json"),
	}
	switch r.sink {
	case check.ExactlyOnce:
		args = append(args, "--eos", name)
		if r.s.txnTimeout > 0 {
			args = append(args, "--transaction-timeout", r.s.txnTimeout.String())
		}
	case check.AtLeastOnce:
		args = append(args, "--kafka-sink")
	}
	if r.useProxy {
		p, err := faultproxy.New(r.broker.addr)
		if err != nil {
			return nil, err
		}
		m.proxy = p
		args = append(args, "--route", r.broker.addr+"="+p.Addr())
	}
	if r.share {
		args = append(args, "--share-group")
	}
	args = append(append(args, r.memberArgs...), extra...)
	m.args = args
	logf, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(r.s.bin, "refconsumer"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := r.s.start(cmd, nil)
	if err != nil {
		if m.proxy != nil {
			m.proxy.Close()
		}
		return nil, err
	}
	m.proc = p
	r.mu.Lock()
	r.members = append(r.members, m)
	r.tails[m.ledgerPath] = &ledger.Tail{Path: m.ledgerPath}
	r.mu.Unlock()
	if r.s.verbose {
		r.s.logf("%s: started %s (pid %d)", r.name, inc, p.pid())
	}
	return m, nil
}

// live returns the members that are running.
func (r *run) live() []*member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*member
	for _, m := range r.members {
		if m.alive() {
			out = append(out, m)
		}
	}
	return out
}

// watchRSS samples the members' peak RSS until stopRSS.
func (r *run) watchRSS() {
	r.rssStop, r.rssDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.rssDone)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			for _, m := range r.live() {
				m.sampleRSS()
			}
			select {
			case <-t.C:
			case <-r.rssStop:
				return
			}
		}
	}()
}

func (r *run) stopRSS() {
	if r.rssStop != nil {
		close(r.rssStop)
		<-r.rssDone
		r.rssStop = nil
	}
}

// poll reads new ledger events and returns every ledger's events so far.
func (r *run) poll() {
	r.mu.Lock()
	tails := make([]*ledger.Tail, 0, len(r.tails))
	for _, t := range r.tails {
		tails = append(tails, t)
	}
	r.mu.Unlock()
	for _, t := range tails {
		if err := t.Poll(); err != nil {
			r.failf("read ledger: %v", err)
			continue
		}
		r.mu.Lock()
		for _, e := range t.New {
			if e.Kind == ledger.Handled || e.Kind == ledger.DeadLettered {
				r.seen[e.RID] = true
				tp := check.TopicPartition{Topic: e.Topic, Partition: e.Partition}
				r.last[tp] = max(r.last[tp], e.Time)
			}
		}
		r.mu.Unlock()
	}
}

// missing counts acknowledged records not delivered yet.
func (r *run) missing() int {
	r.poll()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.produced {
		if p.Acked && !r.seen[p.RID] {
			n++
		}
	}
	return n
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDelivered waits until every acknowledged record was delivered.
func (r *run) waitDelivered(timeout time.Duration) {
	var left int
	if !waitFor(timeout, func() bool { left = r.missing(); return left == 0 }) {
		r.failf("%d acknowledged records still undelivered after %v", left, timeout)
	}
}

// waitProgress waits until every partition of the run's topic has had a
// delivery after since, and reports whether that happened within timeout.
func (r *run) waitProgress(since time.Time, timeout time.Duration) bool {
	return waitFor(timeout, func() bool {
		r.poll()
		r.mu.Lock()
		defer r.mu.Unlock()
		for p := range int32(r.parts) {
			if r.last[check.TopicPartition{Topic: r.topic, Partition: p}] <= since.UnixNano() {
				return false
			}
		}
		return true
	})
}

// waitAssigned waits until m has recorded an assignment.
func (r *run) waitAssigned(m *member, timeout time.Duration) {
	ok := waitFor(timeout, func() bool {
		r.poll()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.tails[m.ledgerPath].File().Events {
			if e.Kind == ledger.Assigned {
				return true
			}
		}
		return false
	})
	if !ok {
		r.failf("%s got no partitions within %v", m.name, timeout)
	}
}

// setSink writes the members' control file.
func (r *run) setSink(state string) {
	path := filepath.Join(r.dir, "control.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(state), 0o644); err != nil {
		r.failf("control file: %v", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		r.failf("control file: %v", err)
	}
}

// admin returns an admin client of the broker.
func (r *run) admin() (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.broker.addr))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// recreateTopic deletes topic and creates it again with parts partitions,
// waiting until the new one is visible.
func (r *run) recreateTopic(topic string, parts int32) error {
	adm, done, err := r.admin()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		return fmt.Errorf("delete %s: %w", topic, err)
	}
	var cerr error
	ok := waitFor(20*time.Second, func() bool {
		resp, err := adm.CreateTopic(ctx, parts, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		cerr = err
		return !errors.Is(err, kerr.TopicAlreadyExists)
	})
	switch {
	case !ok:
		return fmt.Errorf("create %s: still exists 20s after its deletion", topic)
	case cerr != nil:
		return fmt.Errorf("create %s: %w", topic, cerr)
	}
	return nil
}

func readDeadLetters(addr, topic string) ([]check.DeadLetter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return check.ReadDeadLetters(ctx, []string{addr}, topic)
}

// commitState reads the group's committed offsets and the end offsets of
// topics.
func (r *run) commitState(topics []string) (committed, ends map[check.TopicPartition]int64, err error) {
	adm, done, err := r.admin()
	if err != nil {
		return nil, nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, r.group)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch offsets: %w", err)
	}
	committed = map[check.TopicPartition]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			committed[check.TopicPartition{Topic: o.Topic, Partition: o.Partition}] = o.At
		}
	})
	listed, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets: %w", err)
	}
	ends = map[check.TopicPartition]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			ends[check.TopicPartition{Topic: o.Topic, Partition: o.Partition}] = o.Offset
		}
	})
	return committed, ends, nil
}
