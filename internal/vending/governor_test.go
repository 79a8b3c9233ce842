package vending

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFIFOServesInOrder(t *testing.T) {
	f := newFIFO(1)
	ctx := context.Background()
	if err := f.acquire(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.acquire(ctx, 0, nil); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			f.release()
		}()
		// Wait until waiter i is queued before starting the next.
		for {
			f.mu.Lock()
			n := f.waiters.Len()
			f.mu.Unlock()
			if n == i+1 {
				break
			}
			<-time.After(time.Millisecond)
		}
	}
	f.release()
	wg.Wait()
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, order); diff != "" {
		t.Errorf("served out of order (-want +got):\n%s", diff)
	}
}

func TestFIFOCancelledWaiterGivesWay(t *testing.T) {
	f := newFIFO(1)
	if err := f.acquire(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- f.acquire(ctx, 0, nil) }()
	for {
		f.mu.Lock()
		n := f.waiters.Len()
		f.mu.Unlock()
		if n == 1 {
			break
		}
		<-time.After(time.Millisecond)
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled acquire succeeded")
	}
	f.release()
	// The slot is free again, not lost to the cancelled waiter.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := f.acquire(ctx2, 0, nil); err != nil {
		t.Fatalf("slot lost: %v", err)
	}
}

func TestGovernorNeverExceedsCreateQuota(t *testing.T) {
	g := NewGovernor(Quotas{MaxCreateInProgress: 3, CreateRate: 1000, CreateBurst: 1000})
	var wg sync.WaitGroup
	var mu sync.Mutex
	held, peak := 0, 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.AcquireCreate(context.Background(), true); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			held++
			peak = max(peak, held)
			mu.Unlock()
			<-time.After(2 * time.Millisecond)
			mu.Lock()
			held--
			mu.Unlock()
			g.ReleaseCreate()
		}()
	}
	wg.Wait()
	if peak > 3 || g.PeakCreates() > 3 {
		t.Errorf("peak %d (governor says %d), quota 3", peak, g.PeakCreates())
	}
}

func TestClosureLimit(t *testing.T) {
	q := DefaultQuotas()
	for members, want := range map[int]int{0: 250, 1000: 250, 1250: 250, 2000: 400, 10000: 1000, 50000: 1000} {
		if got := q.ClosureLimit(members); got != want {
			t.Errorf("ClosureLimit(%d) = %d, want %d", members, got, want)
		}
	}
}

// TestFIFONotingWaiter: a waiter that records its wait (the reconciler's
// quota note) is told at once and then every interval, keeps its place in
// the queue meanwhile, and gives its place up when recording fails.
func TestFIFONotingWaiter(t *testing.T) {
	f := newFIFO(1)
	ctx := context.Background()
	if err := f.acquire(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ticks := 0
	got := make(chan error, 1)
	go func() {
		got <- f.acquire(ctx, 5*time.Millisecond, func(context.Context) error {
			mu.Lock()
			ticks++
			mu.Unlock()
			return nil
		})
	}()
	waitQueued(t, f, 1)
	// A second, plain waiter queues behind it.
	second := make(chan error, 1)
	go func() { second <- f.acquire(ctx, 0, nil) }()
	waitQueued(t, f, 2)
	for {
		mu.Lock()
		n := ticks
		mu.Unlock()
		if n >= 3 {
			break
		}
		<-time.After(time.Millisecond)
	}
	f.release()
	if err := <-got; err != nil {
		t.Fatalf("noting waiter: %v", err)
	}
	select {
	case err := <-second:
		t.Fatalf("the later waiter was served first (%v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.release()
	if err := <-second; err != nil {
		t.Fatal(err)
	}

	// A note that cannot be written gives the place up, and the unit is
	// not lost.
	refused := errors.New("registry refused the note")
	if err := f.acquire(ctx, time.Hour, func(context.Context) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("acquire with a failing note = %v, want %v", err, refused)
	}
	f.mu.Lock()
	queued := f.waiters.Len()
	f.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d waiters left queued after giving up", queued)
	}
	f.release()
	ctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := f.acquire(ctx2, 0, nil); err != nil {
		t.Fatalf("unit lost: %v", err)
	}
}

func waitQueued(t *testing.T, f *fifo, n int) {
	t.Helper()
	for range 5000 {
		f.mu.Lock()
		got := f.waiters.Len()
		f.mu.Unlock()
		if got == n {
			return
		}
		<-time.After(time.Millisecond)
	}
	t.Fatalf("never %d waiters queued", n)
}
