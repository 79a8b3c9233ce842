package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

func bearerH(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
}

// activate walks a tenant to ACTIVE the way the reconciler would.
func (f *fixture) activate(t *testing.T, id string) {
	t.Helper()
	tn, err := f.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []registry.State{registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying, registry.StateActive} {
		if tn, err = f.store.Transition(t.Context(), tn, to, registry.Change{Actor: "reconciler"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.signup(t, "auth-a", "Tenant A")
	b := f.signup(t, "auth-b", "Tenant B")
	f.activate(t, a.TenantID)
	before := f.snapshot(t)

	mint := func(iss *issuer.Issuer, ttl time.Duration, extra map[string]any) string {
		tok, err := iss.Mint("", "alice", ttl, extra)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forger, err := issuer.New(testIssuer, issuer.Options{Audience: Audience, KeyID: f.iss.KeyID()})
	if err != nil {
		t.Fatal(err)
	}
	viewer := f.token(t, "vic", RoleViewer)
	operator := f.token(t, "olga", RoleOperator)
	tenantA := "/v1/tenants/" + a.TenantID
	reason := `{"reason":"test"}`
	tests := []struct {
		name       string
		method     string
		path       string
		token      string // "" for no Authorization header
		wantStatus int
		wantCode   string
	}{
		{"no token", "GET", tenantA, "", 401, CodeUnauthorized},
		{"not a bearer", "GET", tenantA, "-", 401, CodeUnauthorized},
		{"garbage token", "GET", tenantA, "abc.def.ghi", 401, CodeUnauthorized},
		{"expired token", "GET", tenantA, mint(f.iss, -time.Minute, map[string]any{RoleClaim: "admin"}), 401, CodeUnauthorized},
		{"wrong signature", "GET", tenantA, mint(forger, time.Hour, map[string]any{RoleClaim: "admin"}), 401, CodeUnauthorized},
		{"tenant app audience", "GET", tenantA, mint(f.iss, time.Hour, map[string]any{RoleClaim: "admin", "aud": issuer.DefaultAudience}), 401, CodeUnauthorized},
		{"other issuer", "GET", tenantA, mint(f.iss, time.Hour, map[string]any{RoleClaim: "admin", "iss": "https://evil.example"}), 401, CodeUnauthorized},
		{"no role", "GET", tenantA, mint(f.iss, time.Hour, nil), 401, CodeUnauthorized},
		{"unknown role", "GET", tenantA, mint(f.iss, time.Hour, map[string]any{RoleClaim: "root"}), 401, CodeUnauthorized},
		{"another tenant's status token", "GET", tenantA, b.StatusToken, 403, CodeForbidden},
		{"forged status token", "GET", tenantA, "sst1_" + strings.Repeat("A", 43), 403, CodeForbidden},
		{"status token on events", "GET", tenantA + "/events", a.StatusToken, 403, CodeForbidden},
		{"status token on list", "GET", "/v1/tenants?state=ACTIVE", a.StatusToken, 403, CodeForbidden},
		{"status token on an action", "POST", tenantA + "/suspend", a.StatusToken, 403, CodeForbidden},
		{"viewer suspends", "POST", tenantA + "/suspend", viewer, 403, CodeForbidden},
		{"viewer retries", "POST", tenantA + "/retry", viewer, 403, CodeForbidden},
		{"operator decommissions", "POST", tenantA + "/decommission", operator, 403, CodeForbidden},
		{"no token on list", "GET", "/v1/tenants?state=ACTIVE", "", 401, CodeUnauthorized},
		{"expired token on action", "POST", tenantA + "/suspend", mint(f.iss, -time.Minute, map[string]any{RoleClaim: "admin"}), 401, CodeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req{method: tc.method, path: tc.path, header: map[string]string{"Content-Type": "application/json"}}
			if tc.method == "POST" {
				r.body = reason
			}
			switch tc.token {
			case "":
			case "-":
				r.header["Authorization"] = "Basic dXNlcjpwYXNz"
			default:
				r.header["Authorization"] = "Bearer " + tc.token
			}
			got := f.do(t, r)
			if got.status != tc.wantStatus || got.errorCode(t) != tc.wantCode {
				t.Errorf("%d %s, want %d %s", got.status, got.body, tc.wantStatus, tc.wantCode)
			}
			if got.status == 401 && got.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("refused requests changed the registry (-before +after):\n%s", diff)
	}

	// The right credentials do work.
	for _, tok := range []string{a.StatusToken, viewer} {
		if r := f.do(t, req{method: "GET", path: tenantA, header: bearerH(tok)}); r.status != 200 {
			t.Errorf("GET with a good token: %d %s", r.status, r.body)
		}
	}
}

func TestOperatorActionsAreAudited(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.signup(t, "ops-1", "Ops Target").TenantID
	f.activate(t, id)
	operator := f.token(t, "olga", RoleOperator)
	admin := f.token(t, "ada", RoleAdmin)
	path := "/v1/tenants/" + id

	steps := []struct {
		name       string
		action     string
		token      string
		body       string
		wantStatus int
		wantCode   string
		wantState  registry.State
	}{
		{"suspend", "suspend", operator, `{"reason":"unpaid invoice"}`, 200, "", registry.StateSuspended},
		{"suspend twice", "suspend", operator, `{"reason":"again"}`, 409, CodeInvalidTransition, ""},
		{"reason missing", "resume", operator, `{}`, 422, CodeValidation, ""},
		{"blank reason", "resume", operator, `{"reason":"   "}`, 422, CodeValidation, ""},
		{"unknown field", "resume", operator, `{"reason":"x","force":true}`, 400, CodeInvalidJSON, ""},
		{"redeploy while suspended", "redeploy", operator, `{"reason":"new config"}`, 200, "", registry.StateSuspended},
		{"resume", "resume", operator, `{"reason":"paid"}`, 200, "", registry.StateActive},
		{"resume an active tenant", "resume", operator, `{"reason":"again"}`, 409, CodeInvalidTransition, ""},
		{"retry an active tenant", "retry", operator, `{"reason":"why not"}`, 409, CodeInvalidTransition, ""},
		{"unknown action", "explode", admin, `{"reason":"x"}`, 404, CodeNotFound, ""},
		{"decommission", "decommission", admin, `{"reason":"contract ended"}`, 200, "", registry.StateDecommissioning},
		{"redeploy while decommissioning", "redeploy", operator, `{"reason":"x"}`, 409, CodeInvalidTransition, ""},
	}
	for _, s := range steps {
		r := f.do(t, req{method: "POST", path: path + "/" + s.action, body: s.body, header: bearerH(s.token)})
		if r.status != s.wantStatus {
			t.Fatalf("%s: %d %s, want %d", s.name, r.status, r.body, s.wantStatus)
		}
		if s.wantCode != "" {
			if got := r.errorCode(t); got != s.wantCode {
				t.Errorf("%s: code %s, want %s", s.name, got, s.wantCode)
			}
			continue
		}
		if v := decode[TenantView](t, r); v.State != s.wantState {
			t.Errorf("%s: state %s, want %s", s.name, v.State, s.wantState)
		}
	}
	if diff := cmp.Diff([]string{id, id, id}, f.calls.Kicks()); diff != "" { // signup, redeploy, decommission
		t.Errorf("kicks (-want +got):\n%s", diff)
	}

	r := f.do(t, req{method: "GET", path: path + "/events", header: bearerH(f.token(t, "vic", RoleViewer))})
	if r.status != 200 {
		t.Fatalf("events: %d %s", r.status, r.body)
	}
	var got []registry.Event
	for _, e := range decode[EventList](t, r).Events {
		if strings.HasPrefix(e.Actor, "operator:") {
			got = append(got, e)
		}
	}
	want := []registry.Event{
		{TenantID: id, Type: "suspend", From: registry.StateActive, To: registry.StateSuspended, Actor: "operator:olga", Reason: "unpaid invoice"},
		{TenantID: id, Type: "redeploy", Actor: "operator:olga", Reason: "new config"},
		{TenantID: id, Type: "resume", From: registry.StateSuspended, To: registry.StateActive, Actor: "operator:olga", Reason: "paid"},
		{TenantID: id, Type: "decommission", From: registry.StateActive, To: registry.StateDecommissioning, Actor: "operator:ada", Reason: "contract ended"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(registry.Event{}, "Time", "Seq")); diff != "" {
		t.Errorf("audit events (-want +got):\n%s", diff)
	}
}

func TestRetryGoesThroughTheReconciler(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.signup(t, "retry-1", "Flaky").TenantID
	tn, err := f.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = f.store.Transition(t.Context(), tn, registry.StateCreatingAccount, registry.Change{Actor: "reconciler"}); err != nil {
		t.Fatal(err)
	}
	if _, err = f.store.Transition(t.Context(), tn, registry.StateFailed, registry.Change{Actor: "reconciler", Reason: "quota"}); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, req{method: "POST", path: "/v1/tenants/" + id + "/retry", body: `{"reason":"quota raised"}`, header: bearerH(f.token(t, "olga", RoleOperator))})
	if r.status != 200 {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if v := decode[TenantView](t, r); v.State != registry.StateCreatingAccount {
		t.Errorf("state after retry %s, want CREATING_ACCOUNT", v.State)
	}
	if diff := cmp.Diff([]string{id + " operator:olga quota raised"}, f.calls.retries); diff != "" {
		t.Errorf("retries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{id, id}, f.calls.Kicks()); diff != "" {
		t.Errorf("kicks (-want +got):\n%s", diff)
	}
}

func TestListTenants(t *testing.T) {
	f := newFixture(t, Options{})
	var ids []string
	for i := range 3 {
		ids = append(ids, f.signup(t, fmt.Sprintf("list-%d", i), fmt.Sprintf("List %d", i)).TenantID)
	}
	viewer := bearerH(f.token(t, "vic", RoleViewer))

	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		path := "/v1/tenants?state=requested&limit=2"
		if next != "" {
			path += "&cursor=" + next
		}
		r := f.do(t, req{method: "GET", path: path, header: viewer})
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		page := decode[TenantList](t, r)
		for _, tn := range page.Tenants {
			seen = append(seen, tn.ID)
		}
		if next = page.Next; next == "" {
			break
		}
	}
	if diff := cmp.Diff(ids, seen, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("listed (-want +got):\n%s", diff)
	}

	cursor := func() string {
		r := f.do(t, req{method: "GET", path: "/v1/tenants?state=REQUESTED&limit=1", header: viewer})
		return decode[TenantList](t, r).Next
	}()
	bad := []struct {
		name, query string
		wantCode    string
	}{
		{"no state", "", CodeInvalidRequest},
		{"unknown state", "?state=HAPPY", CodeInvalidRequest},
		{"limit not a number", "?state=ACTIVE&limit=ten", CodeInvalidRequest},
		{"limit zero", "?state=ACTIVE&limit=0", CodeInvalidRequest},
		{"limit too big", "?state=ACTIVE&limit=100000", CodeInvalidRequest},
		{"garbage cursor", "?state=REQUESTED&cursor=%21%21", CodeInvalidCursor},
		{"cursor of another state", "?state=ACTIVE&cursor=" + cursor, CodeInvalidCursor},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, req{method: "GET", path: "/v1/tenants" + tc.query, header: viewer})
			if r.status != 400 || r.errorCode(t) != tc.wantCode {
				t.Errorf("%d %s, want 400 %s", r.status, r.body, tc.wantCode)
			}
		})
	}

	for _, p := range []string{"/v1/tenants/no-such-tenant", "/v1/tenants/NOT_AN_ID", "/v1/tenants/no-such-tenant/events"} {
		if r := f.do(t, req{method: "GET", path: p, header: viewer}); r.status != 404 || r.errorCode(t) != CodeNotFound {
			t.Errorf("GET %s: %d %s, want 404", p, r.status, r.body)
		}
	}
	if r := f.do(t, req{method: "POST", path: "/v1/tenants/no-such-tenant/suspend", body: `{"reason":"x"}`, header: bearerH(f.token(t, "olga", RoleOperator))}); r.status != 404 {
		t.Errorf("suspend of a missing tenant: %d %s, want 404", r.status, r.body)
	}
}
