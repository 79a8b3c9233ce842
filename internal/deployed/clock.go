package deployed

import (
	"context"
	"sync"
	"time"
)

// Clock is the harness's time: when schedules fire, and when a failed
// SQS message is visible again. It runs at a speed (virtual seconds per
// real second) that a test can raise, and it can be stepped forward, so
// that a daily schedule or a 30-minute visibility timeout happens in a
// test's seconds. Everything else (function timeouts, API Gateway's
// integration timeout) is real time: it bounds real work.
type Clock struct {
	mu    sync.Mutex
	base  time.Time // virtual time at real
	real  time.Time
	speed float64
	// changed is closed (and replaced) whenever the clock jumps or
	// changes speed, so waiters recompute.
	changed chan struct{}
}

// NewClock returns a clock reading start now and running at speed
// (1 for real time; values below 1 are taken as 1).
func NewClock(start time.Time, speed float64) *Clock {
	return &Clock{base: start, real: time.Now(), speed: max(speed, 1), changed: make(chan struct{})}
}

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	return c.base.Add(time.Duration(float64(time.Since(c.real)) * c.speed))
}

// Speed is how many virtual seconds pass per real second.
func (c *Clock) Speed() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.speed
}

// SetSpeed changes the clock's speed from now on.
func (c *Clock) SetSpeed(speed float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.real, c.speed = c.nowLocked(), time.Now(), max(speed, 1)
	c.notifyLocked()
}

// Advance moves the clock forward by d at once: what was due meanwhile
// is due now.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.real = c.nowLocked().Add(max(d, 0)), time.Now()
	c.notifyLocked()
}

// Set moves the clock to t if t is later than now (time does not go
// back: a schedule that fired does not fire again).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.nowLocked(); t.After(now) {
		c.base, c.real = t, time.Now()
		c.notifyLocked()
	}
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitUntil returns when the clock reads t or later, or with ctx's error.
func (c *Clock) WaitUntil(ctx context.Context, t time.Time) error {
	for {
		c.mu.Lock()
		now, speed, changed := c.nowLocked(), c.speed, c.changed
		c.mu.Unlock()
		if !now.Before(t) {
			return nil
		}
		real := time.Duration(float64(t.Sub(now)) / speed)
		timer := time.NewTimer(max(real, time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}
