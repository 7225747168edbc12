package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a line echo server.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func proxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	net.Conn
	r *bufio.Reader
}

// dial connects to p and waits until p has linked the connection to the
// target: the kernel completes a connect before the proxy accepts it, and a
// fault injected in between would miss the connection.
func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	linked := p.Linked()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(generous)
	for p.Linked() == linked {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not link the connection within %v", generous)
		}
		runtime.Gosched()
	}
	return &client{c, bufio.NewReader(c)}
}

// roundTrip sends a line and reads it back within wait.
func (c *client) roundTrip(line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	got, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

const generous = 10 * time.Second

func TestForwards(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	for _, line := range []string{"one", "two"} {
		if got, err := c.roundTrip(line, generous); err != nil || got != line {
			t.Fatalf("round trip %q: %q, %v", line, got, err)
		}
	}
	// The echo of the last line may be counted after the client read it.
	if p.Accepted() != 1 || p.Forwarded() < 12 {
		t.Fatalf("accepted %d, forwarded %d bytes; want 1 and at least 12", p.Accepted(), p.Forwarded())
	}
}

func TestCutClosesOpenConnections(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	if _, err := c.roundTrip("hi", generous); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	c.SetReadDeadline(time.Now().Add(generous))
	if _, err := c.r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cut: %v, want the connection closed", err)
	}
	// New connections still work.
	if got, err := dial(t, p).roundTrip("again", generous); err != nil || got != "again" {
		t.Fatalf("after cut: %q, %v", got, err)
	}
}

func TestRefuse(t *testing.T) {
	p := proxy(t)
	open := dial(t, p)
	if err := p.Refuse(true); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	// Open connections are not touched.
	if got, err := open.roundTrip("still", generous); err != nil || got != "still" {
		t.Fatalf("open connection while refusing: %q, %v", got, err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if got, err := dial(t, p).roundTrip("y", generous); err != nil || got != "y" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestStallHoldsBytesUntilHeal(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	if _, err := c.roundTrip("before", generous); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	if _, err := c.roundTrip("held", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while stalled: %v, want a timeout", err)
	}
	p.Heal()
	c.SetReadDeadline(time.Now().Add(generous))
	if got, err := c.r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestCutWakesStalledLinks(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	p.Stall()
	if _, err := c.Write([]byte("stuck\n")); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	c.SetReadDeadline(time.Now().Add(generous))
	if _, err := c.r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cut: %v, want the connection closed", err)
	}
	// Close must not wait for Heal: goleak and the test's end check it.
}

func TestSlowDelaysEveryChunk(t *testing.T) {
	p := proxy(t)
	c := dial(t, p)
	const d = 30 * time.Millisecond
	p.Slow(d)
	start := time.Now()
	if got, err := c.roundTrip("slow", generous); err != nil || got != "slow" {
		t.Fatalf("slow round trip: %q, %v", got, err)
	}
	// Both directions wait d: a lower bound, never an upper one.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v, want at least %v", took, 2*d)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	p := proxy(t)
	dial(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
