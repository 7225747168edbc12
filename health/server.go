package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluice-go/sluice"
)

// Paths the Server serves.
const (
	PathLiveness  = "/healthz"
	PathReadiness = "/readyz"
	PathMetrics   = "/metrics"
)

// DefaultShutdownTimeout bounds how long Run waits for open requests when it
// stops.
const DefaultShutdownTimeout = 5 * time.Second

// ErrRunning is returned by Run when the server is already running.
var ErrRunning = errors.New("health: server already running")

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("health: server closed")

// Opt configures a Server.
type Opt interface{ apply(*serverCfg) }

type optFunc func(*serverCfg)

func (f optFunc) apply(c *serverCfg) { f(c) }

type serverCfg struct {
	status    StatusSource
	readyOpts []ReadyOpt
	gatherer  prometheus.Gatherer
	logger    *slog.Logger
	shutdown  time.Duration
	routes    []route
}

type route struct {
	pattern string
	h       http.Handler
}

// Status serves /readyz from src (see Readiness). Without it /readyz is
// not served.
func Status(src StatusSource, opts ...ReadyOpt) Opt {
	return optFunc(func(c *serverCfg) { c.status, c.readyOpts = src, opts })
}

// Metrics serves /metrics from g, in the Prometheus text or protobuf
// format the scraper asks for. A collector that fails is reported in the
// log and the rest of the scrape is served. Without it /metrics is not
// served.
func Metrics(g prometheus.Gatherer) Opt { return optFunc(func(c *serverCfg) { c.gatherer = g }) }

// Logger sets the logger for the listening address and serving errors.
// Default (nil): slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *serverCfg) { c.logger = l }) }

// ShutdownTimeout bounds how long Run waits for open requests to finish
// when it stops, overriding DefaultShutdownTimeout (5s); then the
// connections are closed.
func ShutdownTimeout(d time.Duration) Opt { return optFunc(func(c *serverCfg) { c.shutdown = d }) }

// Handle serves h at pattern as well (net/http.ServeMux patterns), for
// example pprof.
func Handle(pattern string, h http.Handler) Opt {
	return optFunc(func(c *serverCfg) { c.routes = append(c.routes, route{pattern, h}) })
}

// Server serves /healthz, /readyz and /metrics on one listener.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	handler  http.Handler
	log      *slog.Logger
	shutdown time.Duration

	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when Run returns

	mu      sync.Mutex
	running bool
	closed  bool
}

// NewServer validates the options and listens on addr (host:port; port 0
// picks a free port, see Addr), so that a taken port is reported here, at
// start, rather than later. Run serves.
func NewServer(addr string, opts ...Opt) (*Server, error) {
	c := serverCfg{shutdown: DefaultShutdownTimeout}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.shutdown <= 0 {
		return nil, &sluice.ConfigError{Package: "health", Option: "ShutdownTimeout", Value: c.shutdown, Reason: "must be positive"}
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathLiveness, Liveness())
	if c.status != nil {
		mux.Handle("GET "+PathReadiness, Readiness(c.status, c.readyOpts...))
	}
	if c.gatherer != nil {
		mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(c.gatherer, promhttp.HandlerOpts{
			ErrorLog:      slogPrinter{c.logger},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	for _, r := range c.routes {
		if r.pattern == "" || r.h == nil {
			return nil, &sluice.ConfigError{Package: "health", Option: "Handle", Value: fmt.Sprintf("%q", r.pattern), Reason: "need a pattern and a handler"}
		}
		mux.Handle(r.pattern, r.h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health: listen: %w", err)
	}
	s := &Server{
		ln:       ln,
		handler:  mux,
		log:      c.logger,
		shutdown: c.shutdown,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the address the server listens on, with the port picked for
// port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the server's router, for tests or for mounting in another
// server.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx is cancelled or Close is called, then stops
// accepting, lets open requests finish within the shutdown timeout, and
// returns nil; or it returns the error that stopped serving.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.running:
		s.mu.Unlock()
		return ErrRunning
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.done)

	s.log.Info("health: serving", "addr", s.Addr())
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("health: serve: %w", err)
	case <-ctx.Done():
	case <-s.stop:
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.log.Warn("health: open requests cut off at shutdown", "err", err)
		_ = s.srv.Close()
	}
	<-served
	return nil
}

// Close stops the server and waits for Run to return. It is safe to call
// more than once, and before or without Run.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	running := s.running
	wasClosed := s.closed
	s.closed = true
	s.mu.Unlock()
	if running {
		<-s.done
	} else if !wasClosed {
		_ = s.ln.Close()
	}
}

// slogPrinter adapts a slog.Logger to promhttp's error log.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.l.Warn("health: metrics scrape: " + fmt.Sprint(v...))
}
