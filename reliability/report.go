package main

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sluice-go/sluice/reliability/check"
)

func recoveryText(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

func rssText(kb int64) string {
	if kb == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
}

func status(r result) string {
	switch {
	case r.sc.knownBug != "" && !r.failed():
		return "known bug"
	case r.failed():
		return "**FAIL**"
	case len(r.known) > 0:
		return "ok, known bug outside the suite"
	}
	return "ok"
}

func classes(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

const tableHead = "| scenario | produced | handled | lost | duplicates (bound) | max per-key order violations | dead-lettered | recovery | peak RSS | result |\n" +
	"|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"

// row is a result's row of the summary table, newline included.
func row(r result) string {
	// A share group is at least once without commits: its duplicates have
	// no bound, and its deliveries keep no order.
	bound, order := fmt.Sprint(r.rep.DupBound), fmt.Sprint(r.rep.MaxKeyViolations)
	if r.sc.expect.Share {
		bound, order = "at least once", "- (no order)"
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d (%s) | %s | %d%s | %s | %s | %s |\n",
		r.sc.name, r.rep.Produced, r.rep.Handled, r.rep.Lost, r.rep.Duplicates, bound,
		order, r.rep.DeadLettered, classes(r.rep.DeadLetterClasses),
		recoveryText(r.rep.Recovery), rssText(r.peakKB), status(r))
}

const outputHead = "| scenario | mode | produced | outputs | output duplicates (bound) | output losses | dead letters | dead-letter duplicates | transactions committed / aborted | aborted outputs | took | result |\n" +
	"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"

// outputIntro introduces the outputs table in the report.
const outputIntro = "Kafka sink scenarios: the output topic (and, exactly once, the dead-letter topic) read back,\n" +
	"with read_committed in exactly-once mode:\n\n"

// hasOutputs reports whether r has a row in the outputs table.
func hasOutputs(r result) bool { return r.rep.Mode != check.NoOutputs }

// outputRow is a result's row of the outputs table, newline included.
func outputRow(r result) string {
	dups := fmt.Sprintf("%d (%d)", r.rep.OutputDuplicates, r.rep.OutputDupBound)
	txns, aborted := "-", "-"
	if r.rep.Mode == check.ExactlyOnce {
		dups = fmt.Sprintf("%d (none allowed)", r.rep.OutputDuplicates)
		txns = fmt.Sprintf("%d / %d", r.txn.committed, r.txn.aborted)
		if r.rep.AbortedOutputs >= 0 {
			aborted = fmt.Sprint(r.rep.AbortedOutputs)
		}
	}
	return fmt.Sprintf("| %s | %s | %d | %d | %s | %d | %d | %d | %s | %s | %v | %s |\n",
		r.sc.name, r.rep.Mode, r.rep.Produced, r.rep.Outputs, dups, r.rep.OutputLost, r.rep.DeadLettered, r.rep.DeadLetterDups,
		txns, aborted, r.took.Round(time.Second), status(r))
}

// table is the summary as Markdown tables: every scenario, then the Kafka
// sink scenarios' outputs.
func table(rs []result) string {
	var b strings.Builder
	b.WriteString(tableHead)
	for _, r := range rs {
		b.WriteString(row(r))
	}
	if slices.ContainsFunc(rs, hasOutputs) {
		b.WriteString("\n" + outputIntro + outputHead)
		for _, r := range rs {
			if hasOutputs(r) {
				b.WriteString(outputRow(r))
			}
		}
	}
	return b.String()
}

type reportInfo struct {
	seed         uint64
	scale        float64
	runRe        string
	built, total time.Duration
	at           time.Time
}

// report is docs/RELIABILITY.md.
func report(rs []result, info reportInfo) string {
	var b strings.Builder
	cmd := "go run ./reliability -out docs/RELIABILITY.md"
	b.WriteString("# Reliability\n\n")
	b.WriteString("Sluice's promises (the README's \"Delivery guarantees\") checked under faults, with processes and\n")
	b.WriteString("sockets as a user sees them. Reproduce with:\n\n")
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", cmd)
	extra := ""
	if info.runRe != "" {
		extra += fmt.Sprintf(", `-run '%s'`", info.runRe)
	}
	if info.scale != 1 {
		extra += fmt.Sprintf(", `-scale %v`", info.scale)
	}
	fmt.Fprintf(&b, "This run: %s, %s/%s, %d CPUs (shared with other work, so timings are noisy), seed %d%s;\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), info.seed, extra)
	fmt.Fprintf(&b, "%v in all, of which %v building. Add `-seed %d` to replay the same random choices.\n\n",
		info.total.Round(time.Second), info.built.Round(time.Second), info.seed)
	b.WriteString("## Summary\n\n")
	b.WriteString(table(rs))
	b.WriteString(`
## How to read it

Each scenario starts ` + "`sluice dev broker`" + ` and reference consumers
(` + "`internal/refconsumer`" + `: consumer, JSON decode, key-ordered fan-out of 8, a sink
guarded by retry and a breaker, dead letters through ` + "`dlq.Publisher`" + `) as
separate processes. A producer writes 800 records/s over 120 keys to 6
partitions, each record with a unique ` + "`rid`" + ` header. Every consumer appends
what it handled or dead-lettered, and each assignment, revocation, loss and
commit, to a ledger (one write(2) per event, so a SIGKILL loses at most the
line being written). After the faults, the suite waits until every
acknowledged record was delivered, stops the consumers gracefully, reads the
dead-letter topic and checks (package ` + "`reliability/check`" + `):

- **produced**: records the broker acknowledged. **handled**: distinct records
  the sink handled. **dead-lettered**: distinct records in the dead-letter
  topic, by failure class.
- **lost**: acknowledged records neither handled nor dead-lettered. Must be 0.
- **duplicates**: deliveries beyond the first. **bound**: the records that
  forced endings could make a consumer redo: for each assignment that ended by
  a loss (session expired, fenced) or by a SIGKILL, the records it handled at
  or above its last committed watermark. Duplicates must not exceed the bound;
  graceful joins and leaves end assignments by revocation, which commits, so
  where nothing is killed or lost the bound is 0 and so must duplicates be.
  Failures the consumer reports count too: a commit it reported failed (its
  hook) leaves the records below the offset it tried to commit to be redone,
  and a revocation whose drain timed out leaves those that completed above
  the first unsettled one. The bound is itself limited by the in-flight
  limits (by default 2,000 unsettled records per partition, 10,000 per
  consumer) plus what settled within one commit interval (1s).
- **max per-key order violations**: for each key of each partition, the first
  delivery of each record must come in offset order across all consumers (by
  time); a record first delivered after a later record of its key is a
  violation. Re-deliveries after a kill or loss are duplicates, not
  violations. Nil keys carry no order, and decode dead letters are written by
  the source before the fan-out, so they are not ordered with their key.
- **recovery**: the longest time from the end of a fault (a kill, a healed
  proxy, a broker back, a sink back, a fault removed) until every partition
  delivering afterwards had delivered again.
- **peak RSS**: the largest VmHWM of the scenario's consumer processes.
- **Kafka sink scenarios** (` + "`eos-*`, `alo-kill`" + `): the reference consumer also
  writes every record it handles to ` + "`orders.out`" + ` through ` + "`sinks/kafka`" + `, one output
  with the record's key, rid and provenance; one record in 397 is a poison
  record (undecodable, panicking or rejected). The second table reads the
  output topic back. **exactly once** (` + "`consumer.ExactlyOnce`" + `, with the dead-letter
  publisher in the transactions): read with read_committed, every handled
  record's output must appear once and every poison record's dead letter
  once: **output duplicates**, **output losses** and **dead-letter
  duplicates** must be 0. Records handled again in the first table are
  the work of aborted transactions redone (an abort rewinds every partition
  to its last commit; a revocation aborts too), and its bound counts them.
  **transactions committed / aborted** come from the consumers' ledgers and
  logs; **aborted outputs** are the outputs a read_uncommitted reader sees
  and a read_committed one does not. **at least once** (a writer of its own):
  no output may be missing; output duplicates must stay within the bound of
  writes (a W event before each) that a kill or loss left uncommitted or that
  were retried.
- **share group** (` + "`kill-share`" + `, ` + "`sink-outage-share`" + `): the members join a share group
  (` + "`consumer.ShareGroup`" + `, queue mode; 4 members on 2 partitions) and
  their dead letters go through ` + "`consumer.ShareDeadLetters`" + `. A share
  group commits no offsets and keeps no order, and a killed member's
  unacknowledged records come back to the others when their record lock
  expires, so it is at least once: duplicates are counted, not bounded,
  order is not checked, and nothing may be lost; every record must end
  handled, or dead-lettered (the poison records, one in 397). Through a
  sink outage nothing may be dead-lettered: the guard's open breaker holds
  the records, their locks renewed, without spending deliveries.
- **known bug** (result): the scenario shows a bug in Sluice outside the
  suite, named in its section with its evidence; the problems the evidence
  matches do not fail the run, any other does, and once the bug no longer
  shows the run fails until the mark goes.
- **known problem**: a problem that a known bug outside Sluice explains, by
  evidence the scenario checks (so far: the development broker, kfake,
  listing processes that have exited as group members; see
  ` + "`internal/kfakebehaviour`" + `). It is reported and does not fail the run;
  every other problem of the scenario still does.
`)
	b.WriteString("\n## Scenarios\n")
	for _, r := range rs {
		b.WriteString(section(r, ""))
	}
	return b.String()
}

// section is a result's section of the report, from its "### " heading;
// from, if set, says which run it comes from.
func section(r result, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s: %s\n\n%s.\n", r.sc.name, status(r), r.sc.what)
	if r.sc.knownBug != "" {
		fmt.Fprintf(&b, "\n**Known bug**, outside the suite: %s. Its problems below do not fail the run; once it is fixed the scenario must pass and the mark go.\n", r.sc.knownBug)
		if r.sc.knownEvidence != nil {
			fmt.Fprintf(&b, "Only problems matching `%s` are the known bug's; any other fails the run.\n", r.sc.knownEvidence)
		}
	}
	b.WriteString("\n")
	if from != "" {
		fmt.Fprintf(&b, "- %s\n", from)
	}
	crashed := ""
	if r.crashes > 0 {
		crashed = fmt.Sprintf(", %d crashed", r.crashes)
	}
	fmt.Fprintf(&b, "- took %v; %d records produced, %d not acknowledged by the broker (not required); %d consumer processes killed%s, %d partition assignments lost\n",
		r.took.Round(time.Second), r.rep.Produced, r.unacked, r.rep.Kills-r.crashes, crashed, r.rep.LostAssignments)
	for _, n := range r.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	for _, p := range r.problems {
		fmt.Fprintf(&b, "- **problem**: %s\n", p)
	}
	for _, p := range r.known {
		fmt.Fprintf(&b, "- **known problem** (a bug outside the suite; does not fail the run): %s\n", p)
	}
	return b.String()
}

// mergeTable replaces or adds the rows of rs in the table of lines that
// starts with head, and returns the lines and the index of the first line
// after the table. If there is no such table and at >= 0, it inserts one
// (with outputIntro) at line at; otherwise it fails.
func mergeTable(lines []string, head string, rs []result, row func(result) string, at int) ([]string, int, error) {
	start := slices.Index(lines, strings.SplitAfter(head, "\n")[0])
	if start < 0 {
		if at < 0 {
			return lines, 0, fmt.Errorf("no table %q", strings.TrimSpace(strings.SplitAfter(head, "\n")[0]))
		}
		intro := strings.SplitAfter("\n"+outputIntro, "\n")
		intro = intro[:len(intro)-1] // the empty string after the last newline
		lines = slices.Insert(lines, at, intro...)
		start = at + len(intro)
		lines = slices.Insert(lines, start, strings.SplitAfter(head, "\n")[:2]...)
	}
	end := start + 2 // first line after the table
	for end < len(lines) && strings.HasPrefix(lines[end], "| ") {
		end++
	}
	var added []string
	for _, r := range rs {
		prefix := "| " + r.sc.name + " |"
		if i := slices.IndexFunc(lines[start+2:end], func(l string) bool { return strings.HasPrefix(l, prefix) }); i >= 0 {
			lines[start+2+i] = row(r)
		} else {
			added = append(added, row(r))
		}
	}
	return slices.Insert(lines, end, added...), end + len(added), nil
}

// merge updates an existing report (old) with the results of a run of
// some scenarios: each result replaces its scenario's table row and
// section, or is added after the others, and says which run it comes
// from. The rest of old stays as it was, so that a single scenario can be
// rerun without rerunning the suite.
func merge(old string, rs []result, info reportInfo) (string, error) {
	lines := strings.SplitAfter(old, "\n")
	lines, end, err := mergeTable(lines, tableHead, rs, row, -1)
	if err != nil {
		return "", fmt.Errorf("no summary table in the report to merge into")
	}
	var outs []result
	for _, r := range rs {
		if hasOutputs(r) {
			outs = append(outs, r)
		}
	}
	if len(outs) > 0 {
		lines, _, _ = mergeTable(lines, outputHead, outs, outputRow, end)
	}
	from := fmt.Sprintf("from a later run than the rest of this page: `go run ./reliability -run '%s' -out docs/RELIABILITY.md`, %s, seed %d, %s",
		info.runRe, runtime.Version(), info.seed, info.at.Format("2006-01-02"))
	if info.scale != 1 {
		from += fmt.Sprintf(", `-scale %v`", info.scale)
	}
	out := strings.Join(lines, "")
	for _, r := range rs {
		sec := section(r, from)
		start := strings.Index(out, "\n### "+r.sc.name+": ")
		if start < 0 {
			out = strings.TrimRight(out, "\n") + "\n" + sec
			continue
		}
		stop := strings.Index(out[start+1:], "\n### ")
		if stop < 0 {
			out = out[:start] + sec
		} else {
			out = out[:start] + sec + out[start+1+stop:]
		}
	}
	return out, nil
}
