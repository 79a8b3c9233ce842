package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// TestRunnerSweepsTenantsBehindTarget: an ACTIVE tenant whose target
// release differs from the one it runs, and whose kick was lost, is
// updated by the runner's next sweep. Before, sweeps looked only at
// working states, and such a tenant stayed behind its target forever.
func TestRunnerSweepsTenantsBehindTarget(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := wire(t, local.ControlOptions{})
	signup(t, c, "behind")
	if tn, err := c.Reconciler.Drive(ctx, "behind"); err != nil || tn.State != registry.StateActive {
		t.Fatalf("drive: %+v, %v", tn, err)
	}
	code, err := lambdazip.Pack([]byte("#!/bin/sh\necho v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := c.Releases().Publish(ctx, code, "test")
	if err != nil {
		t.Fatal(err)
	}
	// The target moves with no kick (the kick was lost).
	tn, err := c.Registry.Get(ctx, "behind")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.Update(ctx, tn, registry.Change{Actor: "test", Type: "retargeted",
		Mutate: func(n *registry.Tenant) { n.TargetVersion = rel.Version }}); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = vending.NewRunner(c.Reconciler, 4).Run(runCtx, 100*time.Millisecond) })
	defer func() { stop(); wg.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		tn, err := c.Registry.Get(ctx, "behind")
		if err != nil {
			t.Fatal(err)
		}
		if tn.State == registry.StateActive && tn.AppVersion == rel.Version {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tenant still %s on %s, target %s: the sweep never picked it up", tn.State, tn.AppVersion, tn.TargetVersion)
		case <-tick.C:
		}
	}
}
