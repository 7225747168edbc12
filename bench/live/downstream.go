package main

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice/bench/internal/proc"
)

// The downstream is an HTTP server in its own process: GET /call takes a
// worker (at most -workers at once, in arrival order; 0 is unlimited), holds
// it for a service time drawn from the configured distribution, and answers
// 200. POST /control changes it while it runs: workers=N, scale=X (service
// time multiplier), stall=D (no request is served for D; those in service
// finish), so the benchmark drives a schedule of capacity drops, slowdowns
// and stalls from outside.

// service is a service-time distribution: lognormal with the given mean and
// sigma, or constant when sigma is 0.
type service struct {
	mean  time.Duration
	sigma float64
}

func (s service) draw(r *rand.Rand) time.Duration {
	if s.sigma == 0 {
		return s.mean
	}
	mu := math.Log(float64(s.mean)) - s.sigma*s.sigma/2
	return time.Duration(math.Exp(mu + s.sigma*r.NormFloat64()))
}

// gate admits at most workers holders at once, waiters in arrival order.
// workers <= 0 admits everyone.
type gate struct {
	mu      sync.Mutex
	workers int
	busy    int
	waiters list.List // of chan struct{}
}

// enter waits for a worker; false if ctx ended first (nothing held then).
func (g *gate) enter(ctx context.Context) bool {
	g.mu.Lock()
	if g.workers <= 0 || g.busy < g.workers && g.waiters.Len() == 0 {
		g.busy++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	e := g.waiters.PushBack(ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		select {
		case <-ch: // granted meanwhile: pass it on
			g.busy--
			g.grant()
		default:
			g.waiters.Remove(e)
		}
		return false
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	g.busy--
	g.grant()
	g.mu.Unlock()
}

// grant hands free workers to waiters; mu held.
func (g *gate) grant() {
	for g.waiters.Len() > 0 && (g.workers <= 0 || g.busy < g.workers) {
		ch := g.waiters.Remove(g.waiters.Front()).(chan struct{})
		g.busy++
		close(ch)
	}
}

func (g *gate) resize(n int) {
	g.mu.Lock()
	g.workers = n
	g.grant()
	g.mu.Unlock()
}

// server is the downstream's state.
type server struct {
	svc    service
	gate   gate
	scale  atomic.Uint64 // math.Float64bits of the service-time multiplier
	served atomic.Int64

	mu    sync.Mutex
	stall chan struct{} // closed when the current stall ends; nil when none
	rngs  sync.Pool
}

func newServer(workers int, svc service) *server {
	s := &server{svc: svc}
	s.gate.workers = workers
	s.scale.Store(math.Float64bits(1))
	var seed atomic.Uint64
	s.rngs.New = func() any { n := seed.Add(1); return rand.New(rand.NewPCG(n, n*0x9e3779b97f4a7c15)) }
	return s
}

func (s *server) call(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s.mu.Lock()
	stall := s.stall
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return
		}
	}
	if !s.gate.enter(ctx) {
		return
	}
	rng := s.rngs.Get().(*rand.Rand)
	d := time.Duration(float64(s.svc.draw(rng)) * math.Float64frombits(s.scale.Load()))
	s.rngs.Put(rng)
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	s.gate.leave()
	s.served.Add(1)
	w.WriteHeader(http.StatusOK)
}

// control applies workers=, scale= and stall= from the query.
func (s *server) control(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if v := q.Get("workers"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			http.Error(w, "workers: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.gate.resize(n)
	}
	if v := q.Get("scale"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			http.Error(w, "scale: must be a positive number", http.StatusBadRequest)
			return
		}
		s.scale.Store(math.Float64bits(f))
	}
	if v := q.Get("stall"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "stall: "+err.Error(), http.StatusBadRequest)
			return
		}
		ch := make(chan struct{})
		s.mu.Lock()
		old := s.stall
		s.stall = ch
		s.mu.Unlock()
		if old != nil {
			close(old)
		}
		time.AfterFunc(d, func() {
			s.mu.Lock()
			if s.stall == ch {
				s.stall = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
	fmt.Fprintf(w, "served %d\n", s.served.Load())
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /call", s.call)
	mux.HandleFunc("POST /control", s.control)
	return mux
}

// runDownstream is the downstream process: it prints its address and serves
// until interrupted. spec is "workers,mean,sigma".
func runDownstream(spec string) {
	var (
		workers int
		mean    time.Duration
		sigma   float64
	)
	if _, err := fmt.Sscanf(spec, "%d,%d,%g", &workers, &mean, &sigma); err != nil {
		fmt.Fprintln(os.Stderr, "downstream spec:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	srv := &http.Server{Handler: newServer(workers, service{mean: mean, sigma: sigma}).handler()}
	go func() { _ = srv.Serve(ln) }()
	proc.Serve(ln.Addr().String())
	_ = srv.Close()
}
