package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluice-go/sluice/internal/devbroker"
)

func newDevCmd() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Development tools",
	}
	dev.AddCommand(newDevBrokerCmd())
	return dev
}

func newDevBrokerCmd() *cobra.Command {
	var (
		cfg     devbroker.Config
		topics  string
		control string
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded Kafka broker (franz-go kfake) on 127.0.0.1",
		Long: `Run an embedded Kafka-protocol broker on 127.0.0.1, with no Docker and no
Kafka install. It speaks the real protocol, so any Kafka client (kcat, the Java
client, franz-go) can use it. It stops on SIGINT or SIGTERM. With --data-dir
its topics, records and committed offsets survive a restart.`,
		Example: `  sluice dev broker --topics orders:12,orders.dlq:12
  sluice dev broker --port 19092 --data-dir /tmp/sluice-data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Topics, err = devbroker.ParseTopics(topics); err != nil {
				return err
			}
			if control != "" {
				if err := devbroker.CheckControlAddr(control); err != nil {
					return err
				}
			}
			c, err := devbroker.Start(cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "sluice dev broker listening on %s\n", c.ListenAddrs()[0])
			if control != "" {
				srv, err := devbroker.ServeControl(c, control)
				if err != nil {
					return err
				}
				defer srv.Close()
				fmt.Fprintf(cmd.OutOrStdout(), "sluice dev broker fault control on %s\n", srv.URL())
			}
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "sluice dev broker stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Port, "port", 9092, "TCP port on 127.0.0.1 (0 picks a free one)")
	f.StringVar(&topics, "topics", "", "topics to create, as name:partitions,name:partitions")
	f.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", true, "create topics that clients ask for")
	f.IntVar(&cfg.DefaultPartitions, "default-partitions", 1, "partitions of auto-created topics")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory that keeps the broker's data across restarts (default: memory only)")
	f.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", 0, "broker message.max.bytes (0 keeps kfake's default, about 1 MiB)")
	// --control is for reliability tests of clients in other processes: an
	// HTTP API on a loopback address that injects broker-side errors
	// (devbroker.Control). Hidden because it is no user feature.
	f.StringVar(&control, "control", "", "serve the fault-injection API on this loopback address (tests only)")
	_ = f.MarkHidden("control")
	return cmd
}
