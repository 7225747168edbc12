package main

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDevBrokerControlFlag runs `sluice dev broker --control` in a child
// process and injects a broker-side error through its fault API.
func TestDevBrokerControlFlag(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--", "dev", "broker", "--port", "0", "--topics", "orders:1", "--control", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		for range lines {
		}
		if err := <-exited; err != nil {
			t.Errorf("broker exit: %v", err)
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		select {
		case line := <-lines:
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("line %q, want %q...", line, prefix)
			}
			return strings.TrimPrefix(line, prefix)
		case <-time.After(30 * time.Second):
			t.Fatalf("no line %q...", prefix)
			return ""
		}
	}
	addr := next("sluice dev broker listening on ")
	url := next("sluice dev broker fault control on ")

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordRetries(0), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("v")}).FirstErr()
	}
	resp, err := http.Post(url+"/faults", "application/json", strings.NewReader(`{"keys":["Produce"],"err":"CORRUPT_MESSAGE","count":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("install fault: %s", resp.Status)
	}
	if err := produce(); !errors.Is(err, kerr.CorruptMessage) {
		t.Fatalf("first produce: %v, want CORRUPT_MESSAGE from the fault", err)
	}
	if err := produce(); err != nil {
		t.Fatalf("second produce (the fault had count 1): %v", err)
	}
}

func TestDevBrokerControlOnlyOnLoopback(t *testing.T) {
	_, stderr, code := runMain(t, "dev", "broker", "--port", "0", "--control", "0.0.0.0:0")
	if code == 0 || !strings.Contains(stderr, "not a loopback address") {
		t.Fatalf("exit %d, stderr %q: want a refusal of a non-loopback control address", code, stderr)
	}
}
