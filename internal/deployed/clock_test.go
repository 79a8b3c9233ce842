package deployed

import (
	"context"
	"testing"
	"time"
)

// TestClockSteps: a waiter wakes when the clock is stepped past its time,
// the clock never goes back, and a faster clock reaches a time sooner in
// real time (checked by order, not by timing: the fast waiter is done
// while the slow one, due at the same virtual time, still waits).
func TestClockSteps(t *testing.T) {
	start := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	c := NewClock(start, 1)
	woke := make(chan error, 1)
	go func() { woke <- c.WaitUntil(t.Context(), start.Add(time.Hour)) }()
	select {
	case err := <-woke:
		t.Fatalf("woke before the clock reached the time: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Advance(61 * time.Minute)
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an advance past its time did not wake the waiter")
	}
	now := c.Now()
	c.Set(start)
	if c.Now().Before(now) {
		t.Errorf("Set to an earlier time moved the clock back to %s", c.Now())
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitUntil(ctx, c.Now().Add(time.Hour)); err == nil {
		t.Error("a cancelled wait returned no error")
	}

	slow, fast := NewClock(start, 1), NewClock(start, 1)
	fast.SetSpeed(3600) // an hour a second
	slowDone, fastDone := make(chan struct{}), make(chan struct{})
	go func() { _ = slow.WaitUntil(t.Context(), start.Add(10*time.Minute)); close(slowDone) }()
	go func() { _ = fast.WaitUntil(t.Context(), start.Add(10*time.Minute)); close(fastDone) }()
	select {
	case <-fastDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the fast clock did not reach ten minutes")
	}
	select {
	case <-slowDone:
		t.Error("a real-time clock reached ten minutes as soon as the fast one")
	default:
	}
}
