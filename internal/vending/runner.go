package vending

import (
	"context"
	"errors"
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

// expireTimeout bounds what failing one tenant past its deadline may take
// (reading where its work stands in AWS, one registry write).
const expireTimeout = time.Minute

// swept are the states a sweep lists: the working ones, and ACTIVE for
// tenants behind their target release.
var swept = append(slices.Clone(working), registry.StateActive)

// Runner drives tenants continuously: every tenant named by Kick at once,
// and at each sweep every tenant in a working state and every ACTIVE
// tenant whose target release is not the one it runs (which is how work
// left by a crashed reconciler, or a kick that was lost, is picked up). In
// AWS the same happens in a Lambda fed by a queue and a one-minute schedule.
//
// The sweep also judges every tenant it lists against its state's deadline
// (Deadlines.Judge, from what the registry records), including those a
// Drive is waiting on: a tenant past it goes to FAILED with AWS's reason
// (Reconciler.Expire), and a Drive still waiting on it is stopped.
type Runner struct {
	r       *Reconciler
	workers int
	kicks   chan string

	mu       sync.Mutex
	inflight map[string]context.CancelFunc
	expiring map[string]bool
}

// NewRunner returns a runner with at most workers tenants in flight. It
// should exceed the create-account quota, so that tenants beyond the quota
// wait in the governor's queue (in order) rather than for a worker.
func NewRunner(r *Reconciler, workers int) *Runner {
	if workers <= 0 {
		workers = 64
	}
	return &Runner{r: r, workers: workers, kicks: make(chan string, 1024), inflight: map[string]context.CancelFunc{}, expiring: map[string]bool{}}
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
		if u.inflight[id] != nil {
			u.mu.Unlock()
			return
		}
		dctx, cancel := context.WithCancel(ctx)
		u.inflight[id] = cancel
		u.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.inflight, id)
				u.mu.Unlock()
				cancel()
			}()
			select {
			case sem <- struct{}{}:
			case <-dctx.Done():
				return
			}
			defer func() { <-sem }()
			if _, err := u.r.Drive(dctx, id); err != nil && dctx.Err() == nil {
				u.r.d.Log.WarnContext(ctx, "tenant not finished; the next sweep resumes it", "tenant", id, "error", err)
			}
		}()
	}
	// expire fails a tenant past its deadline, apart from the workers (a
	// few AWS reads and one write). The listing comes from an index, which
	// may lag: the verdict is confirmed on a consistent read first. A Drive
	// waiting on the tenant is then stopped: it is past its deadline, and
	// whatever Expire finds, the tenant is driven afresh if work is left.
	expire := func(listed *registry.Tenant) {
		id := listed.ID
		u.mu.Lock()
		if u.expiring[id] {
			u.mu.Unlock()
			return
		}
		u.expiring[id] = true
		u.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.expiring, id)
				u.mu.Unlock()
			}()
			ectx, cancel := context.WithTimeout(ctx, expireTimeout)
			defer cancel()
			t, err := u.r.d.Registry.Get(ectx, id)
			if err != nil {
				if ctx.Err() == nil {
					u.r.d.Log.WarnContext(ctx, "tenant past its deadline not read", "tenant", id, "error", err)
				}
				return
			}
			v := u.r.Judge(t)
			if !v.Overdue {
				start(id) // it moved meanwhile
				return
			}
			u.mu.Lock()
			if stop := u.inflight[id]; stop != nil {
				stop()
			}
			u.mu.Unlock()
			next, err := u.r.Expire(ectx, t, v)
			switch {
			case err != nil:
				// A lost race (the tenant moved meanwhile) or AWS unreachable:
				// the next sweep judges it again.
				if ctx.Err() == nil && !errors.Is(err, registry.ErrConflict) {
					u.r.d.Log.WarnContext(ctx, "tenant past its deadline not failed yet", "tenant", id, "error", err)
				}
			case next.State != registry.StateFailed:
				start(id) // AWS says the work is done: drive it on
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
					if u.r.Judge(t).Overdue {
						expire(t)
						continue
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
