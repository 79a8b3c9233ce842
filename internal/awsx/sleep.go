package awsx

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done (returning its error): the one way
// silo waits between polls and retries of AWS operations, so that every
// wait ends with its caller's context.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
