package local

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRestartCancelsInFlightWork: a restart cancels the running loop's
// context, waits until it has returned, and only then starts the next
// one; after the parent ends, restarts are refused and nothing runs.
func TestRestartCancelsInFlightWork(t *testing.T) {
	parent, stop := context.WithCancel(t.Context())
	var loops sync.WaitGroup
	var running, runs, cancelled atomic.Int32
	started := make(chan struct{}, 8)
	r := restartable{run: func(ctx context.Context) {
		if running.Add(1) != 1 {
			t.Error("two runs at once")
		}
		runs.Add(1)
		started <- struct{}{}
		<-ctx.Done() // in-flight work, until cancelled
		cancelled.Add(1)
		running.Add(-1)
	}}
	r.start(parent, &loops)
	<-started
	for range 3 {
		if err := r.restart(parent, &loops); err != nil {
			t.Fatal(err)
		}
		<-started
	}
	if runs.Load() != 4 || cancelled.Load() != 3 {
		t.Errorf("%d runs, %d cancelled; want 4 and 3", runs.Load(), cancelled.Load())
	}
	stop()
	loops.Wait()
	if err := r.restart(parent, &loops); !errors.Is(err, ErrClosed) {
		t.Errorf("restart after close: %v, want ErrClosed", err)
	}
	if running.Load() != 0 || cancelled.Load() != 4 {
		t.Errorf("after close: %d running, %d cancelled", running.Load(), cancelled.Load())
	}
}
