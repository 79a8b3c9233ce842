package rollout_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/registry"
)

// fleet is a local platform with 30 ACTIVE tenants, probed every 300ms.
type fleet struct {
	p   *local.Platform
	ids []string
	log *slog.Logger
}

const fleetSize = 30

func startFleet(t *testing.T) *fleet {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p, err := local.Start(ctx, local.Options{ProbeEvery: 3 * time.Second, ManualRollouts: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	f := &fleet{p: p, log: log}
	for i := range fleetSize {
		spec := registry.Spec{ID: fmt.Sprintf("t%02d", i), Name: fmt.Sprintf("Tenant %d", i), Email: fmt.Sprintf("t%02d@example.com", i),
			Tier: registry.TierStandard, Region: p.Info.Region}
		switch {
		case i < 3:
			spec.Tier = registry.TierBasic
		case i >= fleetSize-4:
			spec.Tier = registry.TierEnterprise
		}
		_, err := p.Registry.CreateWith(t.Context(), spec, "test", func(n *registry.Tenant) {
			if i >= 10 && i < 13 {
				n.Attributes = map[string]string{"ring": "canary"}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		p.Runner.Kick(spec.ID)
		f.ids = append(f.ids, spec.ID)
	}
	f.eventually(t, 4*time.Minute, "every tenant ACTIVE and up", func() (bool, error) {
		for _, id := range f.ids {
			tn, err := p.Registry.Get(t.Context(), id)
			if err != nil {
				return false, err
			}
			if tn.State == registry.StateFailed {
				return false, fmt.Errorf("tenant %s failed: %s", id, tn.Reason)
			}
			if tn.State != registry.StateActive || tn.Health == nil || tn.Health.Status != registry.HealthUp {
				return false, nil
			}
		}
		return true, nil
	})
	return f
}

func (f *fleet) eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, limit)
		case <-tick.C:
		}
	}
}

// publish makes a release of a build; a broken build has no bootstrap
// (Lambda cannot start it: Runtime.InvalidEntrypoint).
func (f *fleet) publish(t *testing.T, label string, broken bool) string {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	name := "bootstrap"
	if broken {
		name = "main" // the classic mistake: the binary not named bootstrap
	}
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "#!/bin/sh\necho %q\n", label)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	rel, err := f.p.Control.Releases().Publish(t.Context(), b.Bytes(), "test "+label)
	if err != nil {
		t.Fatal(err)
	}
	return rel.Version
}

// engine runs a rollout engine until ctx ends; the returned func waits for it.
func (f *fleet) engine(ctx context.Context) (*rollout.Engine, func()) {
	e := f.p.Control.NewRollouts(rollout.Config{Poll: 100 * time.Millisecond}, f.p.Runner.Kick, f.log)
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx) })
	return e, wg.Wait
}

func (f *fleet) waitFinal(t *testing.T, e *rollout.Engine, id string, limit time.Duration) (*registry.Rollout, []registry.RolloutTenant) {
	t.Helper()
	var r *registry.Rollout
	var ts []registry.RolloutTenant
	f.eventually(t, limit, "rollout "+id+" to end", func() (bool, error) {
		var err error
		r, ts, err = e.Get(t.Context(), id)
		return err == nil && r.State.Final(), err
	})
	return r, ts
}

// appVersion is what the tenant's app reports on /health, and its status.
func appVersion(t *testing.T, endpoint string) (int, string) {
	t.Helper()
	resp, err := http.Get(endpoint + "/health")
	if err != nil {
		t.Fatalf("GET %s/health: %v", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var h struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(body, &h)
	return resp.StatusCode, h.Version
}

func (f *fleet) tenant(t *testing.T, id string) *registry.Tenant {
	t.Helper()
	tn, err := f.p.Registry.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// rolloutEvents returns a tenant's audit events that name the rollout.
func (f *fleet) rolloutEvents(t *testing.T, tenant, rolloutID string) []registry.Event {
	t.Helper()
	evs, err := f.p.Registry.Events(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	var out []registry.Event
	for _, e := range evs {
		if e.Detail["rollout"] == rolloutID {
			out = append(out, e)
		}
	}
	return out
}

// TestRollouts runs three rollouts over one fleet of 30 tenants: a good
// release with a pinned tenant, a good release through an engine crash,
// and a broken release.
func TestRollouts(t *testing.T) {
	f := startFleet(t)
	base := f.tenant(t, f.ids[0]).AppVersion
	pinned := f.ids[5]
	var good2 string // the last release a rollout completed

	t.Run("good release in waves, pinned tenant left alone", func(t *testing.T) {
		ctx, stop := context.WithCancel(t.Context())
		e, wait := f.engine(ctx)
		defer func() { stop(); wait() }()
		if _, err := e.Pin(t.Context(), pinned, "", "operator:test"); err != nil {
			t.Fatal(err)
		}
		good := f.publish(t, "good-1", false)
		r, err := e.Start(t.Context(), rollout.StartRequest{Release: good, Plan: "canary:3,10%,50%,100%", Bake: time.Second,
			GateTimeout: 30 * time.Second, Selection: rollout.Selection{CanaryTag: "ring=canary", EnterpriseLast: true}, Actor: "operator:test"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Skipped["pinned"] != 1 || r.Tenants() != fleetSize-1 {
			t.Fatalf("plan: %d tenants, skipped %v; want %d and 1 pinned", r.Tenants(), r.Skipped, fleetSize-1)
		}
		r, recs := f.waitFinal(t, e, r.ID, 4*time.Minute)
		if r.State != registry.RolloutCompleted {
			t.Fatalf("rollout %s: %s", r.State, r.Reason)
		}
		// Waves in order: each started after the previous one's gate.
		var names []string
		for i, w := range r.Waves {
			names = append(names, fmt.Sprintf("%s:%d", w.Name, w.Tenants))
			if w.Phase != registry.WavePassed || w.Gate == nil || !w.Gate.Pass || w.Gate.Healthy != w.Tenants {
				t.Errorf("wave %s: phase %s gate %+v", w.Name, w.Phase, w.Gate)
				continue
			}
			if i > 0 && !w.StartedAt.After(r.Waves[i-1].Gate.At) {
				t.Errorf("wave %s started %s, before wave %s's gate at %s", w.Name, w.StartedAt, r.Waves[i-1].Name, r.Waves[i-1].Gate.At)
			}
		}
		if want := []string{"canary:3", "wave-2:0", "wave-3:12", "wave-4:14"}; !slices.Equal(names, want) && !slices.Equal(names, []string{"canary:3", "wave-3:12", "wave-4:14"}) {
			t.Errorf("waves %v", names)
		}
		for _, rec := range recs {
			w := r.Waves[rec.Wave]
			// Fresh: the verdict is from after the tenant's update, and the
			// gate decided after it.
			if rec.Status != registry.RTHealthy || rec.Health == nil || rec.UpdatedAt == nil ||
				rec.Health.CheckedAt.Before(*rec.UpdatedAt) || w.Gate.At.Before(rec.Health.CheckedAt) {
				t.Errorf("tenant %s (wave %s): %s, updated %v, health %+v, gate at %s", rec.TenantID, w.Name, rec.Status, rec.UpdatedAt, rec.Health, w.Gate.At)
			}
			tn := f.tenant(t, rec.TenantID)
			if rec.Wave == 0 && tn.Attributes["ring"] != "canary" {
				t.Errorf("canary wave has %s, not tagged ring=canary", tn.ID)
			}
			if tn.Tier == registry.TierEnterprise && rec.Wave != len(r.Waves)-1 {
				t.Errorf("enterprise tenant %s in wave %s, not the last", tn.ID, w.Name)
			}
			if code, v := appVersion(t, tn.Endpoint); tn.AppVersion != good || code != 200 || v != good {
				t.Errorf("tenant %s: registry %s, app answers %d on %q; want %s", tn.ID, tn.AppVersion, code, v, good)
			}
		}
		p := f.tenant(t, pinned)
		if p.AppVersion != base || len(f.rolloutEvents(t, pinned, r.ID)) != 0 {
			t.Errorf("pinned tenant: on %s (want %s), %d rollout events", p.AppVersion, base, len(f.rolloutEvents(t, pinned, r.ID)))
		}
		if code, v := appVersion(t, p.Endpoint); code != 200 || v != base {
			t.Errorf("pinned tenant's app answers %d on %q", code, v)
		}
	})

	t.Run("crash mid-wave resumes without updating a tenant twice", func(t *testing.T) {
		good2 = f.publish(t, "good-2", false)
		since := time.Now()
		ctx1, crash := context.WithCancel(t.Context())
		e1, wait1 := f.engine(ctx1)
		// The engine crashes in the middle of the 50% wave's StackSet
		// operation, after the third member stack has been updated.
		var wave3, updates atomic.Int64
		f.p.Proxy().SetHook(func(op awsx.Op, _ int64) error {
			if op.String() == "CloudFormation.UpdateStack" && wave3.Load() == 1 && updates.Add(1) == 3 {
				crash()
			}
			return nil
		})
		defer f.p.Proxy().SetHook(nil)
		r, err := e1.Start(t.Context(), rollout.StartRequest{Release: good2, Plan: "1,10%,50%,100%", Bake: 500 * time.Millisecond, GateTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		f.eventually(t, 2*time.Minute, "the 50% wave to start", func() (bool, error) {
			cur, err := f.p.Registry.GetRollout(t.Context(), r.ID)
			if err == nil && cur.Current == 2 {
				wave3.Store(1)
			}
			return err == nil && (cur.Current >= 2 || cur.State.Final()), err
		})
		wait1()
		if updates.Load() < 3 {
			t.Fatalf("the engine did not crash mid-wave (%d member updates seen)", updates.Load())
		}
		mid, err := f.p.Registry.GetRollout(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if mid.State.Final() || mid.Current != 2 || mid.Waves[2].Phase != registry.WaveDeploying {
			t.Fatalf("after the crash: %s, wave %d %s; want wave 3 deploying", mid.State, mid.Current+1, mid.Waves[mid.Current].Phase)
		}
		f.p.Proxy().SetHook(nil)

		ctx2, stop := context.WithCancel(t.Context())
		e2, wait2 := f.engine(ctx2)
		defer func() { stop(); wait2() }()
		r, recs := f.waitFinal(t, e2, r.ID, 4*time.Minute)
		if r.State != registry.RolloutCompleted {
			t.Fatalf("resumed rollout: %s: %s", r.State, r.Reason)
		}
		for _, rec := range recs {
			tn := f.tenant(t, rec.TenantID)
			if tn.AppVersion != good2 || rec.Status != registry.RTHealthy {
				t.Errorf("tenant %s: %s on %s", tn.ID, rec.Status, tn.AppVersion)
			}
			var starts int
			for _, ev := range f.rolloutEvents(t, tn.ID, r.ID) {
				if ev.To == registry.StateUpdating {
					starts++
				}
			}
			if starts != 1 {
				t.Errorf("tenant %s was put to UPDATING %d times in rollout %s", tn.ID, starts, r.ID)
			}
			if n := memberUpdates(t, f, tn, since); n != 1 {
				t.Errorf("tenant %s: its stack was updated %d times in the rollout, want once", tn.ID, n)
			}
		}
	})

	t.Run("broken release halts after the canary and rolls back", func(t *testing.T) {
		ctx, stop := context.WithCancel(t.Context())
		e, wait := f.engine(ctx)
		defer func() { stop(); wait() }()
		before := map[string]*registry.Tenant{}
		for _, id := range f.ids {
			before[id] = f.tenant(t, id)
		}
		bad := f.publish(t, "broken", true)
		r, err := e.Start(t.Context(), rollout.StartRequest{Release: bad, Plan: "canary:3,50%,100%", Bake: time.Second,
			GateTimeout: 20 * time.Second, Selection: rollout.Selection{CanaryTag: "ring=canary"}})
		if err != nil {
			t.Fatal(err)
		}
		r, recs := f.waitFinal(t, e, r.ID, 3*time.Minute)
		if r.State != registry.RolloutRolledBack || r.Current != 0 || r.Waves[0].Phase != registry.WaveHalted {
			t.Fatalf("rollout %s at wave %d (%s): %s", r.State, r.Current+1, r.Waves[r.Current].Phase, r.Reason)
		}
		g := r.Waves[0].Gate
		if g == nil || g.Pass || g.Unhealthy != 3 || !strings.Contains(g.Why, "502") {
			t.Errorf("canary gate: %+v", g)
		}
		for _, rec := range recs {
			tn := f.tenant(t, rec.TenantID)
			prev := before[rec.TenantID]
			if rec.Wave != 0 {
				// Never touched: same release, same record version, no events.
				if tn.AppVersion != prev.AppVersion || rec.Status != registry.RTPending || len(f.rolloutEvents(t, tn.ID, r.ID)) != 0 {
					t.Errorf("tenant %s outside the canary: %s on %s, %d rollout events", tn.ID, rec.Status, tn.AppVersion, len(f.rolloutEvents(t, tn.ID, r.ID)))
				}
				continue
			}
			if rec.Status != registry.RTRolledBack || tn.AppVersion != prev.AppVersion || tn.State != registry.StateActive {
				t.Errorf("canary %s: %s, %s on %s; want rolled back to %s", tn.ID, rec.Status, tn.State, tn.AppVersion, prev.AppVersion)
			}
			if rec.Health == nil || rec.Health.Status != registry.HealthUp {
				t.Errorf("canary %s after rollback: health %+v", tn.ID, rec.Health)
			}
			if code, v := appVersion(t, tn.Endpoint); code != 200 || v != prev.AppVersion {
				t.Errorf("canary %s's app answers %d on %q after the rollback", tn.ID, code, v)
			}
			types := map[string]string{}
			for _, ev := range f.rolloutEvents(t, tn.ID, r.ID) {
				types[ev.Type] = ev.Reason
			}
			if why := types["rollout.gate_failed"]; !strings.Contains(why, "502") || !strings.Contains(why, "halt and roll back") {
				t.Errorf("canary %s: gate event %q", tn.ID, why)
			}
			if why := types["rollout.rolled_back"]; !strings.Contains(why, prev.AppVersion) {
				t.Errorf("canary %s: rollback event %q", tn.ID, why)
			}
		}
	})
	t.Run("a tenant vended after the rollouts starts on the completed release", func(t *testing.T) {
		if good2 == "" {
			t.Fatal("no rollout completed before")
		}
		cur, err := f.p.Registry.CurrentRelease(t.Context())
		if err != nil || cur != good2 {
			t.Fatalf("current release %q (%v); want %s, the last completed rollout's, not the rolled-back one", cur, err, good2)
		}
		spec := registry.Spec{ID: "late", Name: "Late", Email: "late@example.com", Tier: registry.TierStandard, Region: f.p.Info.Region}
		if _, _, err := f.p.Registry.Create(t.Context(), spec, "", "test"); err != nil {
			t.Fatal(err)
		}
		f.p.Runner.Kick(spec.ID)
		f.eventually(t, 2*time.Minute, "the late tenant ACTIVE", func() (bool, error) {
			tn, err := f.p.Registry.Get(t.Context(), spec.ID)
			if err == nil && tn.State == registry.StateFailed {
				return false, fmt.Errorf("failed: %s", tn.Reason)
			}
			return err == nil && tn.State == registry.StateActive, err
		})
		if tn := f.tenant(t, spec.ID); tn.AppVersion != good2 {
			t.Errorf("the late tenant runs %s, want %s", tn.AppVersion, good2)
		}
	})
	t.Run("a tenant vended while a rollout ran is moved to its release when it completes", func(t *testing.T) {
		good3 := f.publish(t, "good-3", false)
		e := f.p.Control.NewRollouts(rollout.Config{Poll: 100 * time.Millisecond}, f.p.Runner.Kick, f.log)
		// Planned (not yet run) before the tenant is ACTIVE: it is not in the plan.
		r, err := e.Start(t.Context(), rollout.StartRequest{Release: good3, Plan: "100%", Bake: time.Second, GateTimeout: 30 * time.Second, Actor: "operator:test"})
		if err != nil {
			t.Fatal(err)
		}
		spec := registry.Spec{ID: "during", Name: "During", Email: "during@example.com", Tier: registry.TierStandard, Region: f.p.Info.Region}
		if _, _, err := f.p.Registry.Create(t.Context(), spec, "", "test"); err != nil {
			t.Fatal(err)
		}
		f.p.Runner.Kick(spec.ID)
		f.eventually(t, 2*time.Minute, "the tenant ACTIVE", func() (bool, error) {
			tn, err := f.p.Registry.Get(t.Context(), spec.ID)
			return err == nil && tn.State == registry.StateActive, err
		})
		if tn := f.tenant(t, spec.ID); tn.AppVersion != good2 {
			t.Fatalf("vended during the rollout on %s, want %s (the release before it)", tn.AppVersion, good2)
		}
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { e.Run(ctx) })
		defer func() { stop(); wg.Wait() }()
		if r, _ = f.waitFinal(t, e, r.ID, 4*time.Minute); r.State != registry.RolloutCompleted {
			t.Fatalf("rollout %s: %s", r.State, r.Reason)
		}
		f.eventually(t, 2*time.Minute, "the tenant on the rolled-out release", func() (bool, error) {
			tn, err := f.p.Registry.Get(t.Context(), spec.ID)
			return err == nil && tn.State == registry.StateActive && tn.AppVersion == good3, err
		})
		if p := f.tenant(t, pinned); p.AppVersion == good3 || p.TargetVersion == good3 {
			t.Errorf("the pinned tenant was moved: on %s, target %s", p.AppVersion, p.TargetVersion)
		}
	})
	t.Run("a tenant decommissioned after its update leaves the gate, without failing it", func(t *testing.T) {
		// A wave whose one tenant was updated, then decommissioned before
		// any probe: it will never be probed again. Before, the gate waited
		// its whole timeout for a verdict and then failed the rollout.
		cur, err := f.p.Registry.CurrentRelease(t.Context())
		if err != nil || cur == "" {
			t.Fatalf("current release %q: %v", cur, err)
		}
		gone := f.ids[7]
		tn := f.tenant(t, gone)
		// Its update just ended (the wave asks for a verdict from now on),
		// and the operator decommissions it at once.
		if _, err := f.p.Registry.Transition(t.Context(), tn, registry.StateDecommissioning, registry.Change{Actor: "operator:test", Reason: "the customer left",
			Mutate: func(n *registry.Tenant) {
				n.Attributes[registry.AttrProbeAfter] = time.Now().UTC().Format(time.RFC3339Nano)
			}}); err != nil {
			t.Fatal(err)
		}
		f.p.Runner.Kick(gone)
		past := time.Now().Add(-time.Minute)
		id := "ro-test-decommissioned"
		r := &registry.Rollout{ID: id, Release: cur, Plan: "100%", GateTimeout: time.Hour, CreatedBy: "test",
			Waves: []registry.Wave{{Name: "wave-1", Tenants: 1, Phase: registry.WaveGating, StartedAt: &past, DeployedAt: &past, MaxConcurrency: 1}}}
		if _, err := f.p.Registry.CreateRollout(t.Context(), r, []registry.RolloutTenant{
			{RolloutID: id, TenantID: gone, Tier: tn.Tier, From: tn.AppVersion, Status: registry.RTUpdated, UpdatedAt: &past},
		}); err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(t.Context())
		e, wait := f.engine(ctx)
		defer func() { stop(); wait() }()
		r, recs := f.waitFinal(t, e, id, time.Minute)
		if r.State != registry.RolloutCompleted || len(recs) != 1 || recs[0].Status != registry.RTSkipped {
			t.Fatalf("rollout %s (%s), records %+v; want completed, the tenant skipped", r.State, r.Reason, recs)
		}
		if g := r.Waves[0].Gate; g == nil || !g.Pass || g.Failures() != 0 {
			t.Errorf("gate %+v, want passed with no failures", g)
		}
	})
}

// memberUpdates counts the updates of the tenant's stack in its own account
// since a time: the stack's own UPDATE_COMPLETE events.
func memberUpdates(t *testing.T, f *fleet, tn *registry.Tenant, since time.Time) int {
	t.Helper()
	cfg := f.p.Control.Accounts.Config(tn.AccountID)
	cfg.Region = tn.Region
	name := "StackSet:" + f.p.Control.StackSets.StackSetName()
	p := cloudformation.NewDescribeStackEventsPaginator(cloudformation.NewFromConfig(cfg), &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("events of %s in %s: %v", name, tn.AccountID, err)
		}
		for _, ev := range page.StackEvents {
			if aws.ToString(ev.LogicalResourceId) == name && ev.ResourceStatus == cfntypes.ResourceStatusUpdateComplete && !ev.Timestamp.Before(since) {
				n++
			}
		}
	}
	return n
}
