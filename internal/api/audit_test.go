package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

// recordingAudits stands in for the auditor (tested against the emulator
// in internal/audit): these tests are about the HTTP mapping, so it
// records the runs asked of it and answers as told.
type recordingAudits struct {
	mu      sync.Mutex
	runs    []audit.RunOptions
	reports map[string]*audit.Report
	err     error
}

func (r *recordingAudits) Run(_ context.Context, o audit.RunOptions) (*audit.Fleet, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, o)
	if r.err != nil {
		return nil, r.err
	}
	return sampleFleet(), nil
}

func (r *recordingAudits) Report(_ context.Context, id string) (*audit.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	rep, ok := r.reports[id]
	if !ok {
		return nil, fmt.Errorf("isolation report of %s: %w", id, registry.ErrNotFound)
	}
	return rep, nil
}

func (r *recordingAudits) Runs() []audit.RunOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

var auditAt = time.Date(2026, 12, 7, 3, 17, 0, 0, time.UTC)

func sampleReport(id string, st audit.Status) audit.Report {
	r := audit.Report{TenantID: id, AccountID: "111122223333", Region: "us-east-1", Status: st,
		StartedAt: auditAt, FinishedAt: auditAt.Add(4 * time.Second),
		Checks: []audit.Check{{Name: audit.CheckOU, Status: audit.StatusPass, Summary: "in ou-tenants"}}}
	if st == audit.StatusFail {
		r.Checks = append(r.Checks, audit.Check{Name: audit.CheckResourcePolicies, Status: audit.StatusFail, Summary: "1 statement grants outside the account",
			Evidence: []audit.Evidence{{Call: "policy statement", Target: "arn:aws:s3:::bucket-<b>x</b>", Expected: "account principals only", Outcome: "Principal 444455556666", OK: false}}})
	}
	return r
}

func sampleFleet() *audit.Fleet {
	return &audit.Fleet{StartedAt: auditAt, FinishedAt: auditAt.Add(time.Minute), Passed: 1, Failed: 1,
		Reports: []audit.Report{sampleReport("acme-1", audit.StatusPass), sampleReport("evil-2", audit.StatusFail)}}
}

func TestAuditRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	rec := &recordingAudits{reports: map[string]*audit.Report{"acme-1": new(sampleReport("acme-1", audit.StatusPass))}}
	f.api.d.Audits = rec
	viewer, operator, admin := f.token(t, "v", RoleViewer), f.token(t, "ci", RoleOperator), f.token(t, "root", RoleAdmin)
	as := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}
	many := `{"tenants":["` + strings.Repeat(`acme-1","`, MaxAuditTenants) + `acme-1"]}`

	for _, tc := range []struct {
		name   string
		r      req
		status int
		code   string
		fields []string
	}{
		{"run without a token", req{method: "POST", path: "/v1/audit/isolation"}, 401, CodeUnauthorized, nil},
		{"run as a viewer", req{method: "POST", path: "/v1/audit/isolation", header: as(viewer)}, 403, CodeForbidden, nil},
		{"report without a token", req{method: "GET", path: "/v1/tenants/acme-1/isolation"}, 401, CodeUnauthorized, nil},
		{"report as a viewer", req{method: "GET", path: "/v1/tenants/acme-1/isolation", header: as(viewer)}, 200, "", nil},
		{"report as an admin", req{method: "GET", path: "/v1/tenants/acme-1/isolation", header: as(admin)}, 200, "", nil},
		{"no report yet", req{method: "GET", path: "/v1/tenants/new-3/isolation", header: as(viewer)}, 404, CodeNotFound, nil},
		{"not a tenant id", req{method: "GET", path: "/v1/tenants/NOT_AN_ID/isolation", header: as(viewer)}, 404, CodeNotFound, nil},
		{"unknown field", req{method: "POST", path: "/v1/audit/isolation", body: `{"tenant":["acme-1"]}`, header: as(operator)}, 400, CodeInvalidJSON, nil},
		{"not JSON", req{method: "POST", path: "/v1/audit/isolation", body: `tenants=acme-1`, header: as(operator)}, 400, CodeInvalidJSON, nil},
		{"tenants not a list", req{method: "POST", path: "/v1/audit/isolation", body: `{"tenants":"acme-1"}`, header: as(operator)}, 400, CodeInvalidJSON, nil},
		{"bad tenant ids", req{method: "POST", path: "/v1/audit/isolation", body: `{"tenants":["acme-1","<b>x</b>","A"]}`, header: as(operator)},
			400, CodeInvalidRequest, []string{"tenants[1]", "tenants[2]"}},
		{"too many tenants", req{method: "POST", path: "/v1/audit/isolation", body: many, header: as(operator)}, 400, CodeInvalidRequest, []string{"tenants"}},
		{"run with GET", req{method: "GET", path: "/v1/audit/isolation", header: as(operator)}, 405, CodeMethodNotAllowed, nil},
		{"report with POST", req{method: "POST", path: "/v1/tenants/acme-1/isolation", body: `{}`, header: as(operator)}, 405, CodeMethodNotAllowed, nil},
		// The new GET route leaves the tenants' actions where they were.
		{"an action still routes", req{method: "POST", path: "/v1/tenants/ghost-1/suspend", body: `{"reason":"test"}`, header: as(operator)}, 404, CodeNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.r)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" && r.errorCode(t) != tc.code {
				t.Errorf("code %s, want %s: %s", r.errorCode(t), tc.code, r.body)
			}
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, r.errorFields(t)); diff != "" {
					t.Errorf("fields (-want +got):\n%s", diff)
				}
			}
		})
	}
	if runs := rec.Runs(); len(runs) != 0 {
		t.Fatalf("refused requests reached the auditor: %+v", runs)
	}

	t.Run("report", func(t *testing.T) {
		r := f.do(t, req{method: "GET", path: "/v1/tenants/acme-1/isolation", header: as(viewer)})
		if diff := cmp.Diff(sampleReport("acme-1", audit.StatusPass), decode[audit.Report](t, r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		r = f.do(t, req{method: "GET", path: "/v1/tenants/new-3/isolation", header: as(viewer)})
		if !strings.Contains(string(r.body), "no isolation report") {
			t.Errorf("404 says %s", r.body)
		}
	})

	t.Run("run", func(t *testing.T) {
		for _, body := range []string{"", `{}`, `{"tenants":[]}`, `{"tenants":["acme-1","evil-2","acme-1"]}`} {
			r := f.do(t, req{method: "POST", path: "/v1/audit/isolation", body: body, header: as(operator)})
			if r.status != http.StatusOK {
				t.Fatalf("body %q: %d %s", body, r.status, r.body)
			}
			if diff := cmp.Diff(*sampleFleet(), decode[audit.Fleet](t, r)); diff != "" {
				t.Errorf("body %q: the answer (-want +got):\n%s", body, diff)
			}
		}
		want := []audit.RunOptions{{Actor: "operator:ci"}, {Actor: "operator:ci"}, {Actor: "operator:ci"},
			{Tenants: []string{"acme-1", "evil-2"}, Actor: "operator:ci"}}
		if diff := cmp.Diff(want, rec.Runs()); diff != "" {
			t.Errorf("the auditor got (-want +got):\n%s", diff)
		}
	})

	// The auditor's errors map onto statuses; a 5xx never echoes them.
	for _, tc := range []struct {
		name   string
		err    error
		r      req
		status int
		code   string
		say    string
	}{
		{"run on an unknown tenant", fmt.Errorf("tenant %q: %w", "ghost-9", registry.ErrNotFound),
			req{method: "POST", path: "/v1/audit/isolation", body: `{"tenants":["ghost-9"]}`}, 404, CodeNotFound, "no such tenant"},
		{"run fails inside", fmt.Errorf("assume role in 444455556666: dial tcp: secret-host refused"),
			req{method: "POST", path: "/v1/audit/isolation"}, 500, CodeInternal, "request id"},
		{"report read fails inside", fmt.Errorf("get report: dial tcp: secret-host refused"),
			req{method: "GET", path: "/v1/tenants/acme-1/isolation"}, 500, CodeInternal, "request id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.mu.Lock()
			rec.err = tc.err
			rec.mu.Unlock()
			defer func() { rec.mu.Lock(); rec.err = nil; rec.mu.Unlock() }()
			tc.r.header = as(operator)
			r := f.do(t, tc.r)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if !strings.Contains(string(r.body), tc.say) || strings.Contains(string(r.body), "secret-host") {
				t.Errorf("the answer should say %q (and no internals): %s", tc.say, r.body)
			}
		})
	}
	if !strings.Contains(f.logs.String(), "secret-host") {
		t.Errorf("a 5xx's cause is not in the log:\n%s", f.logs.String())
	}
}

func TestAuditNotWired(t *testing.T) {
	f := newFixture(t, Options{})
	operator := f.token(t, "ci", RoleOperator)
	for _, r := range []req{
		{method: "POST", path: "/v1/audit/isolation", body: `{}`},
		{method: "GET", path: "/v1/tenants/acme-1/isolation"},
	} {
		r.header = map[string]string{"Authorization": "Bearer " + operator}
		got := f.do(t, r)
		if got.status != http.StatusNotFound || !strings.Contains(string(got.body), "not enabled on this API") {
			t.Errorf("%s %s: %d %s", r.method, r.path, got.status, got.body)
		}
	}
}

// TestAuditClient runs the client's methods against the API.
func TestAuditClient(t *testing.T) {
	f := newFixture(t, Options{})
	rec := &recordingAudits{reports: map[string]*audit.Report{"evil-2": new(sampleReport("evil-2", audit.StatusFail))}}
	f.api.d.Audits = rec
	srv := httptest.NewServer(f.api)
	defer srv.Close()
	c, err := NewClient(srv.URL, f.token(t, "ci", RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	fl, err := c.AuditIsolation(ctx, []string{"evil-2"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleFleet(), fl); diff != "" {
		t.Errorf("run (-want +got):\n%s", diff)
	}
	if _, err := c.AuditIsolation(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]audit.RunOptions{{Tenants: []string{"evil-2"}, Actor: "operator:ci"}, {Actor: "operator:ci"}}, rec.Runs()); diff != "" {
		t.Errorf("the auditor got (-want +got):\n%s", diff)
	}
	rep, err := c.IsolationReport(ctx, "evil-2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleReport("evil-2", audit.StatusFail), *rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	_, err = c.IsolationReport(ctx, "acme-1")
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusNotFound || ae.Code != CodeNotFound {
		t.Errorf("a missing report: %v", err)
	}
}

// TestAuditRunsElsewhere: an API whose audits run elsewhere (the API
// function in AWS, wired with audit.NewReader) serves the stored reports
// and answers a run 501 not_configured, saying where the audit runs.
func TestAuditRunsElsewhere(t *testing.T) {
	f := newFixture(t, Options{})
	f.api.d.Audits = audit.NewReader(f.store)
	want := sampleReport("acme-1", audit.StatusFail)
	if err := f.store.PutFleetReport(t.Context(), "acme-1", audit.ReportKind, want); err != nil {
		t.Fatal(err)
	}
	as := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	viewer, operator := f.token(t, "v", RoleViewer), f.token(t, "ci", RoleOperator)

	r := f.do(t, req{method: "GET", path: "/v1/tenants/acme-1/isolation", header: as(viewer)})
	if r.status != http.StatusOK {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	if diff := cmp.Diff(want, decode[audit.Report](t, r)); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if r := f.do(t, req{method: "GET", path: "/v1/tenants/new-3/isolation", header: as(viewer)}); r.status != http.StatusNotFound {
		t.Errorf("no report yet: %d %s", r.status, r.body)
	}
	for _, body := range []string{"", `{"tenants":["acme-1"]}`} {
		r := f.do(t, req{method: "POST", path: "/v1/audit/isolation", body: body, header: as(operator)})
		if r.status != http.StatusNotImplemented || r.errorCode(t) != CodeNotConfigured || !strings.Contains(string(r.body), "runs daily in the reconciler") {
			t.Errorf("run %q: %d %s, want 501 %s naming the reconciler", body, r.status, r.body, CodeNotConfigured)
		}
	}
	// Authorization still comes first.
	if r := f.do(t, req{method: "POST", path: "/v1/audit/isolation", header: as(viewer)}); r.status != http.StatusForbidden {
		t.Errorf("run as a viewer: %d %s", r.status, r.body)
	}
}
