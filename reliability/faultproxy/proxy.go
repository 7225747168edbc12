// Package faultproxy is a loopback TCP proxy that injects network faults
// between a Kafka client and a broker: it can cut connections, refuse new
// ones, stall every byte, or slow every chunk.
//
// The reliability suite routes a consumer process's connections through one
// Proxy per broker address (the consumer's dialer maps the broker's
// advertised address to the proxy's), so that a fault hits one consumer and
// leaves the others, the producer and the broker alone.
//
// Faults act on both directions of every connection, open or new:
//
//   - Cut closes every open connection at once (both sides see a reset or
//     EOF); new connections are accepted as usual.
//   - Refuse(true) stops listening, so that new connections are refused
//     (ECONNREFUSED), as by a host whose broker is down; Refuse(false)
//     listens again on the same address. Open connections are not touched
//     (Cut them too for a broker that died).
//   - Stall stops forwarding: bytes read are held, and reading stops, until
//     Heal. Connections stay open, so a client sees only silence.
//   - Slow delays every forwarded chunk by a fixed latency.
//   - Heal ends Stall, Slow and Refuse.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections accepted on Addr to a target address.
type Proxy struct {
	target string
	addr   string

	mu      sync.Mutex
	ln      net.Listener  // nil while refusing
	changed chan struct{} // closed and replaced when the mode changes
	stalled bool
	delay   time.Duration
	closed  bool
	conns   map[net.Conn]struct{}

	done chan struct{} // closed by Close: wakes waits and sleeps
	wg   sync.WaitGroup

	accepted atomic.Int64
	linked   atomic.Int64
	forward  atomic.Int64 // bytes forwarded, both directions
}

// New starts a proxy on 127.0.0.1 with a free port that forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		target:  target,
		addr:    ln.Addr().String(),
		ln:      ln,
		changed: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.addr }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Accepted is how many connections the proxy accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Linked is how many accepted connections the proxy connected to the target:
// from then on faults reach them.
func (p *Proxy) Linked() int64 { return p.linked.Load() }

// Forwarded is how many bytes the proxy forwarded, both directions.
func (p *Proxy) Forwarded() int64 { return p.forward.Load() }

// Open is how many connections (client and target sides) are open.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Cut closes every open connection. A connection the kernel completed but
// the proxy has not accepted yet is not open here and is not cut; Linked
// tells when a connection is.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Refuse stops listening (true), so that new connections are refused, or
// listens again on the same address (false). Listening again fails if
// another process took the port meanwhile.
func (p *Proxy) Refuse(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return net.ErrClosed
	case on && p.ln != nil:
		err := p.ln.Close()
		p.ln = nil
		return err
	case !on && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultproxy: listen again: %w", err)
		}
		p.ln = ln
		p.wg.Add(1)
		go p.accept(ln)
	}
	return nil
}

// Stall stops forwarding in both directions until Heal.
func (p *Proxy) Stall() { p.set(func() { p.stalled = true }) }

// Slow delays every forwarded chunk by d until Heal.
func (p *Proxy) Slow(d time.Duration) { p.set(func() { p.delay = d }) }

// Heal ends Stall, Slow and Refuse.
func (p *Proxy) Heal() error {
	p.set(func() { p.stalled, p.delay = false, 0 })
	return p.Refuse(false)
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Close stops the proxy, closes every connection and waits for its
// goroutines. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	var err error
	if p.ln != nil {
		err = p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.link(c)
	}
}

// track adds c to the open connections, unless the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// link forwards one client connection to a new target connection.
func (p *Proxy) link(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	d := net.Dialer{Timeout: 5 * time.Second}
	server, err := d.Dial("tcp", p.target)
	if err != nil {
		return // the client sees its connection close, as with a dead host
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	p.linked.Add(1)
	// quit ends the link when either direction ends, waking a pipe that
	// waits in the gate.
	quit := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(quit) }) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer end()
		p.pipe(server, client, quit)
	}()
	go func() {
		defer wg.Done()
		defer end()
		p.pipe(client, server, quit)
	}()
	wg.Wait()
}

// pipe copies src to dst through the fault gate; when either side ends it
// closes both, so the other pipe ends too.
func (p *Proxy) pipe(dst, src net.Conn, quit <-chan struct{}) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(quit) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			p.forward.Add(int64(n))
		}
		if err != nil {
			return // EOF, a cut, or Close
		}
	}
}

// gate waits while the proxy is stalled and sleeps the slow delay; false
// means the proxy or the link closed.
func (p *Proxy) gate(quit <-chan struct{}) bool {
	for {
		p.mu.Lock()
		stalled, delay, changed := p.stalled, p.delay, p.changed
		p.mu.Unlock()
		if stalled {
			select {
			case <-changed:
				continue
			case <-quit:
				return false
			case <-p.done:
				return false
			}
		}
		if delay <= 0 {
			return true
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			return true
		case <-quit:
			t.Stop()
			return false
		case <-p.done:
			t.Stop()
			return false
		}
	}
}
