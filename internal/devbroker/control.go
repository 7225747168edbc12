package devbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FaultSpec is a kfake.Fault as the control API takes it, in JSON. Every set
// field narrows which requests fail; see kfake.Fault.
type FaultSpec struct {
	// Keys are request names as Kafka spells them ("OffsetCommit",
	// "Fetch", "Heartbeat") or their numeric keys ("8"). Empty: every
	// request.
	Keys       []string `json:"keys,omitempty"`
	Topic      string   `json:"topic,omitempty"`
	Partitions []int32  `json:"partitions,omitempty"`
	Group      string   `json:"group,omitempty"`
	// TopLevel fails the request's top-level error code instead of its
	// topics or partitions.
	TopLevel bool `json:"top_level,omitempty"`
	// Err is the Kafka error name ("NOT_COORDINATOR") or code ("16").
	// Empty: UNKNOWN_SERVER_ERROR.
	Err string `json:"err,omitempty"`
	// Count is how many requests fail: 0 means one, -1 until removed.
	Count int `json:"count,omitempty"`
}

// FaultStatus is an installed fault as the control API lists it.
type FaultStatus struct {
	ID   int       `json:"id"`
	Spec FaultSpec `json:"spec"`
	// Hits is how many requests the fault has answered.
	Hits int `json:"hits"`
}

// fault converts s, naming the bad field.
func (s FaultSpec) fault() (kfake.Fault, error) {
	f := kfake.Fault{Topic: s.Topic, Partitions: s.Partitions, Group: s.Group, TopLevel: s.TopLevel, Count: s.Count}
	for _, k := range s.Keys {
		key, ok := requestKeys()[k]
		if !ok {
			n, err := strconv.ParseInt(k, 10, 16)
			if err != nil || n < 0 || n > kmsg.MaxKey {
				return f, fmt.Errorf("keys: unknown request %q", k)
			}
			key = kmsg.Key(n)
		}
		f.Keys = append(f.Keys, key)
	}
	if s.Err != "" {
		e, ok := kafkaErrors()[s.Err]
		if !ok {
			n, err := strconv.ParseInt(s.Err, 10, 16)
			if err != nil {
				return f, fmt.Errorf("err: unknown Kafka error %q", s.Err)
			}
			if e = kerr.TypedErrorForCode(int16(n)); e == nil || e.Code != int16(n) {
				return f, fmt.Errorf("err: unknown Kafka error code %d", n)
			}
		}
		f.Err = e
	}
	if s.Count < -1 {
		return f, fmt.Errorf("count: %d, want -1, 0 or more", s.Count)
	}
	return f, nil
}

var (
	namesOnce sync.Once
	keyByName map[string]kmsg.Key
	errByName map[string]*kerr.Error
)

func buildNames() {
	keyByName = map[string]kmsg.Key{}
	for k := int16(0); k <= kmsg.MaxKey; k++ {
		if n := kmsg.NameForKey(k); n != "" && n != "Unknown" {
			keyByName[n] = kmsg.Key(k)
		}
	}
	errByName = map[string]*kerr.Error{}
	for c := int16(-1); c < 1000; c++ {
		if e := kerr.TypedErrorForCode(c); e != nil && e.Code == c {
			errByName[e.Message] = e
		}
	}
}

func requestKeys() map[string]kmsg.Key {
	namesOnce.Do(buildNames)
	return keyByName
}

func kafkaErrors() map[string]*kerr.Error {
	namesOnce.Do(buildNames)
	return errByName
}

// Control is an HTTP API that injects broker-side faults into a running
// development broker, for reliability tests of clients in other processes:
//
//	POST   /faults       install a fault; body: FaultSpec; answers {"id": N}
//	GET    /faults       list installed faults with their hits ([]FaultStatus)
//	DELETE /faults/{id}  remove one fault
//	DELETE /faults       remove every fault
//	POST   /coordinators/rehash  move group coordinators (kfake.RehashCoordinators)
//
// It has no authentication: serve it on loopback only (ServeControl
// refuses other addresses).
type Control struct {
	c   *kfake.Cluster
	mux *http.ServeMux

	mu     sync.Mutex
	nextID int
	faults map[int]installed
}

type installed struct {
	spec FaultSpec
	h    *kfake.FaultHandle
}

// NewControl returns the control API of c.
func NewControl(c *kfake.Cluster) *Control {
	ctl := &Control{c: c, mux: http.NewServeMux(), faults: map[int]installed{}}
	ctl.mux.HandleFunc("POST /faults", ctl.add)
	ctl.mux.HandleFunc("GET /faults", ctl.list)
	ctl.mux.HandleFunc("DELETE /faults/{id}", ctl.remove)
	ctl.mux.HandleFunc("DELETE /faults", ctl.removeAll)
	ctl.mux.HandleFunc("POST /coordinators/rehash", func(w http.ResponseWriter, _ *http.Request) {
		c.RehashCoordinators()
		w.WriteHeader(http.StatusNoContent)
	})
	return ctl
}

// ServeHTTP serves the API.
func (ctl *Control) ServeHTTP(w http.ResponseWriter, r *http.Request) { ctl.mux.ServeHTTP(w, r) }

func (ctl *Control) add(w http.ResponseWriter, r *http.Request) {
	var spec FaultSpec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
		return
	}
	f, err := spec.fault()
	if err != nil {
		http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctl.mu.Lock()
	ctl.nextID++
	id := ctl.nextID
	ctl.faults[id] = installed{spec: spec, h: ctl.c.Fault(f)}
	ctl.mu.Unlock()
	writeJSON(w, map[string]int{"id": id})
}

func (ctl *Control) list(w http.ResponseWriter, _ *http.Request) {
	ctl.mu.Lock()
	out := make([]FaultStatus, 0, len(ctl.faults))
	for id, f := range ctl.faults {
		out = append(out, FaultStatus{ID: id, Spec: f.spec, Hits: f.h.Hits()})
	}
	ctl.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, out)
}

func (ctl *Control) remove(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	ctl.mu.Lock()
	f, ok := ctl.faults[id]
	delete(ctl.faults, id)
	ctl.mu.Unlock()
	if err != nil || !ok {
		http.Error(w, fmt.Sprintf("no fault %q", r.PathValue("id")), http.StatusNotFound)
		return
	}
	f.h.Remove()
	w.WriteHeader(http.StatusNoContent)
}

func (ctl *Control) removeAll(w http.ResponseWriter, _ *http.Request) {
	ctl.mu.Lock()
	fs := ctl.faults
	ctl.faults = map[int]installed{}
	ctl.mu.Unlock()
	for _, f := range fs {
		f.h.Remove()
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ControlServer serves a Control on a loopback address.
type ControlServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// ServeControl serves the control API of c on addr, which must be a
// loopback address ("127.0.0.1:0" picks a free port).
func ServeControl(c *kfake.Cluster, addr string) (*ControlServer, error) {
	if err := CheckControlAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s := &ControlServer{
		ln:   ln,
		srv:  &http.Server{Handler: NewControl(c), ReadHeaderTimeout: 5 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// CheckControlAddr reports whether addr is a host:port on loopback, where
// the control API may be served.
func CheckControlAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("control: %q is not a loopback address; the fault API has no authentication", addr)
	}
	return nil
}

// URL is the base URL of the API.
func (s *ControlServer) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops serving and waits for the server to stop.
func (s *ControlServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
