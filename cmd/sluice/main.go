// Command sluice is Sluice's command-line tool: a development broker, the
// demo, and dead-letter inspection and replay.
//
// Exit status: 0 when the command did what was asked; 1 when it failed or
// was interrupted (the error is printed once, on standard error, prefixed
// "sluice: "); 3 when `sluice dlq replay` finished but refused records
// replayed too often (they wait for --force); 130 when a second interrupt
// (Ctrl-C, SIGINT or SIGTERM) made it quit at once.
//
// The first SIGINT or SIGTERM cancels the running command's context: it
// stops starting new work, finishes or abandons what is in flight within
// its documented bound, and reports what was done. A second one exits at
// once with status 130, without waiting for anything.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitError   = 1
	exitRefused = 3
	exitSignal  = 130
)

// quietInterrupt is the annotation of a command that tells the user itself
// what it does after an interrupt, so that the root's notice would only
// repeat it (or tear a display that redraws in place).
const quietInterrupt = "sluice/quiet-interrupt"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var current atomic.Pointer[cobra.Command]
	ctx, stop := notifyContext(context.Background(), stderr, &current, os.Exit)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) { current.Store(cmd) }
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	fmt.Fprintln(stderr, "sluice:", err)
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitError
}

// notifyContext is signal.NotifyContext for a command-line tool: the first
// SIGINT or SIGTERM cancels the context and, unless the running command is
// annotated quietInterrupt, says so on w; a second one makes it say so and
// call exit(130) at once. stop unregisters the handler.
func notifyContext(parent context.Context, w io.Writer, current *atomic.Pointer[cobra.Command], exit func(int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case sig := <-sigs:
			// Say so before cancelling: the command's own last line
			// (what it did, or "interrupted") must come after this one.
			if cmd := current.Load(); cmd == nil || cmd.Annotations[quietInterrupt] == "" {
				fmt.Fprintf(w, "\nsluice: %s: stopping; %s again to quit at once\n", sigName(sig), againHint(sig))
			}
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(w, "\nsluice: %s again: quitting now\n", sigName(sig))
			exit(exitSignal)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		<-finished
		cancel()
	}
}

func sigName(sig os.Signal) string {
	if sig == os.Interrupt {
		return "interrupt"
	}
	return sig.String()
}

func againHint(sig os.Signal) string {
	if sig == os.Interrupt {
		return "press Ctrl-C"
	}
	return "signal"
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Kafka consumers that stay correct when downstreams are slow, flaky or down",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCmd())
	root.AddCommand(newDLQCmd())
	root.AddCommand(newDemoCmd())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	requireKnownSubcommands(root)
	return root
}

// requireKnownSubcommands makes every command that groups subcommands
// reject an unknown one with an error and a "did you mean" suggestion, at
// every level of the tree (cobra does so only at the top, and there over
// several lines). Such a command given no arguments prints its help.
func requireKnownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		requireKnownSubcommands(sub)
	}
	if !cmd.HasSubCommands() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		return unknownCommand(c, args[0])
	}
	if cmd.Run == nil && cmd.RunE == nil {
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
}

// unknownCommand is the one-line error for an unknown subcommand name.
func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
		for _, more := range s[1:] {
			msg = strings.TrimSuffix(msg, "?") + fmt.Sprintf(" or %q?", more)
		}
	} else {
		msg += fmt.Sprintf(" (see %s --help)", c.CommandPath())
	}
	return errors.New(msg)
}
