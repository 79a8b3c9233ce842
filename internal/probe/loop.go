package probe

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Lister lists tenants by state, a page at a time (registry.Store).
type Lister interface {
	List(ctx context.Context, state registry.State, o registry.ListOptions) (*registry.Page, error)
}

// Serving reads every tenant that should be probed (ACTIVE or UPDATING)
// from the registry: Queries on the by-state index, never a Scan.
func Serving(ctx context.Context, l Lister) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	for _, st := range []registry.State{registry.StateActive, registry.StateUpdating} {
		cursor := ""
		for {
			page, err := l.List(ctx, st, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
			if err != nil {
				return nil, fmt.Errorf("read probe targets: %w", err)
			}
			out = append(out, page.Tenants...)
			if cursor = page.Next; cursor == "" {
				break
			}
		}
	}
	return out, nil
}

// Sweeper is one prober's whole job, the same in a Lambda invocation and in
// local mode: read the targets from the registry, keep its shard, probe
// them, record what changed.
type Sweeper struct {
	Registry interface {
		Lister
		Store
	}
	Prober   *Prober
	Recorder *Recorder
	// Shard and Shards select this sweeper's part of the fleet (0 of 1:
	// all of it).
	Shard, Shards int
	Log           *slog.Logger
}

// SweepStats summarises one sweep.
type SweepStats struct {
	Targets   int
	Up        int
	Degraded  int
	Down      int
	NotProbed int
	Took      time.Duration
	Record    RecordStats
}

// Once runs one sweep. It honours ctx's deadline: targets not probed in
// time are left without a verdict (and without a write).
func (s *Sweeper) Once(ctx context.Context) (SweepStats, error) {
	start := time.Now()
	tenants, err := Serving(ctx, s.Registry)
	if err != nil {
		return SweepStats{}, err
	}
	shards := max(s.Shards, 1)
	targets := Shard(Targets(tenants), s.Shard, shards)
	byID := make(map[string]*registry.Tenant, len(targets))
	for _, t := range tenants {
		byID[t.ID] = t
	}
	results := s.Prober.Sweep(ctx, targets)
	st := SweepStats{Targets: len(targets)}
	for _, r := range results {
		switch {
		case r.Class == ClassNotProbed:
			st.NotProbed++
		default:
			switch StatusOf(r) {
			case registry.HealthUp:
				st.Up++
			case registry.HealthDegraded:
				st.Degraded++
			default:
				st.Down++
			}
		}
	}
	// Recording gets its own short grace: a sweep that used the whole
	// deadline must still write what it found.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st.Record = s.Recorder.Record(rctx, byID, results)
	st.Took = time.Since(start)
	s.Log.InfoContext(ctx, "fleet sweep recorded", "shard", fmt.Sprintf("%d/%d", s.Shard, shards),
		"targets", st.Targets, "up", st.Up, "degraded", st.Degraded, "down", st.Down, "not_probed", st.NotProbed,
		"changes", st.Record.Changes, "heartbeats", st.Record.Heartbeats, "rollups", st.Record.Rollups, "took", st.Took)
	return st, nil
}

// Run sweeps every interval until ctx ends, each sweep bounded by the
// interval so sweeps never overlap, then flushes the open roll-ups.
func (s *Sweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, every)
		if _, err := s.Once(sctx); err != nil && ctx.Err() == nil {
			s.Log.WarnContext(ctx, "fleet sweep failed", "error", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := s.Recorder.Flush(fctx); err != nil {
				s.Log.WarnContext(ctx, "health roll-ups not flushed", "error", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}
