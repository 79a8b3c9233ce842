package api

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api/authzmatrix"
	"github.com/silo-saas/silo/internal/issuer"
)

// securityDoc holds the authorization matrix TestAuthorizationMatrix enforces.
const securityDoc = "../../docs/security.md"

// TestAuthorizationMatrix sends every documented route as every caller and
// holds the API to docs/security.md, and the doc to the API's routes. The
// same table holds the deployed API (internal/deployed) to it.
func TestAuthorizationMatrix(t *testing.T) {
	doc, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := authzmatrix.Parse(doc)
	if err != nil {
		t.Fatalf("%s: %v", securityDoc, err)
	}
	f := newFixture(t, Options{})
	f.api.d.Previews = &recordingPreviews{}
	f.api.d.Rollouts, f.api.d.Releases = &recordingRollouts{}, &recordingReleases{}
	f.api.d.Audits = &recordingAudits{}

	// Every route the API serves has a row, and every row a route.
	var documented []string
	for _, r := range rows {
		documented = append(documented, r.Endpoint)
	}
	slices.Sort(documented)
	served := f.api.Endpoints()
	for _, e := range served {
		if !slices.Contains(documented, e) {
			t.Errorf("route %s is served but has no row in the authorization matrix of %s", e, securityDoc)
		}
	}
	for _, e := range documented {
		if !slices.Contains(served, e) {
			t.Errorf("the authorization matrix of %s has a row for %s, which the API does not serve", securityDoc, e)
		}
	}

	tenant := f.signup(t, "matrix-tenant", "Matrix Co")
	other := f.signup(t, "matrix-other", "Other Co")
	endUser, err := f.iss.Mint(tenant.TenantID, "user-1", time.Hour, map[string]any{"aud": issuer.DefaultAudience, RoleClaim: string(RoleAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	authzmatrix.Check(t, rows, authzmatrix.Target{
		Do: func(t *testing.T, r authzmatrix.Request) authzmatrix.Response {
			got := f.do(t, req{method: r.Method, path: r.Path, body: r.Body, header: r.Header})
			return authzmatrix.Response{Status: got.status, Body: got.body}
		},
		Tokens: map[string]string{
			authzmatrix.EndUser:  endUser,
			authzmatrix.Status:   tenant.StatusToken,
			authzmatrix.Viewer:   f.token(t, "matrix-viewer", RoleViewer),
			authzmatrix.Operator: f.token(t, "matrix-operator", RoleOperator),
			authzmatrix.Admin:    f.token(t, "matrix-admin", RoleAdmin),
		},
		Tenant: tenant.TenantID, Other: other.TenantID,
		IdempotencyKey: func() string { return testKey("matrix-signup") },
		RoutingMiss:    [2]string{errRoute.code, errRoute.message},
	})
}
