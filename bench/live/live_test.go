package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds, failing after 5s: it waits for
// goroutines to reach a blocking point observed through the gate's state.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func (g *gate) state() (busy, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.busy, g.waiters.Len()
}

func TestGateServesInArrivalOrderAndFollowsResize(t *testing.T) {
	g := &gate{workers: 1}
	if !g.enter(context.Background()) {
		t.Fatal("no worker free")
	}
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			if g.enter(context.Background()) {
				order <- i
			}
		}()
		waitFor(t, func() bool { _, w := g.state(); return w == i+1 })
	}
	g.leave()
	if got := <-order; got != 0 {
		t.Fatalf("first served %d, want 0", got)
	}
	// Two more workers: both waiters get one at once.
	g.resize(3)
	if got := <-order + <-order; got != 1+2 {
		t.Fatalf("served waiters summing to %d, want 1 and 2", got)
	}
	if busy, waiting := g.state(); busy != 3 || waiting != 0 {
		t.Fatalf("busy %d waiting %d, want 3 and 0", busy, waiting)
	}
}

func TestGateCancelledWaiterHoldsNothing(t *testing.T) {
	g := &gate{workers: 1}
	g.enter(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- g.enter(ctx) }()
	waitFor(t, func() bool { _, w := g.state(); return w == 1 })
	cancel()
	if <-done {
		t.Fatal("a cancelled waiter got a worker")
	}
	g.leave()
	if busy, waiting := g.state(); busy != 0 || waiting != 0 {
		t.Fatalf("busy %d waiting %d, want 0 and 0", busy, waiting)
	}
}

func TestDownstreamControl(t *testing.T) {
	s := newServer(0, service{mean: time.Millisecond})
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	post := func(q string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+"/control?"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		give string
		want int
	}{
		{"workers=16", http.StatusOK},
		{"scale=3", http.StatusOK},
		{"stall=0s", http.StatusOK},
		{"workers=x", http.StatusBadRequest},
		{"scale=0", http.StatusBadRequest},
		{"stall=soon", http.StatusBadRequest},
	}
	for _, tt := range tests {
		if got := post(tt.give); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.give, got, tt.want)
		}
	}
	if busy, _ := s.gate.state(); s.gate.workers != 16 || busy != 0 {
		t.Fatalf("workers %d busy %d, want 16 and 0", s.gate.workers, busy)
	}
	resp, err := http.Get(srv.URL + "/call")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || s.served.Load() != 1 {
		t.Fatalf("call: status %d, served %d", resp.StatusCode, s.served.Load())
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		give string
		want mode
		err  bool
	}{
		{give: "none", want: mode{name: "none"}},
		{give: "chain", want: mode{name: "chain", guarded: true, chain: true}},
		{give: "fixed-64", want: mode{name: "fixed-64", guarded: true, fixed: 64}},
		{give: "adaptive", want: mode{name: "adaptive", guarded: true, adapt: true}},
		{give: "full", want: mode{name: "full", guarded: true, chain: true, adapt: true}},
		{give: "fixed-0", err: true},
		{give: "vegas", err: true},
	}
	for _, tt := range tests {
		got, err := parseMode(tt.give)
		if (err != nil) != tt.err || err == nil && got != tt.want {
			t.Errorf("parseMode(%q) = %+v, %v", tt.give, got, err)
		}
	}
}

// TestMetricsOfARun checks the figures a run reports on calls made up for
// it: 1,000 calls a second for 4s after a 1s ramp, a warm-up of 2s.
func TestMetricsOfARun(t *testing.T) {
	sc := &scenario{warm: 2 * time.Second}
	r := &runResult{sc: sc, first: 0, end: 5 * time.Second}
	for ms := range 5000 {
		at := time.Duration(ms) * time.Millisecond
		if at < time.Second && ms%2 == 1 {
			continue // the ramp: half the rate
		}
		r.calls = append(r.calls, call{end: int64(at), lat: 2000, ok: true})
	}
	r.calls = append(r.calls, call{end: int64(6 * time.Second), lat: 2000, ok: true}) // in the drain: not counted
	m := r.metrics()
	if m.goodput < 990 || m.goodput > 1010 {
		t.Errorf("goodput %.0f, want 1000", m.goodput)
	}
	if m.p50 != 2 || m.p99 != 2 {
		t.Errorf("p50 %v p99 %v, want 2ms", m.p50, m.p99)
	}
	if m.cold != 1300*time.Millisecond {
		t.Errorf("cold start %v, want 1.3s (the ramp, then 300ms at the full rate)", m.cold)
	}
	if m.noise != 0 {
		t.Errorf("noise %v, want 0", m.noise)
	}
}

func TestScenarioScale(t *testing.T) {
	var sc *scenario
	for _, s := range scenarios() {
		if s.name == "schedule" {
			sc = s
		}
	}
	if sc == nil {
		t.Fatal("no schedule scenario")
	}
	d, first, ideal := sc.duration, sc.events[0].at, sc.ideal(7*time.Second)
	sc.scale(0.5)
	if sc.duration != d/2 || sc.events[0].at != first/2 {
		t.Fatalf("duration %v, first event %v; want halves of %v and %v", sc.duration, sc.events[0].at, d, first)
	}
	if got := sc.ideal(3500 * time.Millisecond); got != ideal {
		t.Fatalf("ideal at the scaled time %v, want %v", got, ideal)
	}
}
