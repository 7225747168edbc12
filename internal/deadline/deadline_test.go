package deadline_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/deadline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Done never closed", what)
	}
}

// TestBehavesLikeWithDeadline checks each way a deadline context ends
// against context.WithDeadline's contract.
func TestBehavesLikeWithDeadline(t *testing.T) {
	t.Run("deadline passes", func(t *testing.T) {
		d := time.Now().Add(20 * time.Millisecond)
		ctx := deadline.New(context.Background(), d)
		defer ctx.Cancel()
		if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
			t.Fatalf("Deadline() = %v, %t", got, ok)
		}
		if ctx.Err() != nil {
			t.Fatalf("Err before the deadline: %v", ctx.Err())
		}
		waitDone(t, ctx, "deadline")
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err = %v", ctx.Err())
		}
	})
	t.Run("deadline passes, nobody waits", func(t *testing.T) {
		ctx := deadline.New(context.Background(), time.Now().Add(-time.Millisecond))
		defer ctx.Cancel()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err = %v", ctx.Err())
		}
	})
	t.Run("parent cancelled", func(t *testing.T) {
		parent, stop := context.WithCancel(context.Background())
		ctx := deadline.New(parent, time.Now().Add(time.Hour))
		defer ctx.Cancel()
		stop()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("Err before Done = %v", ctx.Err())
		}
		waitDone(t, ctx, "parent cancel")
	})
	t.Run("cancelled before Done", func(t *testing.T) {
		ctx := deadline.New(context.Background(), time.Now().Add(time.Hour))
		ctx.Cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("Err = %v", ctx.Err())
		}
		waitDone(t, ctx, "cancel before Done")
	})
	t.Run("cancelled after Done", func(t *testing.T) {
		ctx := deadline.New(context.Background(), time.Now().Add(time.Hour))
		done := ctx.Done()
		ctx.Cancel()
		waitDone(t, ctx, "cancel after Done")
		if done != ctx.Done() {
			t.Fatal("Done returned different channels")
		}
	})
	t.Run("earlier parent deadline wins", func(t *testing.T) {
		parent, stop := context.WithTimeout(context.Background(), time.Minute)
		defer stop()
		if ctx := deadline.New(parent, time.Now().Add(time.Hour)); ctx != nil {
			t.Fatal("New made a context although the parent's deadline is earlier")
		}
	})
	t.Run("nested: cancelling the outer ends the inner", func(t *testing.T) {
		outer := deadline.New(context.Background(), time.Now().Add(time.Hour))
		inner := deadline.New(outer, time.Now().Add(time.Minute))
		defer inner.Cancel()
		outer.Cancel()
		if !errors.Is(inner.Err(), context.Canceled) {
			t.Fatalf("inner Err = %v", inner.Err())
		}
		waitDone(t, inner, "outer cancel")
	})
	t.Run("values come from the parent", func(t *testing.T) {
		type key struct{}
		ctx := deadline.New(context.WithValue(context.Background(), key{}, "v"), time.Now().Add(time.Hour))
		defer ctx.Cancel()
		if ctx.Value(key{}) != "v" {
			t.Fatal("value lost")
		}
	})
	t.Run("children of a deadline context", func(t *testing.T) {
		ctx := deadline.New(context.Background(), time.Now().Add(20*time.Millisecond))
		defer ctx.Cancel()
		child, stop := context.WithCancel(ctx)
		defer stop()
		waitDone(t, child, "child at the parent's deadline")
	})
}

// TestNew checks New: nil where the parent's deadline will do, one
// allocation otherwise, and a Cancel that may be called twice.
func TestNew(t *testing.T) {
	parent, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if c := deadline.New(parent, time.Now().Add(time.Hour)); c != nil {
		t.Fatal("New made a context although the parent's deadline is earlier")
	}
	d := time.Now().Add(time.Second)
	c := deadline.New(parent, d)
	if got, ok := c.Deadline(); !ok || !got.Equal(d) {
		t.Fatalf("Deadline() = %v, %t", got, ok)
	}
	c.Cancel()
	c.Cancel()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v", c.Err())
	}
	waitDone(t, c, "cancelled twice")
	if n := testing.AllocsPerRun(100, func() {
		c := deadline.New(parent, d)
		_ = c.Err()
		c.Cancel()
	}); n != 1 {
		t.Fatalf("New, Err, Cancel: %v allocations, want 1", n)
	}
}

// TestNestedDoneStartsNoGoroutine: waiting on a deadline context inside
// another (the guards' inside the pipeline's) hangs its timer on the outer
// one's real context; context would otherwise start a goroutine per wait to
// watch the outer one.
func TestNestedDoneStartsNoGoroutine(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	outer := deadline.New(parent, time.Now().Add(time.Hour))
	defer outer.Cancel()
	before := runtime.NumGoroutine()
	var inners []*deadline.Ctx
	for range 10 {
		inner := deadline.New(outer, time.Now().Add(time.Minute))
		_ = inner.Done()
		inners = append(inners, inner)
	}
	if n := runtime.NumGoroutine() - before; n > 0 {
		t.Errorf("waiting on 10 nested deadline contexts started %d goroutines", n)
	}
	for _, inner := range inners {
		inner.Cancel()
		waitDone(t, inner, "inner cancelled")
	}
	outer.Cancel()
	inner := deadline.New(outer, time.Now().Add(time.Minute))
	defer inner.Cancel()
	waitDone(t, inner, "inner of a cancelled outer")
	if !errors.Is(inner.Err(), context.Canceled) {
		t.Fatalf("inner of a cancelled outer: Err = %v", inner.Err())
	}
}

// TestCancelRacesDone calls cancel and Done concurrently: the context must
// end whichever wins.
func TestCancelRacesDone(t *testing.T) {
	for range 2000 {
		ctx := deadline.New(context.Background(), time.Now().Add(time.Hour))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); ctx.Cancel() }()
		var done <-chan struct{}
		go func() { defer wg.Done(); done = ctx.Done() }()
		wg.Wait()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("cancelled context never done")
		}
	}
}

// BenchmarkWith compares a deadline nobody waits on with
// context.WithDeadline, in the same run.
func BenchmarkWith(b *testing.B) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	d := time.Now().Add(time.Hour)
	b.Run("context.WithDeadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithDeadline(parent, d)
			_ = ctx.Err()
			cancel()
		}
	})
	b.Run("deadline.New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := deadline.New(parent, d)
			_ = c.Err()
			c.Cancel()
		}
	})
}

func TestSleep(t *testing.T) {
	if err := deadline.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("full wait: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := deadline.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if err := deadline.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("zero wait on a cancelled context: %v", err)
	}
}
