// Command reliability is Sluice's reliability suite. It proves the promises
// of the README's "Delivery guarantees" under faults, with processes and sockets as a user sees them:
// every scenario runs `sluice dev broker` and reference consumers
// (internal/refconsumer) as separate processes, injects its faults (SIGKILL,
// rebalance storms, sink outages, a TCP proxy that cuts, stalls and slows,
// bad records, a broker that is missing or restarts, broker-side errors),
// and then checks the consumers' ledgers and the dead-letter topic against
// what was produced (package check).
//
//	go run ./reliability -out docs/RELIABILITY.md
//
// Flags: -run REGEXP selects scenarios (with -out, an existing report keeps
// the other scenarios' figures and gets the selected ones replaced or
// added), -scale F stretches or shrinks their phases, -dir DIR keeps the
// work directory (ledgers, logs) for a post mortem, -txn-timeout D gives
// the exactly-once scenarios' members another transaction timeout (to look
// past a known bug; it cannot write the report), -v prints each
// scenario's notes. It exits 1 if any scenario breaks a promise. It is not
// part of `go test ./...`: it takes about twenty minutes; `go test ./...`
// runs the fast tests of its parts (ledger, checker, proxy, reference
// consumer).
//
// # Decisions
//
//   - Records are identified by a unique rid header, not by their offsets,
//     which a recreated topic reuses. The checker's definitions (lost,
//     duplicates and their bound, order, recovery, commit checks) are in
//     package check.
//   - The duplicate bound is measured, not computed from settings: the
//     ledgers record every commit, so the work a killed or fenced consumer
//     had done past its last commit is known exactly.
//   - Each consumer that suffers network faults has its own proxy, put in
//     its path by a dialer route (brokers advertise their own address, so a
//     seed address would not do). Refusing connections closes the proxy's
//     listener, so dials fail with ECONNREFUSED as for a broker that is
//     down; accepting and closing at once would look like a TLS mismatch
//     to franz-go.
//   - Scenarios that show a bug outside the suite carry a knownBug mark:
//     their problems are reported but do not fail the run, and a pass
//     fails it until the mark is removed. With knownEvidence, only the
//     problems it matches are the bug's: any other still fails the run. Each has a minimal failing test,
//     skipped with the bug named, next to the code at fault.
//   - A bug outside the suite that shows only sometimes (a race in the
//     development broker) cannot carry such a mark. A scenario reports it
//     as a known problem instead (run.knownf), only when the evidence
//     names the bug (the broker listing dead processes as group members);
//     known problems are reported and do not fail the run, and every other
//     problem of the scenario still does.
//   - A member that stops gracefully but reports that its final commits
//     failed (the reference consumer's exit status 4) is noted, not a
//     problem: reporting it is the promise, and the checker counts what
//     its next owners redo (the F events) in the duplicate bound.
//   - The kill scenario uses a 3s session and a 6s rebalance timeout, and
//     kills every 2-5s. In a trial with the reference consumer's 20s
//     rebalance timeout and kills every 1-3s, kfake held JoinGroup requests
//     until the client's request timeout (rebalance timeout + 10s) while
//     killed members were still listed, and the group made no progress for
//     about a minute: a property of the development broker under churn,
//     not of the consumer. Package internal/kfakebehaviour pins the three
//     kfake behaviours behind it down with tests and a fix for kfake; the
//     churn scenario reports them as known problems. Scenarios with
//     several members keep drain < rebalance timeout < session timeout
//     (internal/kafkatest.GroupTimeouts), or kfake expires the members that
//     wait in JoinGroup for a draining one.
//   - Phases are timed (the scenario's clock); synchronisation waits on
//     events (ledger lines, log lines, process exits) with deadlines.
//   - The Kafka sink scenarios (eos-*, alo-kill) read the output topic
//     back and match outputs to inputs by rid (package check, "Kafka sink
//     outputs"). Exactly once is judged as a user's reader would see it:
//     read_committed, up to a sentinel written to each partition after the
//     members stopped (a read_committed reader cannot pass an open
//     transaction, and a partition's last offsets may be transaction
//     markers it never returns). Each member's transactional ID is its
//     name, the same for every incarnation, so a restart fences the
//     killed one's open transaction at once. Kills come while the victim
//     has uncommitted work (its ledger shows records handled since its
//     last commit or abort). A member that exits on its own (a fatal
//     error) is reported and restarted, as a supervisor would, so that the
//     scenario goes on testing the rest. Timeouts follow the kfake rule:
//     drain 3s < rebalance (and so transaction) 4.5s < session 6.75s.
package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
)

const sigterm = syscall.SIGTERM

func main() {
	var (
		out     = flag.String("out", "", "write the summary as Markdown to this file (docs/RELIABILITY.md)")
		runRe   = flag.String("run", "", "run only the scenarios whose name matches this regular expression")
		dir     = flag.String("dir", "", "work directory, kept afterwards (default: a temporary directory, removed)")
		scale   = flag.Float64("scale", 1, "multiply every scenario phase by this factor")
		seed    = flag.Uint64("seed", 0, "random seed (0: from the clock); printed for reproduction")
		verbose = flag.Bool("v", false, "log every process start and each scenario's notes")
		txnTO   = flag.Duration("txn-timeout", 0, "exactly-once scenarios: the members' transaction timeout (0: the consumer's default); changes what the scenarios test, never for the report")
	)
	flag.Parse()
	if *txnTO != 0 && *out != "" {
		fmt.Fprintln(os.Stderr, "reliability: -txn-timeout changes what the scenarios test; it cannot write the report (-out)")
		os.Exit(2)
	}
	code, err := suiteMain(*out, *runRe, *dir, *scale, *seed, *verbose, *txnTO)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
	}
	os.Exit(code)
}

func suiteMain(out, runRe, dir string, scale float64, seed uint64, verbose bool, txnTimeout time.Duration) (int, error) {
	sel, err := regexp.Compile(runRe)
	if err != nil {
		return 2, fmt.Errorf("-run: %w", err)
	}
	if scale <= 0 {
		return 2, fmt.Errorf("-scale %v: want a positive factor", scale)
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	root, err := moduleRoot()
	if err != nil {
		return 2, err
	}
	work := dir
	if work == "" {
		if work, err = os.MkdirTemp("", "sluice-reliability-"); err != nil {
			return 2, err
		}
		defer os.RemoveAll(work)
	}
	s := &suite{bin: filepath.Join(work, "bin"), work: work, verbose: verbose, txnTimeout: txnTimeout, procs: map[*exec.Cmd]struct{}{}}
	defer s.killAll()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			s.killAll()
			os.Exit(130)
		}
	}()
	defer signal.Stop(sigs)

	began := time.Now()
	s.logf("building sluice and the reference consumer (seed %d, work dir %s)", seed, work)
	if err := s.build(root); err != nil {
		return 2, err
	}
	built := time.Since(began)
	var results []result
	failed := 0
	for i, sc := range scenarios {
		if !sel.MatchString(sc.name) {
			continue
		}
		res := s.runScenario(sc, scale, seed+uint64(i))
		results = append(results, res)
		if res.failed() {
			failed++
		}
		s.logf("%s: %s", sc.name, res.line())
		if verbose {
			for _, n := range res.notes {
				s.logf("%s:   note: %s", sc.name, n)
			}
		}
		for _, p := range res.problems {
			s.logf("%s:   problem: %s", sc.name, p)
		}
		for _, p := range res.known {
			s.logf("%s:   known problem: %s", sc.name, p)
		}
	}
	total := time.Since(began)
	fmt.Print(table(results))
	if out != "" {
		info := reportInfo{seed: seed, scale: scale, runRe: runRe, built: built, total: total, at: time.Now()}
		md := report(results, info)
		if old, err := os.ReadFile(out); err == nil && runRe != "" {
			// A partial run updates its scenarios in the full report.
			if md, err = merge(string(old), results, info); err != nil {
				return 2, fmt.Errorf("%s: %w", out, err)
			}
		}
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return 2, err
		}
		s.logf("wrote %s", out)
	}
	s.logf("%d scenarios, %d failed, %v", len(results), failed, total.Round(time.Second))
	if failed > 0 {
		return 1, nil
	}
	return 0, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the suite inside the sluice module")
	}
	return filepath.Dir(mod), nil
}

// result is one scenario's outcome.
type result struct {
	sc       scenario
	rep      check.Report
	peakKB   int64
	took     time.Duration
	unacked  int
	notes    []string
	problems []string
	// known are problems explained by a known bug outside the suite
	// (run.knownf); they do not fail the run.
	known []string
	// txn counts the transactions of an exactly-once scenario.
	txn txnStats
	// crashes counts members that ended without a graceful stop and were
	// not killed (rep.Kills counts both).
	crashes int
}

// failed reports whether the scenario fails the run: problems without a
// known bug, a known bug that no longer shows, or problems its evidence
// does not explain.
func (r result) failed() bool {
	if r.sc.knownBug != "" {
		known, other := r.knownProblems()
		return len(known) == 0 || len(other) > 0
	}
	return len(r.problems) > 0
}

// knownProblems splits the problems of a scenario with a knownBug mark
// into those its evidence explains and the others; without evidence every
// problem is the known bug's.
func (r result) knownProblems() (known, other []string) {
	for _, p := range r.problems {
		if r.sc.knownEvidence == nil || r.sc.knownEvidence.MatchString(p) {
			known = append(known, p)
		} else {
			other = append(other, p)
		}
	}
	return known, other
}

func (r result) line() string {
	status := "ok"
	known, other := r.knownProblems()
	switch {
	case r.sc.knownBug != "" && len(known) > 0 && len(other) > 0:
		status = fmt.Sprintf("FAIL (%d problems the known bug does not explain, %d it does)", len(other), len(known))
	case r.sc.knownBug != "" && len(known) > 0:
		status = fmt.Sprintf("known bug (%d problems)", len(known))
	case r.sc.knownBug != "" && len(other) > 0:
		status = fmt.Sprintf("FAIL (%d problems; the known bug no longer shows)", len(other))
	case r.sc.knownBug != "":
		status = "FAIL: the known bug no longer shows; remove the scenario's knownBug mark"
	case len(r.problems) > 0:
		status = fmt.Sprintf("FAIL (%d problems)", len(r.problems))
	case len(r.known) > 0:
		status = fmt.Sprintf("ok, %d known problems outside the suite", len(r.known))
	}
	return fmt.Sprintf("%s in %v: produced %d, handled %d, lost %d, duplicates %d (bound %d), order violations %d, dead-lettered %d, recovery %s, peak RSS %s",
		status, r.took.Round(time.Second), r.rep.Produced, r.rep.Handled, r.rep.Lost, r.rep.Duplicates, r.rep.DupBound,
		r.rep.MaxKeyViolations, r.rep.DeadLettered, recoveryText(r.rep.Recovery), rssText(r.peakKB))
}

// d scales a scenario phase.
func (r *run) d(d time.Duration) time.Duration { return time.Duration(float64(d) * r.scale) }

func (s *suite) runScenario(sc scenario, scale float64, seed uint64) result {
	began := time.Now()
	s.logf("%s: %s", sc.name, sc.what)
	r := &run{
		s:           s,
		name:        sc.name,
		dir:         filepath.Join(s.work, sc.name),
		rnd:         rand.New(rand.NewPCG(seed, 9)),
		scale:       scale,
		topic:       "orders",
		parts:       partitions,
		group:       "reliability-" + sc.name,
		incarnation: map[string]int{},
		tails:       map[string]*ledger.Tail{},
		seen:        map[string]bool{},
		last:        map[check.TopicPartition]int64{},
	}
	res := result{sc: sc}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		res.problems = append(res.problems, err.Error())
		return res
	}
	if err := sc.run(r); err != nil {
		r.failf("scenario: %v", err)
	}
	wait := sc.wait
	if wait == 0 {
		wait = 90 * time.Second
	}
	res.rep = r.finish(wait)
	if r.sink == check.ExactlyOnce {
		res.txn = r.transactions()
		r.notef("%v", res.txn)
	}
	if n := res.rep.AbortedOutputs; n > 0 {
		r.notef("the aborted transactions wrote %d outputs and %d dead letters that a read_uncommitted reader sees and a read_committed one does not", n, res.rep.AbortedDeadLetter)
	}
	if n := res.rep.Kills; n > 0 && r.sink != check.ExactlyOnce && !r.share {
		r.notef("%.0f duplicates per kill on average: a killed consumer's work since its last commit (commit interval 1s) is redone", float64(res.rep.Duplicates)/float64(n))
	}
	if r.sink == check.ExactlyOnce {
		r.notef("%d records handled again (the sink called again): the work of aborted transactions, revoked partitions and killed members redone, within the bound of %d; read_committed, each output appears once", res.rep.Duplicates, res.rep.DupBound)
	} else if n, m := res.rep.CommitFailures, res.rep.DrainTimeouts; n > 0 || m > 0 {
		r.notef("the consumers reported %d failed commits and %d revocations whose drain timed out; the work they left uncommitted (%d and %d records) counts in the duplicate bound", n, m, res.rep.CommitFailureBound, res.rep.DrainTimeoutBound)
	}
	if len(r.disruptions) > 1 && res.rep.RecoveryMedian >= 0 {
		r.notef("recovery over %d disruptions: median %v, largest %v", len(r.disruptions), recoveryText(res.rep.RecoveryMedian), recoveryText(res.rep.Recovery))
	}
	if res.rep.Lost > 0 {
		r.notef("of the %d undelivered records, %d lie below the group's committed offsets; the others were never committed past, so they are stuck, not skipped", res.rep.Lost, res.rep.Skipped)
	}
	r.mu.Lock()
	res.notes, res.problems, res.known = r.notes, append(r.failures, res.rep.Problems(sc.expect)...), r.known
	res.crashes = r.crashes
	for _, p := range r.produced {
		if !p.Acked {
			res.unacked++
		}
	}
	for _, m := range r.members {
		res.peakKB = max(res.peakKB, m.peakKB())
	}
	r.mu.Unlock()
	res.took = time.Since(began)
	return res
}

// finish waits for every record to be delivered, stops the members
// gracefully, reads the evidence and checks it.
func (r *run) finish(wait time.Duration) check.Report {
	r.mu.Lock()
	producers := r.producers
	r.mu.Unlock()
	for _, p := range producers {
		// A scenario that failed early leaves its producers running.
		if err := p.close(time.Minute); err != nil {
			r.failf("%v", err)
		}
	}
	if r.broker != nil && r.broker.proc != nil && r.broker.alive() {
		r.waitDelivered(wait)
	}
	var wg sync.WaitGroup
	for _, m := range r.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stopped(m, "shutdown", m.terminate())
		}()
	}
	wg.Wait()
	r.stopRSS()
	in := check.Input{}
	r.mu.Lock()
	members := r.members
	in.Produced = append(in.Produced, r.produced...)
	in.Disruptions = r.disruptions
	r.mu.Unlock()
	for _, m := range members {
		if m.proxy != nil {
			m.proxy.Close()
		}
		f, err := ledger.Read(m.ledgerPath)
		if err != nil {
			r.failf("ledger: %v", err)
			continue
		}
		if !m.killed && !f.Ended {
			r.crashes++
		}
		if !m.killed && !m.crashed && !f.Ended {
			r.failf("%s stopped without a graceful end%s (see %s)", m.name, m.fatal(), m.logPath)
		}
		in.Ledgers = append(in.Ledgers, f)
	}
	if r.broker != nil && r.broker.proc != nil && r.broker.alive() && r.sink != check.NoOutputs {
		if err := r.readOutputs(&in); err != nil {
			r.failf("%v", err)
		}
	}
	if r.broker != nil && r.broker.proc != nil && r.broker.alive() {
		topics := map[string]bool{r.topic: true}
		for _, t := range strings.Split(r.consumeTopics, ",") {
			if t != "" {
				topics[t] = true
			}
		}
		if !r.share { // a share group commits no offsets
			var err error
			if in.Committed, in.Ends, err = r.commitState(slices.Collect(maps.Keys(topics))); err != nil {
				r.failf("read the group's commits: %v", err)
			}
		}
		for t := range topics {
			if r.sink != check.NoOutputs && t == r.topic {
				continue // readOutputs read them
			}
			dead, err := readDeadLetters(r.broker.addr, t+".dlq")
			if err != nil {
				r.failf("read %s.dlq: %v", t, err)
			}
			in.DeadLetters = append(in.DeadLetters, dead...)
		}
		if err := r.broker.stop(sigterm, time.Minute); err != nil {
			r.failf("broker stop: %v", err)
		}
	}
	return check.Check(in)
}
