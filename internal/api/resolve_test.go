package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// walk moves a tenant through states as the reconciler would; the move to
// ACTIVE records an endpoint and a DNS name.
func (f *fixture) walk(t testing.TB, id string, to ...registry.State) {
	t.Helper()
	tn, err := f.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range to {
		c := registry.Change{Actor: "reconciler"}
		if s == registry.StateActive {
			c.Mutate = func(n *registry.Tenant) {
				n.Endpoint = "https://api-" + id + ".example/v1/"
				if n.Attributes == nil {
					n.Attributes = map[string]string{}
				}
				n.Attributes[vending.AttrDNSName] = id + ".tenants.example"
			}
		}
		if tn, err = f.store.Transition(t.Context(), tn, s, c); err != nil {
			t.Fatal(err)
		}
	}
}

var toActive = []registry.State{registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying, registry.StateActive}

// userToken mints an end user's token of the tenant app for tenant.
func (f *fixture) userToken(t *testing.T, tenant string, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{"aud": issuer.DefaultAudience}
	for k, v := range extra {
		claims[k] = v
	}
	tok, err := f.iss.Mint(tenant, "user-1", time.Hour, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestResolve(t *testing.T) {
	f := newFixture(t, Options{})
	active := f.signup(t, "r-active", "Active Co").TenantID
	suspended := f.signup(t, "r-suspended", "Suspended Co").TenantID
	vended := f.signup(t, "r-vending", "Vending Co").TenantID
	closed := f.signup(t, "r-closed", "Closed Co").TenantID
	f.walk(t, active, toActive...)
	f.walk(t, suspended, append(toActive, registry.StateSuspended)...)
	f.walk(t, vended, registry.StateCreatingAccount, registry.StatePreparing)
	f.walk(t, closed, append(toActive, registry.StateDecommissioning, registry.StateClosed)...)

	want := ResolveView{ID: active, Endpoint: "https://api-" + active + ".example/v1/", DNSName: active + ".tenants.example", Region: "us-east-1", State: registry.StateActive}
	t.Run("by id, no token needed", func(t *testing.T) {
		r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=" + active})
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		if diff := cmp.Diff(want, decode[ResolveView](t, r)); diff != "" {
			t.Errorf("resolve (-want +got):\n%s", diff)
		}
	})
	t.Run("by id, one 404 for every tenant that does not serve", func(t *testing.T) {
		var bodies []string
		for _, id := range []string{"no-such-tenant", suspended, vended, closed, "NOT_AN_ID", ""} {
			r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=" + id})
			if r.status != http.StatusNotFound {
				t.Errorf("%q: status %d %s, want 404", id, r.status, r.body)
			}
			bodies = append(bodies, string(r.body))
		}
		for i, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("body %d differs from the unknown tenant's: %s vs %s", i+1, b, bodies[0])
			}
		}
	})
	t.Run("by user token", func(t *testing.T) {
		r := f.do(t, req{method: "GET", path: "/v1/resolve", header: bearerH(f.userToken(t, active, nil))})
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		if diff := cmp.Diff(want, decode[ResolveView](t, r)); diff != "" {
			t.Errorf("resolve (-want +got):\n%s", diff)
		}
	})
	expired, err := f.iss.Mint(active, "user-1", -time.Minute, map[string]any{"aud": issuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		header     map[string]string
		wantStatus int
		wantCode   string
	}{
		{"suspended tenant's user", bearerH(f.userToken(t, suspended, nil)), 403, CodeTenantSuspended},
		{"tenant still being vended", bearerH(f.userToken(t, vended, nil)), 409, CodeTenantNotReady},
		{"unknown tenant", bearerH(f.userToken(t, "ghost-co", nil)), 404, CodeNotFound},
		{"closed tenant", bearerH(f.userToken(t, closed, nil)), 404, CodeNotFound},
		{"operator token (admin)", bearerH(f.token(t, "ann", RoleAdmin)), 401, CodeUnauthorized},
		{"operator audience added to a user token", bearerH(f.userToken(t, active, map[string]any{"aud": []string{issuer.DefaultAudience, Audience}})), 401, CodeUnauthorized},
		{"user token without tenant claim", bearerH(f.userToken(t, "", nil)), 401, CodeUnauthorized},
		{"expired user token", bearerH(expired), 401, CodeUnauthorized},
		{"garbage token", bearerH("not.a.jwt"), 401, CodeUnauthorized},
		{"status token", bearerH(f.signup(t, "r-active", "Active Co").StatusToken), 401, CodeUnauthorized},
		{"neither form", nil, 400, CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, req{method: "GET", path: "/v1/resolve", header: tc.header})
			if r.status != tc.wantStatus || r.errorCode(t) != tc.wantCode {
				t.Errorf("status %d %s, want %d %s", r.status, r.body, tc.wantStatus, tc.wantCode)
			}
		})
	}
	if r := f.do(t, req{method: "POST", path: "/v1/resolve?tenant=" + active}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", r.status)
	}
}

func TestResolveWithoutUserTokens(t *testing.T) {
	f := newFixture(t, Options{})
	f.api.d.Users = nil
	id := f.signup(t, "r-nousers", "No Users Co").TenantID
	f.walk(t, id, toActive...)
	if r := f.do(t, req{method: "GET", path: "/v1/resolve", header: bearerH(f.userToken(t, id, nil))}); r.status != http.StatusNotImplemented || r.errorCode(t) != CodeNotConfigured {
		t.Errorf("token form without a verifier: %d %s, want 501 %s", r.status, r.body, CodeNotConfigured)
	}
	if r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=" + id}); r.status != http.StatusOK {
		t.Errorf("id form without a verifier: %d %s, want 200", r.status, r.body)
	}
}

func TestResolveRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The limiter is consulted first; every id, even an invalid one, costs
	// a registry read after it (TestResolveReadsAlike).
	f := newFixture(t, Options{ResolveRate: rate.Every(time.Second), ResolveBurst: 3})
	f.api.d.Now = func() time.Time { return now }
	for i := range 3 {
		if r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=X"}); r.status != http.StatusNotFound {
			t.Fatalf("request %d: %d %s, want 404", i, r.status, r.body)
		}
	}
	r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=X"})
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != CodeRateLimited || r.header.Get("Retry-After") != "1" {
		t.Errorf("fourth request: %d %s Retry-After %q, want 429 rate_limited 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	// Signups have their own budget: resolving does not spend it.
	if r := f.do(t, req{method: "POST", path: "/v1/signup", body: goodBody}); r.status == http.StatusTooManyRequests {
		t.Errorf("signup after resolves: %d, want its own limit", r.status)
	}
}
