package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestDemoCommandAndItsNextSteps runs `sluice demo` for two seconds and then
// the commands its summary suggests: a dev broker on the demo's data
// directory, and `sluice dlq stats` on it, which must count the dead letters
// the summary reported.
func TestDemoCommandAndItsNextSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a demo of a few seconds")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "broker")
	out := mustCLI(t, "demo", "--duration", "2s", "--rate", "150", "--metrics-addr", "off",
		"--data-dir", data, "--log-file", filepath.Join(dir, "demo.log"))
	for _, want := range []string{"[  2.0s", "summary:", "lost                   0", "pending                0",
		"dev broker --data-dir " + data, "dlq stats orders.dlq"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("output to a buffer redraws like a terminal:\n%q", out)
	}
	m := regexp.MustCompile(`dead-lettered\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dead-lettered line:\n%s", out)
	}

	b := startDevBroker(t, "--port", "0", "--data-dir", data)
	stats := mustCLI(t, "dlq", "stats", "orders.dlq", "--brokers", b.addr)
	if !strings.HasPrefix(stats, "orders.dlq: "+m[1]+" dead letters") {
		t.Errorf("sluice dlq stats after the demo:\n%s\nwant the demo's %s dead letters", stats, m[1])
	}
	b.signal(t, syscall.SIGTERM)
}

func TestDemoCommandRejectsBadFlags(t *testing.T) {
	for _, tt := range []struct {
		give []string
		want string
	}{
		{[]string{"demo", "--duration", "-1s"}, "--duration -1s: must be positive"},
		{[]string{"demo", "--rate", "-5"}, "--rate -5: must be positive"},
		{[]string{"demo", "--rate", "0"}, "--rate 0: must be positive"},
		{[]string{"demo", "--duration", "0"}, "--duration 0s: must be positive"},
		{[]string{"demo", "--stop-timeout", "0s"}, "--stop-timeout 0s: must be positive"},
		{[]string{"demo", "--stop-timeout", "1m"}, "--stop-timeout 1m0s: must be below 1m0s, the consumer's rebalance timeout"},
		{[]string{"demo", "--topic", "my orders"}, `--topic: topic name "my orders" has ' '`},
		{[]string{"demo", "--data-dir", "/dev/null/broker", "--metrics-addr", "off"}, "--data-dir: mkdir /dev/null"},
		{[]string{"demo", "extra"}, `unknown command "extra"`},
	} {
		_, _, err := runCLI(t, tt.give...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("sluice %s: error %v, want %q", strings.Join(tt.give, " "), err, tt.want)
		}
	}
}

// TestDemoSecondInterruptQuits: Ctrl-C during the outage says what the demo
// waits for; a second Ctrl-C quits at once with status 130.
func TestDemoSecondInterruptQuits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a demo of a few seconds")
	}
	dir := t.TempDir()
	p := startMain(t, "demo", "--duration", "20s", "--cycle", "4s", "--rate", "100", "--metrics-addr", "off",
		"--data-dir", filepath.Join(dir, "broker"), "--log-file", filepath.Join(dir, "demo.log"), "--stop-timeout", "30s")
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	}()
	p.waitOutput(t, "downstream=DOWN")
	p.signal(t, syscall.SIGINT)
	p.waitOutput(t, "get up to 30s to settle")
	p.quitsOnSecondInterrupt(t)
}
