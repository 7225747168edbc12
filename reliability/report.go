package main

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"
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
	case r.sc.knownBug != "" && len(r.problems) > 0:
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
	return fmt.Sprintf("| %s | %d | %d | %d | %d (%d) | %d | %d%s | %s | %s | %s |\n",
		r.sc.name, r.rep.Produced, r.rep.Handled, r.rep.Lost, r.rep.Duplicates, r.rep.DupBound,
		r.rep.MaxKeyViolations, r.rep.DeadLettered, classes(r.rep.DeadLetterClasses),
		recoveryText(r.rep.Recovery), rssText(r.peakKB), status(r))
}

// table is the summary as a Markdown table.
func table(rs []result) string {
	var b strings.Builder
	b.WriteString(tableHead)
	for _, r := range rs {
		b.WriteString(row(r))
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
	b.WriteString("Sluice's promises (`DESIGN.md`, \"Promises\") checked under faults, with processes and\n")
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
	}
	b.WriteString("\n")
	if from != "" {
		fmt.Fprintf(&b, "- %s\n", from)
	}
	fmt.Fprintf(&b, "- took %v; %d records produced, %d not acknowledged by the broker (not required); %d consumer processes killed, %d partition assignments lost\n",
		r.took.Round(time.Second), r.rep.Produced, r.unacked, r.rep.Kills, r.rep.LostAssignments)
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

// merge updates an existing report (old) with the results of a run of
// some scenarios: each result replaces its scenario's table row and
// section, or is added after the others, and says which run it comes
// from. The rest of old stays as it was, so that a single scenario can be
// rerun without rerunning the suite.
func merge(old string, rs []result, info reportInfo) (string, error) {
	lines := strings.SplitAfter(old, "\n")
	head := slices.Index(lines, strings.SplitAfter(tableHead, "\n")[0])
	if head < 0 {
		return "", fmt.Errorf("no summary table in the report to merge into")
	}
	end := head + 2 // first line after the table
	for end < len(lines) && strings.HasPrefix(lines[end], "| ") {
		end++
	}
	from := fmt.Sprintf("from a later run than the rest of this page: `go run ./reliability -run '%s' -out docs/RELIABILITY.md`, %s, seed %d, %s",
		info.runRe, runtime.Version(), info.seed, info.at.Format("2006-01-02"))
	if info.scale != 1 {
		from += fmt.Sprintf(", `-scale %v`", info.scale)
	}
	var added []string
	for _, r := range rs {
		prefix := "| " + r.sc.name + " |"
		if i := slices.IndexFunc(lines[head+2:end], func(l string) bool { return strings.HasPrefix(l, prefix) }); i >= 0 {
			lines[head+2+i] = row(r)
		} else {
			added = append(added, row(r))
		}
	}
	lines = slices.Insert(lines, end, added...)
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
