package api

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/issuer"
)

// securityDoc holds the authorization matrix TestAuthorizationMatrix enforces.
const securityDoc = "../../docs/security.md"

// The callers of the matrix, as its header names them.
const (
	callerAnonymous = "anonymous"
	callerEndUser   = "end-user token"
	callerStatus    = "status token"
	callerViewer    = "viewer"
	callerOperator  = "operator"
	callerAdmin     = "admin"
)

var matrixCallers = []string{callerAnonymous, callerEndUser, callerStatus, callerViewer, callerOperator, callerAdmin}

// matrixRow is one route of the documented matrix: allowed[caller].
type matrixRow struct {
	endpoint string // "POST /v1/tenants/{id}/suspend"
	allowed  map[string]bool
}

// parseMatrix reads the table under "## Authorization matrix": its header
// names the callers, each row a route and an allow/deny per caller.
func parseMatrix(doc []byte) ([]matrixRow, error) {
	sc := bufio.NewScanner(bytes.NewReader(doc))
	in, header := false, []string(nil)
	var rows []matrixRow
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			if in && header != nil {
				return rows, nil
			}
			in = line == "## Authorization matrix"
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			if header != nil {
				return rows, nil // the table ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		switch {
		case header == nil:
			header = cells
			if header[0] != "Route" {
				return nil, fmt.Errorf("line %d: the matrix's first column must be Route, got %q", n, header[0])
			}
			for _, c := range header[1:] {
				if !slices.Contains(matrixCallers, c) {
					return nil, fmt.Errorf("line %d: unknown caller column %q (callers: %q)", n, c, matrixCallers)
				}
			}
			for _, c := range matrixCallers {
				if !slices.Contains(header[1:], c) {
					return nil, fmt.Errorf("line %d: no column for caller %q", n, c)
				}
			}
			continue
		case strings.Trim(cells[0], "-: ") == "":
			continue // the separator row
		}
		if len(cells) != len(header) {
			return nil, fmt.Errorf("line %d: %d cells, the header has %d", n, len(cells), len(header))
		}
		method, path, ok := strings.Cut(cells[0], " ")
		if !ok || method != strings.ToUpper(method) || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("line %d: route %q is not \"METHOD /path\"", n, cells[0])
		}
		if seen[cells[0]] {
			return nil, fmt.Errorf("line %d: route %s twice", n, cells[0])
		}
		seen[cells[0]] = true
		row := matrixRow{endpoint: cells[0], allowed: map[string]bool{}}
		for i, c := range cells[1:] {
			switch c {
			case "allow":
				row.allowed[header[i+1]] = true
			case "deny":
				row.allowed[header[i+1]] = false
			default:
				return nil, fmt.Errorf("line %d: cell %q of %s is neither allow nor deny", n, c, header[i+1])
			}
		}
		rows = append(rows, row)
	}
	if header == nil {
		return nil, fmt.Errorf("no table under \"## Authorization matrix\"")
	}
	return rows, sc.Err()
}

// matrixRequest is what a route needs besides its path and a credential:
// a body, a query. Path parameters come from pathFor.
type matrixRequest struct {
	body  string
	query string // without "?"; {id} is filled as in the path
}

// matrixRequests are the bodies and queries of the routes that need one to
// get past their input checks. A new route that needs one adds an entry;
// one that does not needs none (an input error still shows the handler was
// reached).
func matrixRequests(t *testing.T) map[string]matrixRequest {
	zip := base64.StdEncoding.EncodeToString(zipOf(t, "bootstrap"))
	reason := matrixRequest{body: `{"reason":"authorization matrix"}`}
	return map[string]matrixRequest{
		"POST /v1/signup":                    {body: goodBody},
		"GET /v1/tenants":                    {query: "state=requested"},
		"GET /v1/resolve":                    {query: "tenant={id}"},
		"POST /v1/tenants/{id}/suspend":      reason,
		"POST /v1/tenants/{id}/resume":       reason,
		"POST /v1/tenants/{id}/retry":        reason,
		"POST /v1/tenants/{id}/redeploy":     reason,
		"POST /v1/tenants/{id}/decommission": reason,
		"POST /v1/previews":                  {body: `{"repo":"acme/web","pr":1,"artifact_zip":"` + zip + `","ttl":"2h"}`},
		"POST /v1/previews/{id}/extend":      {body: `{"by":"1h"}`},
		"POST /v1/releases":                  {body: `{"artifact_zip":"` + zip + `"}`},
		"POST /v1/rollouts":                  {body: `{"release":"rel-1","plan":"canary:1,100%"}`},
	}
}

// pathFor fills a pattern's parameters: a preview's or a rollout's {id}
// with one the fakes know, any other parameter with the tenant's id.
func pathFor(pattern, tenant string) string {
	id := tenant
	switch {
	case strings.HasPrefix(pattern, "/v1/previews/"):
		id = "pr1-web-abcdef"
	case strings.HasPrefix(pattern, "/v1/rollouts/"):
		id = "ro-1"
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(pattern, '{')
		end := strings.IndexByte(pattern, '}')
		if open < 0 || end < open {
			b.WriteString(pattern)
			return b.String()
		}
		b.WriteString(pattern[:open])
		b.WriteString(id)
		pattern = pattern[end+1:]
	}
}

// TestAuthorizationMatrix sends every documented route as every caller and
// holds the API to docs/security.md, and the doc to the API's routes.
func TestAuthorizationMatrix(t *testing.T) {
	doc, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parseMatrix(doc)
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
		documented = append(documented, r.endpoint)
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
	tokens := map[string]string{
		callerEndUser:  endUser,
		callerStatus:   tenant.StatusToken,
		callerViewer:   f.token(t, "matrix-viewer", RoleViewer),
		callerOperator: f.token(t, "matrix-operator", RoleOperator),
		callerAdmin:    f.token(t, "matrix-admin", RoleAdmin),
	}
	extras := matrixRequests(t)
	for _, row := range rows {
		method, pattern, _ := strings.Cut(row.endpoint, " ")
		x := extras[row.endpoint]
		path := pathFor(pattern, tenant.TenantID)
		if x.query != "" {
			path += "?" + strings.ReplaceAll(x.query, "{id}", tenant.TenantID)
		}
		for _, caller := range matrixCallers {
			header := map[string]string{"Content-Type": "application/json", IdempotencyKeyHeader: testKey("matrix-signup")}
			if tok := tokens[caller]; tok != "" {
				header["Authorization"] = "Bearer " + tok
			}
			r := f.do(t, req{method: method, path: path, body: x.body, header: header})
			what := fmt.Sprintf("%s %s as %s", method, path, caller)
			if row.allowed[caller] {
				checkReached(t, what, r)
			} else {
				checkDenied(t, what, r, caller == callerAnonymous)
			}
		}
	}

	// A status token opens its own tenant's status, not another's.
	r := f.do(t, req{method: "GET", path: "/v1/tenants/" + other.TenantID, header: map[string]string{"Authorization": "Bearer " + tenant.StatusToken}})
	checkDenied(t, "GET another tenant's status with a status token", r, false)
}

// checkReached fails unless r is an answer of the route's handler.
func checkReached(t *testing.T, what string, r resp) {
	t.Helper()
	switch {
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden || r.status == http.StatusMethodNotAllowed:
		t.Errorf("%s: %d %s, but the matrix allows it", what, r.status, r.body)
	case r.status >= 500:
		t.Errorf("%s: %d %s: an allowed call must reach its handler and not fail", what, r.status, r.body)
	case r.status == http.StatusNotFound && isRoutingMiss(r):
		t.Errorf("%s: the routing 404 (%s): no route serves it", what, r.body)
	}
}

// checkDenied fails unless r refuses the caller: 401 or 403, and 401 when
// anonymous.
func checkDenied(t *testing.T, what string, r resp, anonymous bool) {
	t.Helper()
	switch {
	case anonymous && r.status != http.StatusUnauthorized:
		t.Errorf("%s: %d %s, want 401 (the matrix denies it)", what, r.status, r.body)
	case r.status != http.StatusUnauthorized && r.status != http.StatusForbidden:
		t.Errorf("%s: %d %s, want 401 or 403 (the matrix denies it)", what, r.status, r.body)
	}
}

// isRoutingMiss reports whether r is errRoute's answer (no route matched),
// rather than a handler's 404 of something it looked for.
func isRoutingMiss(r resp) bool {
	var b ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		return false
	}
	return b.Error.Code == errRoute.code && b.Error.Message == errRoute.message
}
