package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/devbroker"
	"github.com/sluice-go/sluice/pipeline"
)

// dlqEnv is the state the dlq subcommands share: connection flags, and the
// clock (injected by tests).
type dlqEnv struct {
	conn connFlags
	now  func() time.Time
}

func newDLQCmd() *cobra.Command {
	env := &dlqEnv{now: time.Now}
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay dead-letter topics",
		Long: `Inspect and replay the dead-letter topics that Sluice's dlq.Publisher writes.

Every subcommand reads a topic only up to its end offsets at the start, so it
ends even while new dead letters arrive. Connection flags default to the
environment variables named in their help.`,
	}
	env.conn.register(cmd.PersistentFlags())
	cmd.AddCommand(newDLQListCmd(env), newDLQStatsCmd(env), newDLQInspectCmd(env), newDLQReplayCmd(env))
	return cmd
}

// admin connects, failing fast when no broker answers.
func (e *dlqEnv) admin(cmd *cobra.Command) (*dlq.Admin, error) {
	conn, err := e.conn.conn(cmd)
	if err != nil {
		return nil, err
	}
	a, err := dlq.NewAdmin(cmd.Context(), conn)
	return a, flagError(err)
}

// configFlags names the command-line flag of each dlq config field.
var configFlags = map[string]string{
	"Conn.Connection.Brokers":     "--brokers",
	"Conn.Timeout":                "--timeout",
	"ReplayConfig.Topic":          "TOPIC",
	"ReplayConfig.To":             "--to",
	"ReplayConfig.MaxReplays":     "--max-replays",
	"ReplayConfig.ProduceTimeout": "--produce-timeout",
}

// flagError rewrites a *sluice.ConfigError of package dlq to name the
// flag, not the field.
func flagError(err error) error {
	var ce *sluice.ConfigError
	if errors.As(err, &ce) && ce.Package == "dlq" {
		if flag, ok := configFlags[ce.Option+"."+ce.Field]; ok {
			if ce.Value != nil {
				return fmt.Errorf("%s %v: %s", flag, ce.Value, ce.Reason)
			}
			return fmt.Errorf("%s: %s", flag, ce.Reason)
		}
	}
	return err
}

// open parses the filter flags and then connects, so that a bad filter
// fails before any network traffic.
func (e *dlqEnv) open(cmd *cobra.Command, ff *filterFlags) (*dlq.Admin, *dlq.Filter, error) {
	f, err := ff.filter(e.now())
	if err != nil {
		return nil, nil, err
	}
	a, err := e.admin(cmd)
	return a, f, err
}

// filterFlags are the filters shared by stats, inspect and replay.
type filterFlags struct {
	errText    string
	classes    []string
	sinks      []string
	since      string
	until      string
	partitions []int32
	offsets    string
}

func (f *filterFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.errText, "error", "", "error text contains this, or matches it when written /regexp/")
	fs.StringSliceVar(&f.classes, "class", nil, "failure class, repeatable or comma-separated: "+strings.Join(dlq.Classes, ", "))
	fs.StringSliceVar(&f.sinks, "sink", nil, "stage or sink name, repeatable or comma-separated")
	fs.StringVar(&f.since, "since", "", "failed at or after: RFC 3339 time, date (2006-01-02) or duration ago (90m)")
	fs.StringVar(&f.until, "until", "", "failed before: RFC 3339 time, date or duration ago")
	fs.Int32SliceVar(&f.partitions, "partition", nil, "source `partitions`, repeatable or comma-separated")
	fs.StringVar(&f.offsets, "offset-range", "", "source offsets A-B (inclusive), A- (A and after) or A")
}

// filter parses the flags; errors name the flag.
func (f *filterFlags) filter(now time.Time) (*dlq.Filter, error) {
	out := &dlq.Filter{Classes: f.classes, Stages: f.sinks, Partitions: f.partitions}
	var err error
	if out.Error, err = dlq.ParseErrorPattern(f.errText); err != nil {
		return nil, err
	}
	if f.since != "" {
		if out.Since, err = dlq.ParseTime("since", f.since, now); err != nil {
			return nil, err
		}
	}
	if f.until != "" {
		if out.Until, err = dlq.ParseTime("until", f.until, now); err != nil {
			return nil, err
		}
	}
	if f.offsets != "" {
		r, err := dlq.ParseOffsetRange(f.offsets)
		if err != nil {
			return nil, err
		}
		out.Offsets = &r
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// text describes the flags as written, relative times included, so that
// the same command line names the same replay group on every run.
func (f *filterFlags) text() string {
	return fmt.Sprintf("error=%s class=%s sink=%s since=%s until=%s partition=%v offsets=%s",
		f.errText, strings.Join(f.classes, ","), strings.Join(f.sinks, ","), f.since, f.until, f.partitions, f.offsets)
}

func newDLQListCmd(env *dlqEnv) *cobra.Command {
	var suffix string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List dead-letter topics with their record counts",
		Example: "  sluice dlq list\n  sluice dlq list --suffix .deadletters",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := env.admin(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			infos, err := a.List(cmd.Context(), suffix)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(infos) == 0 {
				fmt.Fprintf(out, "no topics ending in %q\n", suffix)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DLQ TOPIC\tSOURCE TOPIC\tPARTITIONS\tRECORDS")
			for _, i := range infos {
				src := i.Source
				if !i.SourceExists {
					src += " (missing)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", i.Topic, src, i.Partitions, i.Records)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&suffix, "suffix", dlq.DefaultSuffix, "name suffix of dead-letter topics")
	return cmd
}

func newDLQStatsCmd(env *dlqEnv) *cobra.Command {
	var (
		ff      filterFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:     "stats TOPIC",
		Short:   "Count dead letters by class, sink and source partition",
		Example: "  sluice dlq stats orders.dlq\n  sluice dlq stats orders.dlq --since 24h --json",
		Args:    topicArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, f, err := env.open(cmd, &ff)
			if err != nil {
				return err
			}
			defer a.Close()
			s, err := a.Stats(cmd.Context(), args[0], f)
			if err != nil {
				return err
			}
			if s.Total > 0 && s.NoProvenance == s.Total {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: none of the %d records of %s has provenance headers: it is not a dead-letter topic written by Sluice\n", s.Total, args[0])
			}
			if s.Total == 0 {
				notePartitions(cmd, a, args[0], &ff)
			}
			if jsonOut {
				return writeStatsJSON(cmd.OutOrStdout(), args[0], s)
			}
			return writeStats(cmd.OutOrStdout(), args[0], s)
		},
	}
	ff.register(cmd.Flags())
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func writeStats(w io.Writer, topic string, s dlq.Stats) error {
	fmt.Fprintf(w, "%s: %d dead letters", topic, s.Total)
	if s.NoProvenance > 0 {
		fmt.Fprintf(w, " (%d without provenance)", s.NoProvenance)
	}
	fmt.Fprintln(w)
	if s.Total == 0 {
		return nil
	}
	fmt.Fprintf(w, "oldest failure: %s\nnewest failure: %s\n", fmtTime(s.Oldest), fmtTime(s.Newest))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	section := func(title string, m map[string]int) {
		fmt.Fprintf(tw, "%s:\n", title)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(tw, "  %s\t%d\n", orDash(k), m[k])
		}
	}
	section("by class", s.ByClass)
	section("by sink", s.ByStage)
	section("by source partition", sourceCounts(s.BySource))
	return tw.Flush()
}

func sourceCounts(m map[pipeline.TopicPartition]int) map[string]int {
	out := make(map[string]int, len(m))
	for tp, n := range m {
		out[tp.String()] = n
	}
	return out
}

func writeStatsJSON(w io.Writer, topic string, s dlq.Stats) error {
	v := struct {
		Topic        string         `json:"topic"`
		Total        int            `json:"total"`
		NoProvenance int            `json:"no_provenance"`
		ByClass      map[string]int `json:"by_class"`
		BySink       map[string]int `json:"by_sink"`
		BySource     map[string]int `json:"by_source_partition"`
		Oldest       *time.Time     `json:"oldest,omitempty"`
		Newest       *time.Time     `json:"newest,omitempty"`
	}{topic, s.Total, s.NoProvenance, s.ByClass, s.ByStage, sourceCounts(s.BySource), timePtr(s.Oldest), timePtr(s.Newest)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// topicArg requires the one TOPIC argument, a valid topic name.
func topicArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		if err := devbroker.ValidTopicName(args[0]); err != nil {
			return fmt.Errorf("TOPIC: %w", err)
		}
		return nil
	case 0:
		return fmt.Errorf("missing TOPIC: usage: %s", cmd.UseLine())
	}
	return fmt.Errorf("want one TOPIC, got %d arguments: %s", len(args), strings.Join(args, " "))
}

// notePartitions says, when --partition asks for source partitions that
// the source topic (TOPIC without its .dlq suffix) does not have, that
// this is why nothing matched.
func notePartitions(cmd *cobra.Command, a *dlq.Admin, topic string, ff *filterFlags) {
	src, ok := strings.CutSuffix(topic, dlq.DefaultSuffix)
	if len(ff.partitions) == 0 || !ok {
		return
	}
	n, err := a.Partitions(cmd.Context(), src)
	if err != nil {
		return
	}
	for _, p := range ff.partitions {
		if int(p) >= n {
			fmt.Fprintf(cmd.ErrOrStderr(), "note: --partition %d: %s has %d %s (0-%d)\n", p, src, n, plural(n, "partition", "partitions"), n-1)
		}
	}
}

// errLimit stops a read at --limit.
var errLimit = errors.New("limit reached")

func newDLQInspectCmd(env *dlqEnv) *cobra.Command {
	var (
		ff       filterFlags
		jsonOut  bool
		limit    int
		maxValue int
	)
	cmd := &cobra.Command{
		Use:   "inspect TOPIC",
		Short: "Print dead letters with their provenance",
		Example: `  sluice dlq inspect orders.dlq --limit 10
  sluice dlq inspect orders.dlq --class decode --error '/unexpected (EOF|end)/' --json`,
		Args: topicArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: must not be negative", limit)
			}
			if maxValue < 0 {
				return fmt.Errorf("--max-value-bytes %d: must not be negative (0: never cut)", maxValue)
			}
			a, f, err := env.open(cmd, &ff)
			if err != nil {
				return err
			}
			defer a.Close()
			out, n := cmd.OutOrStdout(), 0
			err = a.Read(cmd.Context(), args[0], f, func(l dlq.Letter) error {
				if jsonOut {
					if err := json.NewEncoder(out).Encode(letterJSON(l)); err != nil {
						return err
					}
				} else {
					writeLetter(out, l, maxValue)
				}
				if n++; limit > 0 && n >= limit {
					return errLimit
				}
				return nil
			})
			if err != nil && !errors.Is(err, errLimit) {
				return err
			}
			if n == 0 {
				notePartitions(cmd, a, args[0], &ff)
			}
			if !jsonOut {
				fmt.Fprintf(out, "%d %s shown\n", n, plural(n, "dead letter", "dead letters"))
			}
			return nil
		},
	}
	ff.register(cmd.Flags())
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print one JSON object per line (key and value as text when UTF-8, else base64)")
	cmd.Flags().IntVar(&limit, "limit", 50, "print at most this many (0: all)")
	cmd.Flags().IntVar(&maxValue, "max-value-bytes", 256, "in text output, cut keys, values and headers after this many bytes (0: never)")
	return cmd
}

func writeLetter(w io.Writer, l dlq.Letter, maxBytes int) {
	r := l.Record
	fmt.Fprintf(w, "%s/%d@%d  %s\n", r.Topic, r.Partition, r.Offset, fmtTime(r.Timestamp))
	if l.ProvenanceErr != nil {
		fmt.Fprintf(w, "  provenance  unreadable: %v\n", l.ProvenanceErr)
	} else {
		p := l.Provenance
		fmt.Fprintf(w, "  source      %s/%d@%d  (timestamp %s)\n", p.Topic, p.Partition, p.Offset, fmtTime(p.Timestamp))
		fmt.Fprintf(w, "  group       %s\n  sink        %s\n", orDash(p.Group), orDash(p.Stage))
		fmt.Fprintf(w, "  class       %s  attempts %d  replays %d\n", orDash(p.Class), p.Attempts, p.ReplayCount)
		fmt.Fprintf(w, "  failed      first %s  last %s\n", fmtTime(p.FirstFailure), fmtTime(p.LastFailure))
		fmt.Fprintf(w, "  error       %s\n", orDash(p.Error))
	}
	value := quote(r.Value, maxBytes)
	if l.ProvenanceErr == nil && l.Provenance.ValueDropped > 0 {
		p := l.Provenance
		value = fmt.Sprintf("(dropped: its %d bytes did not fit the dead-letter topic; the original is at %s/%d@%d)", p.ValueDropped, p.Topic, p.Partition, p.Offset)
	}
	fmt.Fprintf(w, "  key         %s\n  value       %s\n", quote(r.Key, maxBytes), value)
	for _, h := range dlq.StripProvenance(r.Headers) {
		fmt.Fprintf(w, "  header      %s=%s\n", h.Key, quote(h.Value, maxBytes))
	}
}

// quote prints b as a Go string, cut after max bytes.
func quote(b []byte, max int) string {
	if b == nil {
		return "(null)"
	}
	if max > 0 && len(b) > max {
		return fmt.Sprintf("%q... (%d bytes)", b[:max], len(b))
	}
	return fmt.Sprintf("%q", b)
}

type provenanceJSON struct {
	Topic        string     `json:"topic"`
	Partition    int32      `json:"partition"`
	Offset       int64      `json:"offset"`
	Timestamp    *time.Time `json:"timestamp,omitempty"`
	Group        string     `json:"group,omitempty"`
	Sink         string     `json:"sink,omitempty"`
	Error        string     `json:"error,omitempty"`
	Class        string     `json:"class,omitempty"`
	Attempts     int        `json:"attempts"`
	FirstFailure *time.Time `json:"first_failure,omitempty"`
	LastFailure  *time.Time `json:"last_failure,omitempty"`
	ReplayCount  int        `json:"replay_count"`
	// ValueDropped is the size of the value the dead letter left out.
	ValueDropped int `json:"value_dropped,omitempty"`
}

type letterJSONOut struct {
	Topic         string            `json:"topic"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Timestamp     time.Time         `json:"timestamp"`
	Key           *string           `json:"key,omitempty"`
	KeyBase64     []byte            `json:"key_base64,omitempty"`
	Value         *string           `json:"value,omitempty"`
	ValueBase64   []byte            `json:"value_base64,omitempty"`
	ValueDropped  int               `json:"value_dropped,omitempty"` // bytes left out; the value is absent
	Headers       map[string]string `json:"headers,omitempty"`
	Provenance    *provenanceJSON   `json:"provenance,omitempty"`
	ProvenanceErr string            `json:"provenance_error,omitempty"`
}

func letterJSON(l dlq.Letter) letterJSONOut {
	r := l.Record
	out := letterJSONOut{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC()}
	out.Key, out.KeyBase64 = textOrBytes(r.Key)
	out.Value, out.ValueBase64 = textOrBytes(r.Value)
	for _, h := range dlq.StripProvenance(r.Headers) {
		if out.Headers == nil {
			out.Headers = make(map[string]string)
		}
		if utf8.Valid(h.Value) {
			out.Headers[h.Key] = string(h.Value)
		} else {
			out.Headers[h.Key] = "base64:" + base64.StdEncoding.EncodeToString(h.Value)
		}
	}
	if l.ProvenanceErr != nil {
		out.ProvenanceErr = l.ProvenanceErr.Error()
		return out
	}
	p := l.Provenance
	out.ValueDropped = p.ValueDropped
	out.Provenance = &provenanceJSON{
		Topic: p.Topic, Partition: p.Partition, Offset: p.Offset, Timestamp: timePtr(p.Timestamp),
		Group: p.Group, Sink: p.Stage, Error: p.Error, Class: p.Class, Attempts: p.Attempts,
		FirstFailure: timePtr(p.FirstFailure), LastFailure: timePtr(p.LastFailure), ReplayCount: p.ReplayCount,
		ValueDropped: p.ValueDropped,
	}
	return out
}

// textOrBytes returns b as text when it is UTF-8, else as bytes that
// encoding/json writes in base64; nil stays absent.
func textOrBytes(b []byte) (*string, []byte) {
	switch {
	case b == nil:
		return nil, nil
	case utf8.Valid(b):
		s := string(b)
		return &s, nil
	}
	return nil, b
}

func newDLQReplayCmd(env *dlqEnv) *cobra.Command {
	var (
		ff  filterFlags
		cfg dlq.ReplayConfig
		rps float64
	)
	cmd := &cobra.Command{
		Use:   "replay TOPIC",
		Short: "Republish dead letters to their original topic, or another",
		Long: `Republish the dead letters of TOPIC that the filters select, to the topic and
partition they came from (their provenance headers) or to --to TOPIC.

The replayed copy keeps key, value and original headers; it drops the
provenance headers except sluice.dlq.replay-count, which it increments.

Only records that Kafka acknowledged count as replayed. Progress is committed
after each batch in a consumer group of its own (printed at the end), named
after TOPIC, --to and the filter flags as written, up to the first record
that was not acknowledged: running the same command again continues there
and republishes nothing twice. Records filtered out are not examined again by
that group; --reset starts over, --group picks another. A record Kafka does
not acknowledge (an error, or no answer within --produce-timeout) stops the
replay with an error. Replay is at-least-once: if it is killed between an
acknowledgement and its commit, that record is replayed again; the summary
says how many.

Records already replayed --max-replays times are refused: they stay in TOPIC,
the group remembers where they are, and the command exits with status 3. The
same command with --force then replays just those (and any new dead letters),
once.

Ctrl-C stops producing, waits for the records in flight (at most
--produce-timeout) and saves the progress; a second Ctrl-C quits at once.

Exit status: 0 done; 1 an error (the summary says what was replayed and
saved); 3 done, but records were refused and wait for --force.`,
		Example: `  sluice dlq replay orders.dlq --dry-run
  sluice dlq replay orders.dlq --class exhausted --since 2h --rate 100
  sluice dlq replay orders.dlq --error '/timeout|refused/' --to orders-retry`,
		Args:        topicArg,
		Annotations: map[string]string{quietInterrupt: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case math.IsNaN(rps) || math.IsInf(rps, 0) || rps < 0:
				return fmt.Errorf("--rate %v: want records per second, 0 or more", rps)
			case cfg.MaxReplays < 1:
				return fmt.Errorf("--max-replays %d: must be at least 1", cfg.MaxReplays)
			case cfg.ProduceTimeout <= 0:
				return fmt.Errorf("--produce-timeout %v: must be positive", cfg.ProduceTimeout)
			case cfg.To == args[0]:
				return fmt.Errorf("--to %s: must differ from the topic being replayed", cfg.To)
			}
			if cfg.To != "" {
				if err := devbroker.ValidTopicName(cfg.To); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
			}
			a, f, err := env.open(cmd, &ff)
			if err != nil {
				return err
			}
			defer a.Close()
			cfg.Topic, cfg.Filter, cfg.Now = args[0], f, env.now
			if cfg.Group == "" {
				cfg.Group = dlq.ReplayGroup(cfg.Topic, cfg.To, ff.text())
			}
			if rps > 0 {
				cfg.Limiter = rate.NewLimiter(rate.Limit(rps), 1)
			}
			prog := newProgress(cmd.ErrOrStderr(), env.now, cfg.DryRun)
			cfg.Progress = prog.update
			stopNotice := context.AfterFunc(cmd.Context(), func() {
				fmt.Fprintf(cmd.ErrOrStderr(), "\nsluice: interrupted: waiting up to %v for Kafka to acknowledge the records in flight, then saving the progress; press Ctrl-C again to quit at once\n", cfg.ProduceTimeout)
			})
			s, err := a.Replay(cmd.Context(), cfg)
			stopNotice()
			prog.done(s)
			if err == nil || s.Examined > 0 {
				writeSummary(cmd.OutOrStdout(), cfg, s, err)
			}
			switch {
			case errors.Is(err, context.Canceled):
				return errors.New("replay interrupted; the summary above says what was replayed and saved")
			case err != nil:
				return flagError(err)
			case s.SaveErr != nil:
				return s.SaveErr
			case s.RefusedWaiting && !s.DryRun:
				return refusedError{s}
			}
			return nil
		},
	}
	f := cmd.Flags()
	ff.register(f)
	f.StringVar(&cfg.To, "to", "", "republish every record to this topic (by key hash) instead of its original topic")
	f.Float64Var(&rps, "rate", 0, "at most this many records per second (0: unlimited)")
	f.BoolVar(&cfg.DryRun, "dry-run", false, "count what would be replayed; produce and commit nothing")
	f.IntVar(&cfg.MaxReplays, "max-replays", dlq.DefaultMaxReplays, "refuse records already replayed this many times")
	f.BoolVar(&cfg.Force, "force", false, "replay records over --max-replays too, including those earlier runs of this replay refused")
	f.StringVar(&cfg.Group, "group", "", "consumer group that keeps the replay's progress (default: derived from TOPIC, --to and the filters)")
	f.BoolVar(&cfg.Reset, "reset", false, "ignore saved progress and start at the topic's start")
	f.DurationVar(&cfg.ProduceTimeout, "produce-timeout", dlq.DefaultProduceTimeout, "stop when Kafka has not acknowledged a replayed record (or answered a fetch or commit) within this")
	return cmd
}

// refusedError ends a replay that refused records: exit status 3.
type refusedError struct{ s dlq.ReplayStats }

func (e refusedError) Error() string {
	if e.s.Refused > 0 {
		return fmt.Sprintf("%d %s refused (replayed too often); the same command with --force replays just those", e.s.Refused, plural(int(e.s.Refused), "dead letter", "dead letters"))
	}
	return fmt.Sprintf("dead letters refused by an earlier run wait in group %s; the same command with --force replays just those", e.s.Group)
}

func (refusedError) ExitCode() int { return exitRefused }

// writeSummary says what the replay did, and exactly what it saved; err is
// the replay's error, printed by the caller.
func writeSummary(w io.Writer, cfg dlq.ReplayConfig, s dlq.ReplayStats, err error) {
	verb := "replayed"
	if s.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "%s: examined %d of %d, matched %d, %s %d, refused %d (replayed %d times or more), in %s\n",
		cfg.Topic, s.Examined, s.Total, s.Matched, verb, s.Replayed, s.Refused, cfg.MaxReplays, s.Elapsed.Round(time.Millisecond))
	for _, t := range slices.Sorted(maps.Keys(s.ByTarget)) {
		fmt.Fprintf(w, "  to %s: %d\n", t, s.ByTarget[t])
	}
	if s.Forced > 0 {
		fmt.Fprintf(w, "forced: %d of them had been refused by an earlier run\n", s.Forced)
	}
	if s.Incomplete > 0 {
		fmt.Fprintf(w, "skipped %d dead letters without their value (too large for the dead-letter topic): replay them from the source topic at the offsets `inspect` shows\n", s.Incomplete)
	}
	if s.NotAcknowledged > 0 {
		fmt.Fprintf(w, "not acknowledged: %d %s (Kafka refused them or did not answer; they may still have been written): not counted as replayed, and the progress stops before them\n",
			s.NotAcknowledged, plural(int(s.NotAcknowledged), "record", "records"))
	}
	if s.DryRun {
		fmt.Fprintln(w, "dry run: nothing was produced or committed")
		return
	}
	switch {
	case s.SaveErr != nil && err != nil && s.SaveErr.Error() != err.Error():
		fmt.Fprintf(w, "progress NOT saved: %v\n", s.SaveErr)
	case s.SaveErr != nil:
		fmt.Fprintln(w, "progress NOT saved (the error follows)")
	}
	fmt.Fprintf(w, "progress in group %s: %s\n", s.Group, savedAt(cfg.Topic, s.Saved))
	if s.Unsaved > 0 {
		fmt.Fprintf(w, "  %d replayed %s beyond it: running the same command again replays %s again\n",
			s.Unsaved, plural(int(s.Unsaved), "record lies", "records lie"), plural(int(s.Unsaved), "it", "them"))
	}
	if s.RefusedWaiting {
		fmt.Fprintf(w, "refused records wait in %s for the same command with --force\n", cfg.Topic)
	}
	if err == nil && s.SaveErr == nil {
		fmt.Fprintln(w, "run the same command to continue, --reset to start over")
	}
}

// savedAt describes the committed progress per partition.
func savedAt(topic string, saved map[int32]int64) string {
	if len(saved) == 0 {
		return "nothing saved; a new run starts at the beginning"
	}
	parts := make([]string, 0, len(saved))
	for _, p := range slices.Sorted(maps.Keys(saved)) {
		parts = append(parts, fmt.Sprintf("%s/%d@%d", topic, p, saved[p]))
	}
	return "continues at " + strings.Join(parts, ", ")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
