package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-go/sluice/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var (
		cfg     demo.Config
		brokers string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch a guarded pipeline ride out a slow, then failing downstream",
		Long: `Run the whole story on an embedded broker (or --brokers): a producer writes
orders (a few undecodable, rejected or crashing the downstream's client; keyed
by customer with per-customer sequence numbers), the example pipeline
(examples/pipeline) consumes them with every guard in front of a simulated
downstream that slows down and then is down for a while, and the terminal shows
records/s, lag, in-flight and limit, breaker state, retries and dead letters.
/metrics, /healthz and /readyz are served on --metrics-addr.

When producing stops the demo waits for every order to be handled (at most
--drain-timeout), stops the consumer gracefully, and prints a summary: produced,
handled, dead-lettered by reason, duplicates, out-of-order, lost (must be 0).
It exits 1 if a record was lost, shipped out of order, or dead-lettered for a
reason its content does not explain.

The embedded broker keeps its data in --data-dir (default: a new directory
under the system's temporary directory), so the dead letters can be inspected
afterwards: the summary prints the commands.

With --brokers the demo runs on your cluster, on topics of its own:
sluice-demo.orders and sluice-demo.orders.dlq (--topic names another). It
creates the topic, and refuses one that exists unless its group (sluice-demo)
has committed offsets in it, which the demo does for the topics it creates:
it never writes fake orders into, or consumes, a topic of yours unless
--use-existing-topic says so (and then only the records it writes).

Ctrl-C stops producing and stops the consumer gracefully: the orders in
flight get up to --stop-timeout to settle, and the display says what it waits
for; a second Ctrl-C quits at once (the group has committed only what
settled).`,
		Example: `  sluice demo --duration 30s
  sluice demo --rate 2000 --metrics-addr 127.0.0.1:9464
  sluice demo --brokers localhost:19092 --duration 10m --cycle 2m`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{quietInterrupt: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Zero means "the default" in demo.Config; on the command
			// line it is a mistake.
			f := cmd.Flags()
			for _, name := range []string{"duration", "rate", "cycle", "drain-timeout", "stop-timeout"} {
				if fl := f.Lookup(name); fl.Changed && (fl.Value.String() == "0" || fl.Value.String() == "0s") {
					return fmt.Errorf("--%s %s: must be positive", name, fl.Value)
				}
			}
			if brokers != "" {
				cfg.Brokers = strings.Split(brokers, ",")
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.Terminal = isTerminal(cfg.Out)
			cfg.Command = selfCommand()
			_, err := demo.Run(cmd.Context(), cfg)
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", demo.DefaultDuration, "how long to produce orders")
	f.IntVar(&cfg.Rate, "rate", demo.DefaultRate, "orders produced per second")
	f.StringVar(&brokers, "brokers", "", "comma-separated Kafka brokers to use instead of the embedded broker")
	f.StringVar(&cfg.DataDir, "data-dir", "", "where the embedded broker keeps its data (default: a new directory under the temporary directory)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", demo.DefaultMetricsAddr, `where to serve /metrics, /healthz and /readyz ("off": nowhere)`)
	f.DurationVar(&cfg.Cycle, "cycle", 0, "length of the downstream's schedule (normal, slow, down, recovered), repeated (default: --duration)")
	f.StringVar(&cfg.LogFile, "log-file", "", `where logs go ("-": standard error; default: demo.log beside the broker's data)`)
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", demo.DefaultDrainTimeout, "how long to wait, after producing stops, for every order to be handled")
	f.DurationVar(&cfg.StopTimeout, "stop-timeout", demo.DefaultStopTimeout, "how long, when stopping, the orders in flight may take to settle")
	f.StringVar(&cfg.Topic, "topic", "", fmt.Sprintf("the orders topic (default %q, with --brokers %q); dead letters go to TOPIC.dlq", demo.DefaultTopic, demo.ForeignTopic))
	f.BoolVar(&cfg.UseExistingTopic, "use-existing-topic", false, "with --brokers, use --topic even if it exists and the demo did not create it")
	return cmd
}

// selfCommand is how the summary should tell the user to run this tool
// again: "go run ./cmd/sluice" when it runs from `go run` (a binary in the
// build cache's temporary directory), else its name.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "sluice"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/sluice"
	}
	return filepath.Base(exe)
}
