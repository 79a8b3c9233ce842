package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/registry"
)

// TestTenantViewsJudgeDeadlines: tenant views (one tenant, and a listing)
// say how long each tenant has been in its state, its state's deadline,
// whether it is past it, its last step error and its quota note, from what
// the registry records (a record written before those fields existed
// included).
func TestTenantViewsJudgeDeadlines(t *testing.T) {
	f := newFixture(t, Options{})
	now := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	f.api.d.Now = func() time.Time { return now }
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	ptr := func(t time.Time) *time.Time { return &t }
	spec := func(id string) registry.Spec {
		return registry.Spec{ID: id, Name: "Tenant " + id, Email: id + "@example.com", Tier: registry.TierStandard, Region: "us-east-1"}
	}
	if err := f.store.ImportTenants(t.Context(), []*registry.Tenant{
		{Spec: spec("stuck"), State: registry.StateDeploying, AccountID: "111122223333",
			StateSince: ago(2 * time.Hour), ProgressAt: ago(45 * time.Minute), LastError: "the stack has no ApiUrl output", LastErrorAt: ptr(ago(40 * time.Minute)),
			CreatedAt: ago(3 * time.Hour), UpdatedAt: ago(time.Minute)},
		{Spec: spec("moving"), State: registry.StateDeploying, AccountID: "111122224444",
			StateSince: ago(10 * time.Minute), ProgressAt: ago(10 * time.Minute), CreatedAt: ago(time.Hour), UpdatedAt: ago(10 * time.Minute)},
		{Spec: spec("queued"), State: registry.StateCreatingAccount,
			StateSince: ago(2 * time.Hour), ProgressAt: ago(2 * time.Hour), Waiting: "create-account slot: 5 of 5 requests in progress", WaitingUntil: ptr(now.Add(time.Minute)),
			CreatedAt: ago(2 * time.Hour), UpdatedAt: ago(time.Minute)},
		{Spec: spec("vintage"), State: registry.StateUpdating, AccountID: "111122225555",
			CreatedAt: ago(24 * time.Hour), UpdatedAt: ago(40 * time.Minute)},
		{Spec: spec("resting"), State: registry.StateFailed, FailedFrom: registry.StatePreparing, Reason: "no progress in PREPARING for 31m0s (deadline 30m0s): …",
			StateSince: ago(5 * time.Hour), ProgressAt: ago(5 * time.Hour), CreatedAt: ago(6 * time.Hour), UpdatedAt: ago(5 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	type judged struct {
		State                       registry.State
		FailedFrom                  registry.State
		StateSince                  time.Time
		InState, Deadline           string
		DueAt                       *time.Time
		Overdue                     bool
		LastError, Waiting          string
		HasLastErrorAt, HasWaitTill bool
	}
	of := func(v TenantView) judged {
		return judged{v.State, v.FailedFrom, v.StateSince.UTC(), v.InState, v.Deadline, utcPtr(v.DueAt), v.Overdue, v.LastError, v.Waiting,
			v.LastErrorAt != nil, v.WaitingUntil != nil}
	}
	want := map[string]judged{
		"stuck": {State: registry.StateDeploying, StateSince: ago(2 * time.Hour), InState: "2h0m0s", Deadline: "30m0s", DueAt: ptr(ago(15 * time.Minute)), Overdue: true,
			LastError: "the stack has no ApiUrl output", HasLastErrorAt: true},
		"moving": {State: registry.StateDeploying, StateSince: ago(10 * time.Minute), InState: "10m0s", Deadline: "30m0s", DueAt: ptr(now.Add(20 * time.Minute))},
		"queued": {State: registry.StateCreatingAccount, StateSince: ago(2 * time.Hour), InState: "2h0m0s", Deadline: "30m0s",
			Waiting: "create-account slot: 5 of 5 requests in progress", HasWaitTill: true},
		// Written before the fields existed: judged from its last update.
		"vintage": {State: registry.StateUpdating, StateSince: ago(40 * time.Minute), InState: "40m0s", Deadline: "30m0s", DueAt: ptr(ago(10 * time.Minute)), Overdue: true},
		"resting": {State: registry.StateFailed, FailedFrom: registry.StatePreparing, StateSince: ago(5 * time.Hour), InState: "5h0m0s"},
	}
	viewer := f.token(t, "vic", RoleViewer)
	for id, w := range want {
		t.Run("get "+id, func(t *testing.T) {
			r := f.do(t, req{method: "GET", path: "/v1/tenants/" + id, header: bearerH(viewer)})
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if diff := cmp.Diff(w, of(decode[TenantView](t, r))); diff != "" {
				t.Errorf("view (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("list", func(t *testing.T) {
		r := f.do(t, req{method: "GET", path: "/v1/tenants?state=DEPLOYING", header: bearerH(viewer)})
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got := map[string]judged{}
		for _, v := range decode[TenantList](t, r).Tenants {
			got[v.ID] = of(v)
		}
		if diff := cmp.Diff(map[string]judged{"stuck": want["stuck"], "moving": want["moving"]}, got); diff != "" {
			t.Errorf("listing (-want +got):\n%s", diff)
		}
	})
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
