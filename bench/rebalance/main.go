// Command rebalance measures how long a group takes to absorb a joining
// member under the classic protocol (cooperative-sticky) and under KIP-848
// (consumer.ProtocolConsumer), in the same run, on the same broker.
//
// Each round starts two members of a fresh group on a topic of 12
// partitions under a steady load, waits until every partition is being
// consumed, then starts a third member. The rebalance time runs from the
// third member's start to the moment every partition is owned by exactly
// one member, the third has its share (4), and every partition that moved
// has handled a record at its new owner. Rounds alternate between the
// protocols; the program prints the median, minimum and maximum of each
// and their ratio.
//
// The broker is franz-go's kfake, in process. Both protocols get the same
// heartbeat interval (-heartbeat, one broker and one table per interval):
// the classic members through the client's heartbeat interval, the KIP-848
// group through the broker's group.consumer.heartbeat.interval.ms (under
// KIP-848 the broker sets it). A heartbeat is how a member learns that the
// group changed, under either protocol, so the figures follow the interval.
//
//	go run ./bench/rebalance -rounds 7 -heartbeat 250ms,1s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

var (
	partitions = flag.Int("partitions", 12, "partitions of the topic")
	members    = flag.Int("members", 3, "members after the join (the last one joins)")
	rounds     = flag.Int("rounds", 5, "rounds per protocol")
	heartbeats = flag.String("heartbeat", "250ms,1s", "heartbeat intervals of both protocols, comma-separated: one broker and one table each")
	heartbeat  time.Duration // the interval of the current table
	rate       = flag.Int("rate", 2000, "records per second produced over all partitions")
	work       = flag.Duration("work", time.Millisecond, "handling time per record")
	verbose    = flag.Bool("v", false, "print each round")
)

func main() {
	flag.Parse()
	for _, hb := range strings.Split(*heartbeats, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(hb))
		if err != nil {
			fmt.Fprintln(os.Stderr, "rebalance: -heartbeat:", err)
			os.Exit(2)
		}
		heartbeat = d
		if err := run(); err != nil {
			fmt.Fprintln(os.Stderr, "rebalance:", err)
			os.Exit(1)
		}
	}
}

const topic = "rebalance"

func run() error {
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(*partitions), topic),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
		kfake.BrokerConfigs(map[string]string{
			"group.consumer.heartbeat.interval.ms": strconv.Itoa(int(heartbeat.Milliseconds())),
			"group.consumer.session.timeout.ms":    "10000",
		}),
	)
	if err != nil {
		return err
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prodDone, err := produce(ctx, addrs)
	if err != nil {
		return err
	}

	protocols := []consumer.Protocol{consumer.ProtocolClassic, consumer.ProtocolConsumer}
	took := map[consumer.Protocol][]time.Duration{}
	for r := range *rounds {
		for _, p := range protocols {
			d, moved, err := round(addrs, p, fmt.Sprintf("g-%s-%d", p, r))
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, p, err)
			}
			if *verbose {
				fmt.Printf("round %d %-8s %8.0f ms (%d partitions moved)\n", r, p, ms(d), moved)
			}
			took[p] = append(took[p], d)
		}
	}
	cancel()
	<-prodDone

	fmt.Printf("\n%d -> %d members, %d partitions, heartbeat %v, %d records/s, %v per record, %d rounds each\n\n",
		*members-1, *members, *partitions, heartbeat, *rate, *work, *rounds)
	fmt.Println("| protocol | median | min | max |")
	fmt.Println("|---|---:|---:|---:|")
	for _, p := range protocols {
		ds := took[p]
		slices.Sort(ds)
		fmt.Printf("| %s | %.0f ms | %.0f ms | %.0f ms |\n", name(p), ms(median(ds)), ms(ds[0]), ms(ds[len(ds)-1]))
	}
	fmt.Printf("\nKIP-848 / classic (medians): %.2f\n", ms(median(took[consumer.ProtocolConsumer]))/ms(median(took[consumer.ProtocolClassic])))
	return nil
}

func name(p consumer.Protocol) string {
	if p == consumer.ProtocolConsumer {
		return "KIP-848 (consumer)"
	}
	return "classic (cooperative-sticky)"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// produce writes *rate records per second, round-robin over the
// partitions, until ctx ends.
func produce(ctx context.Context, addrs []string) (<-chan struct{}, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cl.Close()
		const tick = 10 * time.Millisecond
		per := max(1, *rate*int(tick)/int(time.Second))
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for range per {
				cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}, nil)
			}
		}
	}()
	return done, nil
}

// group tracks who owns which partition and when each owner first handled
// a record of it.
type group struct {
	mu sync.Mutex
	// owner of each partition ("" if none); owners counts how many
	// members claim it.
	owners map[int32]map[string]bool
	// since is when the current owner was assigned the partition; first
	// is when it first handled a record after that.
	since map[int32]time.Time
	first map[int32]time.Time
	moved map[int32]bool
	t0    time.Time
}

type memberHooks struct {
	g    *group
	name string
}

func (h memberHooks) OnAssigned(tps []pipeline.TopicPartition) {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	now := time.Now()
	for _, tp := range tps {
		if h.g.owners[tp.Partition] == nil {
			h.g.owners[tp.Partition] = map[string]bool{}
		}
		h.g.owners[tp.Partition][h.name] = true
		h.g.since[tp.Partition] = now
		delete(h.g.first, tp.Partition)
		if !h.g.t0.IsZero() {
			h.g.moved[tp.Partition] = true
		}
	}
}

func (h memberHooks) drop(tps []pipeline.TopicPartition) {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	for _, tp := range tps {
		delete(h.g.owners[tp.Partition], h.name)
	}
}

func (h memberHooks) OnRevoked(tps []pipeline.TopicPartition, _ time.Duration, _ bool) { h.drop(tps) }
func (h memberHooks) OnLost(tps []pipeline.TopicPartition)                             { h.drop(tps) }

// handled notes a record handled by member name.
func (g *group) handled(name string, p int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owners[p][name] && len(g.owners[p]) == 1 {
		if _, ok := g.first[p]; !ok {
			g.first[p] = time.Now()
		}
	}
}

// settled reports whether every partition has one owner that handled a
// record since it got the partition, with n members owning some and the
// newcomer holding its share; end is the latest first record of a moved
// partition.
func (g *group) settled(n int, newcomer string, share int) (end time.Time, moved int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	got := 0
	distinct := map[string]bool{}
	for p := range int32(*partitions) {
		if len(g.owners[p]) != 1 {
			return end, 0, false
		}
		for o := range g.owners[p] {
			distinct[o] = true
		}
		if g.owners[p][newcomer] {
			got++
		}
		f, ok := g.first[p]
		if !ok {
			return end, 0, false
		}
		if g.moved[p] {
			moved++
			if f.After(end) {
				end = f
			}
		}
	}
	return end, moved, got >= share && len(distinct) == n
}

// round runs one measurement and returns the rebalance time.
func round(addrs []string, p consumer.Protocol, groupName string) (time.Duration, int, error) {
	g := &group{owners: map[int32]map[string]bool{}, since: map[int32]time.Time{}, first: map[int32]time.Time{}, moved: map[int32]bool{}}
	var stops []func() error
	defer func() {
		for _, stop := range stops {
			_ = stop()
		}
	}()
	start := func(name string) error {
		h := &handler{g: g, name: name}
		c, err := consumer.New(
			consumer.Connection(sluice.Connection{Brokers: addrs, ClientID: name}),
			consumer.Group(groupName),
			consumer.Handle(h),
			consumer.GroupProtocol(p),
			consumer.Start(consumer.Latest),
			consumer.SessionTimeout(10*time.Second),
			consumer.RebalanceTimeout(10*time.Second),
			consumer.DrainTimeout(5*time.Second),
			consumer.Hooks(memberHooks{g, name}),
			consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			consumer.ClientOpts(kgo.HeartbeatInterval(heartbeat)),
		)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- c.Run(ctx) }()
		stops = append(stops, func() error { cancel(); return <-errc })
		return nil
	}
	for i := range *members - 1 {
		if err := start(fmt.Sprintf("m%d", i)); err != nil {
			return 0, 0, err
		}
	}
	if !waitFor(time.Minute, func() bool { _, _, ok := g.settled(*members-1, "", 0); return ok }) {
		return 0, 0, fmt.Errorf("the first %d members never consumed every partition", *members-1)
	}
	newcomer := fmt.Sprintf("m%d", *members-1)
	g.mu.Lock()
	g.t0 = time.Now()
	t0 := g.t0
	g.mu.Unlock()
	if err := start(newcomer); err != nil {
		return 0, 0, err
	}
	var (
		end   time.Time
		moved int
	)
	share := *partitions / *members
	if !waitFor(time.Minute, func() bool {
		var ok bool
		end, moved, ok = g.settled(*members, newcomer, share)
		return ok && moved > 0
	}) {
		return 0, 0, fmt.Errorf("the group did not settle within a minute of the join")
	}
	return end.Sub(t0), moved, nil
}

// waitFor polls cond every millisecond: the measurement's resolution.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

type handler struct {
	g    *group
	name string
}

// Topics is the topic the benchmark reads.
func (h *handler) Topics() []string { return []string{topic} }

func (h *handler) OpenPartition(ctx context.Context, tp pipeline.TopicPartition) (pipeline.Partition, error) {
	return &part{h: h, p: tp.Partition}, nil
}

type part struct {
	h *handler
	p int32
}

func (p *part) Handle(ctx context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		if *work > 0 {
			time.Sleep(*work) // the workload
		}
		p.h.g.handled(p.h.name, p.p)
		r.Settle()
	}
	return nil
}

func (p *part) Close() {}
