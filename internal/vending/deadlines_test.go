package vending

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/registry"
)

func TestJudge(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	ptr := func(t time.Time) *time.Time { return &t }
	d := DefaultDeadlines()
	tenant := func(kind registry.Kind, st registry.State, mutate func(*registry.Tenant)) *registry.Tenant {
		t := &registry.Tenant{Spec: registry.Spec{ID: "acme", Kind: kind}, State: st,
			CreatedAt: ago(3 * time.Hour), UpdatedAt: ago(time.Minute)}
		if mutate != nil {
			mutate(t)
		}
		return t
	}
	progress := func(since, progress time.Duration) func(*registry.Tenant) {
		return func(t *registry.Tenant) { t.StateSince, t.ProgressAt = ago(since), ago(progress) }
	}
	cases := []struct {
		name string
		t    *registry.Tenant
		want Verdict
	}{
		{"ACTIVE rests", tenant(registry.KindTenant, registry.StateActive, progress(5*time.Hour, 5*time.Hour)),
			Verdict{State: registry.StateActive, Since: ago(5 * time.Hour), Progress: ago(5 * time.Hour)}},
		{"FAILED rests", tenant(registry.KindTenant, registry.StateFailed, progress(2*time.Hour, 2*time.Hour)),
			Verdict{State: registry.StateFailed, Since: ago(2 * time.Hour), Progress: ago(2 * time.Hour)}},
		{"DEPLOYING within its deadline", tenant(registry.KindTenant, registry.StateDeploying, progress(20*time.Minute, 10*time.Minute)),
			Verdict{State: registry.StateDeploying, Limit: 30 * time.Minute, Since: ago(20 * time.Minute), Progress: ago(10 * time.Minute),
				Idle: 10 * time.Minute, Due: now.Add(20 * time.Minute)}},
		{"DEPLOYING exactly at its deadline is not past it", tenant(registry.KindTenant, registry.StateDeploying, progress(30*time.Minute, 30*time.Minute)),
			Verdict{State: registry.StateDeploying, Limit: 30 * time.Minute, Since: ago(30 * time.Minute), Progress: ago(30 * time.Minute),
				Idle: 30 * time.Minute, Due: now}},
		{"DEPLOYING past its deadline", tenant(registry.KindTenant, registry.StateDeploying, progress(50*time.Minute, 31*time.Minute)),
			Verdict{State: registry.StateDeploying, Limit: 30 * time.Minute, Since: ago(50 * time.Minute), Progress: ago(31 * time.Minute),
				Idle: 31 * time.Minute, Due: ago(time.Minute), Overdue: true}},
		{"progress long after entering keeps it in time", tenant(registry.KindTenant, registry.StateDecommissioning, progress(5*time.Hour, 50*time.Minute)),
			Verdict{State: registry.StateDecommissioning, Limit: time.Hour, Since: ago(5 * time.Hour), Progress: ago(50 * time.Minute),
				Idle: 50 * time.Minute, Due: now.Add(10 * time.Minute)}},
		{"a record without the fields is judged from its last update", tenant(registry.KindTenant, registry.StatePreparing, func(t *registry.Tenant) {
			t.UpdatedAt = ago(40 * time.Minute)
		}), Verdict{State: registry.StatePreparing, Limit: 30 * time.Minute, Since: ago(40 * time.Minute), Progress: ago(40 * time.Minute),
			Idle: 40 * time.Minute, Due: ago(10 * time.Minute), Overdue: true}},
		{"a record without the fields, updated lately, has time", tenant(registry.KindTenant, registry.StatePreparing, func(t *registry.Tenant) {
			t.UpdatedAt = ago(5 * time.Minute)
		}), Verdict{State: registry.StatePreparing, Limit: 30 * time.Minute, Since: ago(5 * time.Minute), Progress: ago(5 * time.Minute),
			Idle: 5 * time.Minute, Due: now.Add(25 * time.Minute)}},
		{"StateSince without ProgressAt", tenant(registry.KindTenant, registry.StateRequested, func(t *registry.Tenant) {
			t.StateSince = ago(16 * time.Minute)
		}), Verdict{State: registry.StateRequested, Limit: 15 * time.Minute, Since: ago(16 * time.Minute), Progress: ago(16 * time.Minute),
			Idle: 16 * time.Minute, Due: ago(time.Minute), Overdue: true}},
		{"a live quota note stops the clock", tenant(registry.KindTenant, registry.StateCreatingAccount, func(t *registry.Tenant) {
			t.StateSince, t.ProgressAt = ago(2*time.Hour), ago(2*time.Hour)
			t.Waiting, t.WaitingUntil = "create-account slot: 5 of 5 requests in progress", ptr(now.Add(time.Minute))
		}), Verdict{State: registry.StateCreatingAccount, Limit: 30 * time.Minute, Since: ago(2 * time.Hour), Progress: ago(2 * time.Hour),
			Waiting: "create-account slot: 5 of 5 requests in progress"}},
		{"after a note ran out the clock runs from its end", tenant(registry.KindTenant, registry.StateCreatingAccount, func(t *registry.Tenant) {
			t.StateSince, t.ProgressAt = ago(2*time.Hour), ago(2*time.Hour)
			t.Waiting, t.WaitingUntil = "create-account slot", ptr(ago(10*time.Minute))
		}), Verdict{State: registry.StateCreatingAccount, Limit: 30 * time.Minute, Since: ago(2 * time.Hour), Progress: ago(10 * time.Minute),
			Idle: 10 * time.Minute, Due: now.Add(20 * time.Minute)}},
		{"a note that ran out long ago", tenant(registry.KindTenant, registry.StateDecommissioning, func(t *registry.Tenant) {
			t.StateSince, t.ProgressAt = ago(3*time.Hour), ago(3*time.Hour)
			t.Waiting, t.WaitingUntil = "account closure quota", ptr(ago(61*time.Minute))
		}), Verdict{State: registry.StateDecommissioning, Limit: time.Hour, Since: ago(3 * time.Hour), Progress: ago(61 * time.Minute),
			Idle: 61 * time.Minute, Due: ago(time.Minute), Overdue: true}},
		{"a note older than the progress is history", tenant(registry.KindTenant, registry.StateDeploying, func(t *registry.Tenant) {
			t.StateSince, t.ProgressAt = ago(40*time.Minute), ago(35*time.Minute)
			t.Waiting, t.WaitingUntil = "stack set", ptr(ago(39*time.Minute))
		}), Verdict{State: registry.StateDeploying, Limit: 30 * time.Minute, Since: ago(40 * time.Minute), Progress: ago(35 * time.Minute),
			Idle: 35 * time.Minute, Due: ago(5 * time.Minute), Overdue: true}},
		{"a parked preview is the pool's to judge", tenant(registry.KindPreview, registry.StateRequested, progress(5*time.Hour, 5*time.Hour)),
			Verdict{State: registry.StateRequested, Since: ago(5 * time.Hour), Progress: ago(5 * time.Hour)}},
		{"a preview has its own deadlines", tenant(registry.KindPreview, registry.StateDeploying, func(t *registry.Tenant) {
			t.AccountID = "111122223333"
			t.StateSince, t.ProgressAt = ago(25*time.Minute), ago(25*time.Minute)
		}), Verdict{State: registry.StateDeploying, Limit: 20 * time.Minute, Since: ago(25 * time.Minute), Progress: ago(25 * time.Minute),
			Idle: 25 * time.Minute, Due: ago(5 * time.Minute), Overdue: true}},
		{"a preview without its own deadline takes the tenant's", tenant(registry.KindPreview, registry.StateCreatingAccount, func(t *registry.Tenant) {
			t.AccountID = "111122223333"
			t.StateSince, t.ProgressAt = ago(25*time.Minute), ago(25*time.Minute)
		}), Verdict{State: registry.StateCreatingAccount, Limit: 30 * time.Minute, Since: ago(25 * time.Minute), Progress: ago(25 * time.Minute),
			Idle: 25 * time.Minute, Due: now.Add(5 * time.Minute)}},
		{"a pool account's record", tenant(registry.KindPool, registry.StatePreparing, progress(31*time.Minute, 31*time.Minute)),
			Verdict{State: registry.StatePreparing, Limit: 30 * time.Minute, Since: ago(31 * time.Minute), Progress: ago(31 * time.Minute),
				Idle: 31 * time.Minute, Due: ago(time.Minute), Overdue: true}},
		{"a rollout's tenant is the rollout's to judge", tenant(registry.KindTenant, registry.StateUpdating, func(t *registry.Tenant) {
			t.StateSince, t.ProgressAt = ago(5*time.Hour), ago(5*time.Hour)
			t.Attributes = map[string]string{registry.AttrRollout: "r-1"}
		}), Verdict{State: registry.StateUpdating, Since: ago(5 * time.Hour), Progress: ago(5 * time.Hour)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, d.Judge(c.t, now)); diff != "" {
				t.Errorf("Judge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeadlinesWithDefaults(t *testing.T) {
	def := DefaultDeadlines()
	cases := []struct {
		name string
		in   Deadlines
		kind registry.Kind
		st   registry.State
		want time.Duration
	}{
		{"tenant default", Deadlines{}, registry.KindTenant, registry.StateDeploying, def.Tenant.Deploying},
		{"tenant set", Deadlines{Tenant: StateDeadlines{Deploying: time.Second}}, registry.KindTenant, registry.StateDeploying, time.Second},
		{"preview default of its own", Deadlines{Tenant: StateDeadlines{Deploying: time.Second}}, registry.KindPreview, registry.StateDeploying, def.Preview.Deploying},
		{"preview with none of its own takes the tenant's", Deadlines{Tenant: StateDeadlines{Requested: time.Second}}, registry.KindPreview, registry.StateRequested, time.Second},
		{"preview set", Deadlines{Preview: StateDeadlines{Deploying: 2 * time.Second}}, registry.KindPreview, registry.StateDeploying, 2 * time.Second},
		{"pool takes the tenant's", Deadlines{Tenant: StateDeadlines{Preparing: 3 * time.Second}}, registry.KindPool, registry.StatePreparing, 3 * time.Second},
		{"resting state has none", Deadlines{}, registry.KindTenant, registry.StateActive, 0},
		{"an empty kind is a customer tenant", Deadlines{}, "", registry.StateUpdating, def.Tenant.Updating},
		{"scaled", DefaultDeadlines().Scaled(0.001), registry.KindTenant, registry.StateDecommissioning, 3600 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.in.WithDefaults().For(c.kind, c.st); got != c.want {
				t.Errorf("For(%s, %s) = %s, want %s", c.kind, c.st, got, c.want)
			}
		})
	}
	if got := (Deadlines{}).WithDefaults(); got.QuotaNote != def.QuotaNote || got.PoolResetting != def.PoolResetting {
		t.Errorf("WithDefaults: quota note %s, pool resetting %s", got.QuotaNote, got.PoolResetting)
	}
}

// TestWatchedFrom: idle time from before the judging reconciler started
// does not count; a tenant it has watched long enough is still overdue.
func TestWatchedFrom(t *testing.T) {
	d := Deadlines{}.WithDefaults()
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	deploying := &registry.Tenant{Spec: registry.Spec{ID: "t", Kind: registry.KindTenant}, State: registry.StateDeploying,
		StateSince: now.Add(-2 * time.Hour), ProgressAt: now.Add(-2 * time.Hour)}
	limit := d.For(registry.KindTenant, registry.StateDeploying)
	if !d.Judge(deploying, now).Overdue {
		t.Fatal("a tenant idle for two hours in DEPLOYING is not overdue: the cases below prove nothing")
	}
	for _, c := range []struct {
		name    string
		started time.Duration // before now
		overdue bool
		idle    time.Duration
	}{
		{"reconciler started 10m ago", 10 * time.Minute, false, 10 * time.Minute},
		{"reconciler started just past the deadline ago", limit + time.Minute, true, limit + time.Minute},
		{"reconciler older than the progress", 3 * time.Hour, true, 2 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := d.Judge(deploying, now).WatchedFrom(now.Add(-c.started), now)
			if v.Overdue != c.overdue || v.Idle != c.idle {
				t.Errorf("overdue %v idle %s, want %v %s", v.Overdue, v.Idle, c.overdue, c.idle)
			}
			if want := now.Add(-c.idle).Add(limit); !v.Due.Equal(want) {
				t.Errorf("due %s, want %s", v.Due, want)
			}
		})
	}
	// Nothing to judge stays so.
	active := &registry.Tenant{Spec: registry.Spec{ID: "t", Kind: registry.KindTenant}, State: registry.StateActive, StateSince: now.Add(-2 * time.Hour)}
	if v := d.Judge(active, now).WatchedFrom(now.Add(-time.Minute), now); v.Overdue || !v.Due.IsZero() {
		t.Errorf("an ACTIVE tenant judged: %+v", v)
	}
}
