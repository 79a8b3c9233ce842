package vending

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/silo-saas/silo/registry"
)

// working states are the ones the reconciler has work to do in.
var working = []registry.State{
	registry.StateRequested, registry.StateCreatingAccount, registry.StatePreparing,
	registry.StateDeploying, registry.StateUpdating, registry.StateDecommissioning,
}

// swept are the states a sweep lists: the working ones, and ACTIVE for
// tenants behind their target release.
var swept = append(slices.Clone(working), registry.StateActive)

// Runner drives tenants continuously: every tenant named by Kick at once,
// and at each sweep every tenant in a working state and every ACTIVE
// tenant whose target release is not the one it runs (which is how work
// left by a crashed reconciler, or a kick that was lost, is picked up). In AWS the same happens in a
// Lambda fed by a queue and a one-minute schedule.
type Runner struct {
	r       *Reconciler
	workers int
	kicks   chan string

	mu       sync.Mutex
	inflight map[string]bool
}

// NewRunner returns a runner with at most workers tenants in flight. It
// should exceed the create-account quota, so that tenants beyond the quota
// wait in the governor's queue (in order) rather than for a worker.
func NewRunner(r *Reconciler, workers int) *Runner {
	if workers <= 0 {
		workers = 64
	}
	return &Runner{r: r, workers: workers, kicks: make(chan string, 1024), inflight: map[string]bool{}}
}

// Kick asks for a tenant to be driven now. It never blocks; a kick that
// does not fit is picked up by the next sweep.
func (u *Runner) Kick(id string) {
	select {
	case u.kicks <- id:
	default:
	}
}

// Run drives tenants until ctx ends, sweeping every interval. It waits for
// every tenant it started before it returns.
func (u *Runner) Run(ctx context.Context, every time.Duration) error {
	sem := make(chan struct{}, u.workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(id string) {
		u.mu.Lock()
		if u.inflight[id] {
			u.mu.Unlock()
			return
		}
		u.inflight[id] = true
		u.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.inflight, id)
				u.mu.Unlock()
			}()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if _, err := u.r.Drive(ctx, id); err != nil && ctx.Err() == nil {
				u.r.d.Log.WarnContext(ctx, "tenant not finished; the next sweep resumes it", "tenant", id, "error", err)
			}
		}()
	}
	sweep := func() {
		for _, st := range swept {
			cursor := ""
			for {
				page, err := u.r.d.Registry.List(ctx, st, registry.ListOptions{Cursor: cursor, Limit: registry.MaxPageSize})
				if err != nil {
					if ctx.Err() == nil {
						u.r.d.Log.WarnContext(ctx, "sweep failed", "state", st, "error", err)
					}
					return
				}
				for _, t := range page.Tenants {
					if st == registry.StateActive && (t.TargetVersion == "" || t.TargetVersion == t.AppVersion) {
						continue // settled
					}
					start(t.ID)
				}
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	sweep()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id := <-u.kicks:
			start(id)
		case <-tick.C:
			sweep()
		}
	}
}
