package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestUnknownSubcommandsExitNonZeroWithSuggestion: at every level of the
// command tree an unknown subcommand is an error of one line with a "did
// you mean", not help and exit 0.
func TestUnknownSubcommandsExitNonZeroWithSuggestion(t *testing.T) {
	for _, tt := range []struct {
		give []string
		want string
	}{
		{[]string{"dlq", "stat", "x"}, `unknown command "stat" for "sluice dlq"; did you mean "stats"?`},
		{[]string{"dev", "brokr"}, `unknown command "brokr" for "sluice dev"; did you mean "broker"?`},
		{[]string{"demoo"}, `unknown command "demoo" for "sluice"; did you mean "demo"?`},
		{[]string{"dlq", "frobnicate"}, `unknown command "frobnicate" for "sluice dlq" (see sluice dlq --help)`},
	} {
		t.Run(strings.Join(tt.give, " "), func(t *testing.T) {
			out, errOut, code := runMain(t, tt.give...)
			if code != exitError || out != "" || errOut != "sluice: "+tt.want+"\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", code, out, errOut, tt.want)
			}
		})
	}
	// A group command alone still shows its help.
	if out, _, code := runMain(t, "dlq"); code != 0 || !strings.Contains(out, "Available Commands:") {
		t.Fatalf("sluice dlq: exit %d, stdout %q", code, out)
	}
}

// TestSecondSignalQuitsAtOnce: the first SIGINT cancels the command's
// context and says how to quit at once; the second calls exit(130) without
// waiting for the command.
func TestSecondSignalQuitsAtOnce(t *testing.T) {
	var w syncBuffer
	exited := make(chan int, 1)
	var current atomic.Pointer[cobra.Command]
	ctx, stop := notifyContext(context.Background(), &w, &current, func(code int) { exited <- code })
	defer stop()

	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first SIGINT did not cancel the context")
	}
	waitFor(t, func() bool { return strings.Contains(w.String(), "press Ctrl-C again to quit at once") }, "notice of the first signal")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != exitSignal {
			t.Fatalf("exit(%d), want %d", code, exitSignal)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not exit")
	}
	if !strings.Contains(w.String(), "quitting now") {
		t.Fatalf("stderr %q lacks the notice of the second signal", w.String())
	}
}
