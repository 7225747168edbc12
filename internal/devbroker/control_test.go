package devbroker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startWithControl(t *testing.T) (addr, url string) {
	t.Helper()
	c, err := Start(Config{Topics: []Topic{{Name: "orders", Partitions: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	srv, err := ServeControl(c.Cluster, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return c.ListenAddrs()[0], srv.URL()
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestControlInstallsAndRemovesFaults(t *testing.T) {
	addr, url := startWithControl(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordRetries(0), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("v")}).FirstErr()
	}
	if err := produce(); err != nil {
		t.Fatalf("produce before any fault: %v", err)
	}

	code, body := call(t, "POST", url+"/faults", `{"keys":["Produce"],"topic":"orders","err":"INVALID_RECORD","count":-1}`)
	if code != http.StatusOK {
		t.Fatalf("install: %d %s", code, body)
	}
	var created struct{ ID int }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == 0 {
		t.Fatalf("install answered %q: %v", body, err)
	}
	if err := produce(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("produce with the fault: %v, want INVALID_RECORD", err)
	}
	code, body = call(t, "GET", url+"/faults", "")
	var list []FaultStatus
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list) != 1 || list[0].Hits < 1 || list[0].Spec.Err != "INVALID_RECORD" {
		t.Fatalf("list: %d %s (%v)", code, body, err)
	}
	if code, body := call(t, "DELETE", url+"/faults/1", ""); code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", code, body)
	}
	if err := produce(); err != nil {
		t.Fatalf("produce after removing the fault: %v", err)
	}
	if code, _ := call(t, "DELETE", url+"/faults/1", ""); code != http.StatusNotFound {
		t.Fatalf("second remove: %d, want 404", code)
	}

	// Numeric keys and codes work too; DELETE /faults removes everything.
	if code, body := call(t, "POST", url+"/faults", `{"keys":["0"],"err":"87","count":-1}`); code != http.StatusOK {
		t.Fatalf("install by numbers: %d %s", code, body)
	}
	if err := produce(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("produce with the numeric fault: %v, want INVALID_RECORD", err)
	}
	if code, body := call(t, "DELETE", url+"/faults", ""); code != http.StatusNoContent {
		t.Fatalf("remove all: %d %s", code, body)
	}
	if err := produce(); err != nil {
		t.Fatalf("produce after removing all: %v", err)
	}
	if code, body := call(t, "POST", url+"/coordinators/rehash", ""); code != http.StatusNoContent {
		t.Fatalf("rehash: %d %s", code, body)
	}
}

func TestControlRejectsBadFaults(t *testing.T) {
	_, url := startWithControl(t)
	tests := []struct {
		give string
		want string
	}{
		{give: `{"keys":["Nope"]}`, want: `keys: unknown request "Nope"`},
		{give: `{"keys":["9999"]}`, want: `keys: unknown request "9999"`},
		{give: `{"err":"NOT_AN_ERROR"}`, want: `err: unknown Kafka error "NOT_AN_ERROR"`},
		{give: `{"err":"30000"}`, want: "err: unknown Kafka error code 30000"},
		{give: `{"count":-2}`, want: "count: -2"},
		{give: `{"topics":"x"}`, want: "unknown field"},
		{give: `not json`, want: "fault: invalid character"},
	}
	for _, tt := range tests {
		code, body := call(t, "POST", url+"/faults", tt.give)
		if code != http.StatusBadRequest || !strings.Contains(body, tt.want) {
			t.Errorf("POST %s: %d %q, want 400 containing %q", tt.give, code, body, tt.want)
		}
	}
}

func TestControlOnlyOnLoopback(t *testing.T) {
	for _, give := range []string{"0.0.0.0:0", ":0", "192.0.2.1:80", "nonsense"} {
		if err := CheckControlAddr(give); err == nil {
			t.Errorf("CheckControlAddr(%q) accepted it", give)
		}
	}
	for _, give := range []string{"127.0.0.1:0", "localhost:1234", "[::1]:0"} {
		if err := CheckControlAddr(give); err != nil {
			t.Errorf("CheckControlAddr(%q): %v", give, err)
		}
	}
}
