package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/reliability/check"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestResultStatus(t *testing.T) {
	tests := []struct {
		name       string
		knownBug   string
		problems   []string
		known      []string
		evidence   string
		wantFailed bool
		wantStatus string
	}{
		{name: "clean", wantStatus: "ok"},
		{name: "broken", problems: []string{"1 records lost"}, wantFailed: true, wantStatus: "**FAIL**"},
		{name: "known bug shows", knownBug: "b", problems: []string{"1 records lost"}, wantStatus: "known bug"},
		{name: "known bug fixed: the mark must go", knownBug: "b", wantFailed: true, wantStatus: "**FAIL**"},
		{name: "known problems only", known: []string{"kfake kept a dead member"}, wantStatus: "ok, known bug outside the suite"},
		{name: "a known problem does not excuse another", known: []string{"k"}, problems: []string{"1 records lost"}, wantFailed: true, wantStatus: "**FAIL**"},
		{name: "evidence: the known bug's problems only", knownBug: "b", evidence: "FENCED", problems: []string{"c1 crashed: PRODUCER_FENCED"}, wantStatus: "known bug"},
		{name: "evidence: another problem fails", knownBug: "b", evidence: "FENCED", problems: []string{"c1 crashed: PRODUCER_FENCED", "1 duplicate outputs"}, wantFailed: true, wantStatus: "**FAIL**"},
		{name: "evidence: the bug no longer shows", knownBug: "b", evidence: "FENCED", problems: []string{"1 duplicate outputs"}, wantFailed: true, wantStatus: "**FAIL**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := result{sc: scenario{name: "s", knownBug: tt.knownBug}, problems: tt.problems, known: tt.known}
			if tt.evidence != "" {
				r.sc.knownEvidence = regexp.MustCompile(tt.evidence)
			}
			if r.failed() != tt.wantFailed || status(r) != tt.wantStatus {
				t.Errorf("failed %v, status %q; want %v, %q", r.failed(), status(r), tt.wantFailed, tt.wantStatus)
			}
		})
	}
}

func TestTableAndReport(t *testing.T) {
	rs := []result{{
		sc:     scenario{name: "kill", what: "kills"},
		rep:    check.Report{Produced: 10, Handled: 10, Duplicates: 3, DupBound: 4, DeadLettered: 1, DeadLetterClasses: map[string]int{"decode": 1}, Recovery: 1500 * time.Millisecond},
		peakKB: 20 * 1024,
		notes:  []string{"3 SIGKILLs"},
	}}
	wantRow := "| kill | 10 | 10 | 0 | 3 (4) | 0 | 1 (decode 1) | 1.5s | 20 MiB | ok |"
	if got := table(rs); !strings.Contains(got, wantRow) {
		t.Errorf("table:\n%s\nwant a row %s", got, wantRow)
	}
	md := report(rs, reportInfo{seed: 7, scale: 1})
	for _, want := range []string{"go run ./reliability -out docs/RELIABILITY.md", wantRow, "### kill: ok", "- 3 SIGKILLs", "-seed 7"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: `{"time":"x","level":"WARN","msg":"unable to open connection to broker","err":"dial tcp: connection refused"}`,
			want: "WARN unable to open connection to broker: dial tcp: connection refused"},
		{give: `{"level":"INFO","msg":"joined"}`, want: "INFO joined"},
		{give: "not json", want: "not json"},
	}
	for _, tt := range tests {
		if got := excerpt(tt.give); got != tt.want {
			t.Errorf("excerpt(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestMergeReplacesAndAddsScenarios(t *testing.T) {
	old := report([]result{
		{sc: scenario{name: "kill", what: "kills"}, notes: []string{"old kill note"}},
		{sc: scenario{name: "net-cut", what: "cuts"}, notes: []string{"old cut note"}},
	}, reportInfo{seed: 1, scale: 1})
	md, err := merge(old, []result{
		{sc: scenario{name: "kill", what: "kills"}, rep: check.Report{Produced: 5, Handled: 5}, notes: []string{"new kill note"}},
		{sc: scenario{name: "churn", what: "churns"}, rep: check.Report{Produced: 7, Handled: 7}},
	}, reportInfo{seed: 2, scale: 1, runRe: "kill|churn"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| kill | 5 | 5 |", "| net-cut | 0 | 0 |", "| churn | 7 | 7 |", "new kill note", "old cut note", "### churn: ok", "-run 'kill|churn'", "-seed 1"} {
		if !strings.Contains(md, want) {
			t.Errorf("merged report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "old kill note") {
		t.Errorf("merged report keeps the replaced section:\n%s", md)
	}
	if strings.Index(md, "| churn |") > strings.Index(md, "## How to read it") || strings.Index(md, "### churn") < strings.Index(md, "### net-cut") {
		t.Errorf("a new scenario's row belongs at the end of the table and its section at the end:\n%s", md)
	}
	if _, err := merge("# no table\n", nil, reportInfo{}); err == nil {
		t.Error("merge into a page without a summary table succeeded")
	}
}

func TestOutputsTableMerges(t *testing.T) {
	eos := func(outputs int) result {
		return result{sc: scenario{name: "eos-kill", what: "kills"}, took: 50 * time.Second, txn: txnStats{committed: 40, aborted: 3},
			rep: check.Report{Mode: check.ExactlyOnce, Produced: 10, Handled: 10, Outputs: outputs, DeadLettered: 1, AbortedOutputs: 12}}
	}
	alo := result{sc: scenario{name: "alo-kill", what: "kills"}, took: 51 * time.Second,
		rep: check.Report{Mode: check.AtLeastOnce, Produced: 10, Handled: 10, Outputs: 12, OutputDuplicates: 2, OutputDupBound: 5, AbortedOutputs: -1}}
	wantEOS := "| eos-kill | exactly once | 10 | 9 | 0 (none allowed) | 0 | 1 | 0 | 40 / 3 | 12 | 50s | ok |"
	wantALO := "| alo-kill | at least once | 10 | 12 | 2 (5) | 0 | 0 | 0 | - | - | 51s | ok |"

	// A page from before the Kafka sink scenarios has no outputs table:
	// merging one adds it after the summary.
	old := report([]result{{sc: scenario{name: "kill", what: "kills"}}}, reportInfo{seed: 1, scale: 1})
	if strings.Contains(old, outputHead) {
		t.Fatalf("a report without Kafka sink scenarios has an outputs table:\n%s", old)
	}
	md, err := merge(old, []result{eos(9)}, reportInfo{seed: 2, scale: 1, runRe: "eos-kill"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| eos-kill | 10 | 10 |", outputHead + wantEOS} {
		if !strings.Contains(md, want) {
			t.Errorf("merged report lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, outputHead) > strings.Index(md, "## How to read it") {
		t.Errorf("the outputs table belongs in the summary:\n%s", md)
	}
	// A later run replaces the row and adds another.
	md, err = merge(md, []result{eos(10), alo}, reportInfo{seed: 3, scale: 1, runRe: "eos-kill|alo-kill"})
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(wantEOS, "| 9 |", "| 10 |", 1) + "\n" + wantALO; !strings.Contains(md, want) {
		t.Errorf("merged report lacks\n%s\nin:\n%s", want, md)
	}
	if strings.Count(md, outputHead) != 1 || strings.Contains(md, "| eos-kill | exactly once | 10 | 9 |") {
		t.Errorf("merging again duplicated the table or kept the old row:\n%s", md)
	}
	if full := report([]result{eos(9), alo}, reportInfo{seed: 4, scale: 1}); !strings.Contains(full, outputHead+wantEOS+"\n"+wantALO) {
		t.Errorf("a full report lacks the outputs table:\n%s", full)
	}
}
