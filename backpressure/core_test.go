package backpressure

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

func TestNewFixedRejectsBadLimit(t *testing.T) {
	_, err := NewFixed(0)
	var ce *sluice.ConfigError
	if !errors.As(err, &ce) || ce.Package != "backpressure" || ce.Option != "limit" || !errors.Is(err, sluice.ErrConfig) {
		t.Fatalf("got %v, want a *sluice.ConfigError naming limit", err)
	}
	if _, err := NewFixed(1, Hooks(42)); !errors.As(err, &ce) || ce.Option != "Hooks" {
		t.Fatalf("a hook implementing nothing: got %v, want a *sluice.ConfigError naming Hooks", err)
	}
}

func TestFixedBoundsInFlight(t *testing.T) {
	l, err := NewFixed(2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if !l.TryAcquire() {
			t.Fatalf("could not take slot %d of 2", i+1)
		}
	}
	if l.TryAcquire() {
		t.Fatal("took a third slot of 2")
	}
	if got := l.InFlight(); got != 2 {
		t.Fatalf("in flight %d, want 2", got)
	}
	l.Release(time.Millisecond, Success)
	if !l.TryAcquire() {
		t.Fatal("no slot after a release")
	}
}

func TestAcquireWaitsAndHonoursTheContext(t *testing.T) {
	l, _ := NewFixed(1)
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Acquire(ctx) }()
	waitFor(t, func() bool { return waiting(&l.core) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := waiting(&l.core); got != 0 {
		t.Fatalf("%d waiters left after cancel", got)
	}
	// A done context fails at once even with a free slot.
	l.Release(0, Ignore)
	if err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := l.InFlight(); got != 0 {
		t.Fatalf("in flight %d, want 0", got)
	}
}

func TestAcquireServesWaitersInOrder(t *testing.T) {
	l, _ := NewFixed(1)
	_ = l.Acquire(context.Background())
	got := make(chan int, 3)
	for i := range 3 {
		go func() {
			_ = l.Acquire(context.Background())
			got <- i
		}()
		waitFor(t, func() bool { return waiting(&l.core) == i+1 })
	}
	var order []int
	for range 3 {
		l.Release(time.Millisecond, Success)
		order = append(order, <-got)
	}
	l.Release(time.Millisecond, Success)
	if !slices.Equal(order, []int{0, 1, 2}) {
		t.Fatalf("served %v, want 0 1 2", order)
	}
}

func TestGrantRacingCancelHandsTheSlotOn(t *testing.T) {
	// A waiter granted a slot just as its context ends must return the
	// error and pass the slot to the next waiter, never keep it. The
	// waiter selects on its own context (no other waiter shares it): the
	// cancel wakes it first, and the grant lands while it waits for the
	// lock to leave the queue, so it finds itself granted.
	l, _ := NewFixed(1)
	_ = l.Acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- l.Acquire(ctx) }()
	waitFor(t, func() bool { return waiting(&l.core) == 1 && parkedInSelect() })
	second := make(chan error, 1)
	go func() { second <- l.Acquire(context.Background()) }()
	waitFor(t, func() bool { return waiting(&l.core) == 2 })

	// Cancel, then hand the held slot to the first waiter as Release
	// does, both under the lock the waiter needs to leave the queue.
	l.mu.Lock()
	cancel()
	l.def.inFlight.Add(-1)
	l.st.Add(minusWait)
	w := l.wake()
	l.mu.Unlock()
	w.ready <- struct{}{}

	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first: %v, want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second: %v", err)
	}
	if got := l.InFlight(); got != 1 {
		t.Fatalf("in flight %d, want 1 (the second waiter's)", got)
	}
}

// parkedInSelect reports whether a goroutine is blocked in a select inside
// the limiter's acquire: a waiter that selects on its context.
func parkedInSelect() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "[select]") && strings.Contains(g, "backpressure.(*core).acquire") {
			return true
		}
	}
	return false
}

// queue starts n callers of Acquire(ctx) on l, one after the other, and
// returns their results.
func queue(t *testing.T, l *Fixed, ctx context.Context, n int) []chan error {
	t.Helper()
	errs := make([]chan error, n)
	for i := range errs {
		errs[i] = make(chan error, 1)
		before := waiting(&l.core)
		go func() { errs[i] <- l.Acquire(ctx) }()
		waitFor(t, func() bool { return waiting(&l.core) == before+1 })
	}
	return errs
}

func TestWaitersSharingAContextAreCancelledTogether(t *testing.T) {
	// Waiters that share a context, once watchDepth wait, wait on their
	// own channel, cancelled by one watch of the context: they all leave
	// the queue, and the slot goes to the next waiter of another context.
	l, _ := NewFixed(1)
	_ = l.Acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errs := queue(t, l, ctx, watchDepth+2)
	other := queue(t, l, context.Background(), 1)[0]
	l.mu.Lock()
	// The first watchDepth waiters select; the two after them share the
	// last one's context.
	if wt := l.watches[ctx.Done()]; wt == nil || wt.n != 2 {
		t.Errorf("watch %+v, want one of 2 waiters", wt)
	}
	l.mu.Unlock()

	cancel()
	for _, ch := range errs {
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	}
	if got := waiting(&l.core); got != 1 {
		t.Fatalf("%d waiting, want 1", got)
	}
	l.Release(0, Ignore)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if got := l.InFlight(); got != 1 || len(l.watches) != 0 {
		t.Fatalf("in flight %d, %d watches; want 1 and none", got, len(l.watches))
	}
}

func TestGrantRacingWatchedCancelKeepsTheSlot(t *testing.T) {
	// A watched waiter granted a slot just before its context's watch
	// fires keeps the slot; the watch cancels only those still queued,
	// and no slot is lost.
	l, _ := NewFixed(1)
	_ = l.Acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := queue(t, l, ctx, watchDepth+2)
	l.mu.Lock()
	// Hand the held slot to the first watched waiter, out of order, as
	// wake does, then cancel: the watch's callback waits for the lock
	// behind the grant, and finds that waiter gone.
	w := l.def.tail.prev
	if w.watch == nil {
		t.Fatal("the waiter is not watched")
	}
	// The slot passes from the test to w, both of the default flow: the
	// counts of slots held do not change.
	l.def.remove(w)
	l.st.Add(minusWait)
	w.granted = true
	l.unwatch(w)
	w.ready <- struct{}{}
	cancel()
	l.mu.Unlock()
	for i, ch := range errs {
		err := <-ch
		if i == watchDepth {
			if err != nil {
				t.Fatalf("granted watched waiter: %v", err)
			}
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter %d: got %v, want context.Canceled", i, err)
		}
	}
	if got := l.InFlight(); got != 1 || waiting(&l.core) != 0 {
		t.Fatalf("in flight %d, waiting %d; want 1 and 0", got, waiting(&l.core))
	}
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	l, _ := NewFixed(1)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	l.Release(0, Success)
}

func TestFlowLookup(t *testing.T) {
	l, _ := NewFixed(10, Partitions(Partition{Name: "high", Share: 0.5}))
	f, err := l.Flow("high")
	if err != nil || f.Name() != "high" || f.Reserved() != 5 {
		t.Fatalf("Flow(high) = %v, %v", f, err)
	}
	if _, err := l.Flow("nope"); !errors.Is(err, ErrUnknownFlow) {
		t.Fatalf("got %v, want ErrUnknownFlow", err)
	}
}

func TestPartitionsReserveAndLend(t *testing.T) {
	// Limit 10: high reserves 5, low 3, the default flow the 2 left.
	l, _ := NewFixed(10, Partitions(Partition{Name: "high", Share: 0.5}, Partition{Name: "low", Share: 0.3}))
	high, _ := l.Flow("high")
	low, _ := l.Flow("low")

	// High is idle: low borrows all of its share and more.
	for range 10 {
		if !low.TryAcquire() {
			t.Fatal("low could not borrow idle share")
		}
	}
	if high.TryAcquire() {
		t.Fatal("the total went over the limit")
	}

	// High and low queue; freed slots go to high until it holds its
	// reserve, then by priority, so low gets none while high waits.
	served := make(chan string, 10)
	wait := func(f *Flow, n int) {
		for range n {
			go func() {
				if err := f.Acquire(context.Background()); err == nil {
					served <- f.Name()
				}
			}()
		}
	}
	wait(high, 6)
	waitFor(t, func() bool { return waiting(&l.core) == 6 })
	wait(low, 2)
	waitFor(t, func() bool { return waiting(&l.core) == 8 })
	var order []string
	for range 7 {
		low.Release(time.Millisecond, Success)
		order = append(order, <-served)
	}
	want := []string{"high", "high", "high", "high", "high", "high", "low"}
	if !slices.Equal(order, want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	if high.InFlight() != 6 || low.InFlight() != 4 {
		t.Fatalf("high %d low %d in flight, want 6 and 4", high.InFlight(), low.InFlight())
	}
	// One low waiter is left; drain everything.
	for range 6 {
		high.Release(time.Millisecond, Success)
	}
	if got := <-served; got != "low" {
		t.Fatalf("the last waiter served was %s, want low", got)
	}
	for range 5 {
		low.Release(time.Millisecond, Success)
	}
	if l.InFlight() != 0 {
		t.Fatalf("in flight %d after draining", l.InFlight())
	}
}

func TestPartitionedLowPriorityKeepsItsReserve(t *testing.T) {
	// Limit 10, high 0.5 and low 0.3, both saturating: freed slots go to
	// low until it holds its reserve of 3, and only then to high.
	l, _ := NewFixed(10, Partitions(Partition{Name: "high", Share: 0.5}, Partition{Name: "low", Share: 0.3}))
	high, _ := l.Flow("high")
	low, _ := l.Flow("low")
	for range 10 {
		high.TryAcquire()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	served := make(chan string, 10)
	for _, f := range []*Flow{low, high} {
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if f.Acquire(ctx) == nil {
					served <- f.Name()
				}
			}()
		}
	}
	waitFor(t, func() bool { return waiting(&l.core) == 10 })
	var order []string
	for range 7 {
		high.Release(time.Millisecond, Success)
		order = append(order, <-served)
	}
	want := []string{"low", "low", "low", "high", "high", "high", "high"}
	if !slices.Equal(order, want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	cancel()
	wg.Wait()
	if low.InFlight() != 3 || high.InFlight() != 7 || waiting(&l.core) != 0 {
		t.Fatalf("low %d high %d waiting %d, want 3, 7, 0", low.InFlight(), high.InFlight(), waiting(&l.core))
	}
}

func TestHistQuantileWithinResolution(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h hist
	xs := make([]float64, 10000)
	for i := range xs {
		xs[i] = float64(time.Duration(r.ExpFloat64() * float64(10*time.Millisecond)))
		h.add(time.Duration(xs[i]))
	}
	sort.Float64s(xs)
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
		want := xs[int(q*float64(len(xs)))]
		if got := h.quantile(q); got < want*0.96 || got > want*1.04 {
			t.Errorf("q%.2f = %.0f, want %.0f within 4%%", q, got, want)
		}
	}
	h.reset()
	if h.quantile(0.5) != 0 {
		t.Fatal("reset histogram not empty")
	}
	h.add(7)
	if got := h.quantile(0.5); got != 7 {
		t.Fatalf("small value %v, want exact 7", got)
	}
}

func waiting(c *core) int {
	_, w := unpack(c.st.Load())
	return int(w)
}

// waitFor polls cond until it holds, failing the test after 5s. It waits
// for goroutines to reach a blocking point, observed through the limiter's
// own state: no sleeping in place of synchronisation.
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
