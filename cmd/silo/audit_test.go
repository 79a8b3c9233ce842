package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
)

// auditAPI answers the audit routes with fleet and its reports, and
// records what was posted.
type auditAPI struct {
	mu     sync.Mutex
	fleet  audit.Fleet
	posted []string
}

func (s *auditAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost && r.URL.Path == "/v1/audit/isolation" {
		b, _ := io.ReadAll(r.Body)
		s.posted = append(s.posted, string(b))
		_ = json.NewEncoder(w).Encode(s.fleet)
		return
	}
	if id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/tenants/"), "/isolation"); ok && r.Method == http.MethodGet {
		for _, rep := range s.fleet.Reports {
			if rep.TenantID == id {
				_ = json.NewEncoder(w).Encode(rep)
				return
			}
		}
	}
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: "no isolation report for this tenant"}})
}

var auditStart = time.Date(2026, 12, 7, 3, 17, 0, 0, time.UTC)

func report(id, acct string, failing ...audit.Check) audit.Report {
	r := audit.Report{TenantID: id, AccountID: acct, Region: "us-east-1", Status: audit.StatusPass,
		StartedAt: auditStart, FinishedAt: auditStart.Add(3 * time.Second)}
	for _, n := range []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckCrossTenant} {
		c := audit.Check{Name: n, Status: audit.StatusPass, Summary: "fine",
			Evidence: []audit.Evidence{{Call: "looked", Outcome: "fine", OK: true}}}
		for _, f := range failing {
			if f.Name == n {
				c = f
				if r.Status == audit.StatusPass || f.Status == audit.StatusFail {
					r.Status = f.Status
				}
			}
		}
		r.Checks = append(r.Checks, c)
	}
	return r
}

func TestAuditIsolation(t *testing.T) {
	healthy := report("acme-1", "111111111111")
	broken := report("evil-2", "222222222222",
		audit.Check{Name: audit.CheckResourcePolicies, Status: audit.StatusFail, Summary: "the bucket policy grants 333333333333",
			Evidence: []audit.Evidence{
				{Call: "policy statement", Target: "arn:aws:s3:::b-evil-2", Expected: "principals of 222222222222", Outcome: "Principal arn:aws:iam::333333333333:root\x1b[2J\ttab", OK: false},
				{Call: "policy statement", Target: "arn:aws:s3:::b-evil-2/org", Expected: "the organization", Outcome: "aws:PrincipalOrgID", OK: true},
			}},
		audit.Check{Name: audit.CheckCrossTenant, Status: audit.StatusError, Summary: "the positive control was refused",
			Evidence: []audit.Evidence{{Call: "s3:GetObject", Target: "own bucket", Expected: "allowed", Outcome: "AccessDenied", OK: false}}})
	erred := report("gamma-3", "333333333333", audit.Check{Name: audit.CheckOU, Status: audit.StatusError, Summary: "DescribeAccount failed"})

	for _, tc := range []struct {
		name    string
		reports []audit.Report
		args    []string
		posted  string
		wantErr string
		want    []string
		notWant []string
	}{
		{
			name: "all pass", reports: []audit.Report{healthy},
			args:   []string{"audit", "isolation"},
			posted: `{}`,
			want: []string{
				"TENANT  ACCOUNT       STATUS  OU    GUARDRAILS  RESOURCE-POLICIES  CROSS-TENANT-PROBES",
				"acme-1  111111111111  pass    pass  pass        pass               pass",
				"audited 1 tenant in 1m0s: 1 passed, 0 failed, 0 errored",
			},
			notWant: []string{"acme-1 ou"},
		},
		{
			name: "one fails, one errs", reports: []audit.Report{healthy, broken, erred},
			args:    []string{"audit", "isolation", "--tenant", "acme-1", "--tenant", "evil-2", "--tenant", "gamma-3"},
			posted:  `{"tenants":["acme-1","evil-2","gamma-3"]}`,
			wantErr: "isolation audit: 2 of 3 tenants did not pass (1 failed, 1 errored)",
			want: []string{
				"evil-2   222222222222  FAIL    pass   pass        FAIL               ERROR",
				"gamma-3  333333333333  ERROR   ERROR  pass        pass               pass",
				"evil-2 resource-policies: FAIL: the bucket policy grants 333333333333\n" +
					`  - policy statement arn:aws:s3:::b-evil-2: expected principals of 222222222222, got Principal arn:aws:iam::333333333333:root\u001b[2J\u0009tab` + "\n\n" +
					"evil-2 cross-tenant-probes: ERROR: the positive control was refused\n" +
					"  - s3:GetObject own bucket: expected allowed, got AccessDenied\n",
				"gamma-3 ou: ERROR: DescribeAccount failed\n",
				"audited 3 tenants in 1m0s: 1 passed, 1 failed, 1 errored",
			},
			// Only the failing evidence, and no raw escape from the account.
			notWant: []string{"aws:PrincipalOrgID", "\x1b", "acme-1 ou"},
		},
		{
			name: "nothing to audit", args: []string{"audit", "isolation"}, posted: `{}`,
			want: []string{"no tenant to audit"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &auditAPI{fleet: audit.Fleet{StartedAt: auditStart, FinishedAt: auditStart.Add(time.Minute), Reports: tc.reports}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			out, stderr, err := run(t, srv.URL, tc.args...)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, stderr)
			}
			if _, ok := err.(usageError); ok {
				t.Errorf("a verdict is not a usage error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the output lacks\n%s\nin:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("the output has %q:\n%s", w, out)
				}
			}
			if diff := cmp.Diff([]string{tc.posted}, s.posted, cmp.Transformer("trim", strings.TrimSpace)); diff != "" {
				t.Errorf("posted (-want +got):\n%s", diff)
			}

			// --json: the whole run, exiting the same way.
			out, _, jerr := run(t, srv.URL, append(tc.args, "--json")...)
			if (jerr == nil) != (err == nil) {
				t.Errorf("--json exits with %v, the table with %v", jerr, err)
			}
			var got audit.Fleet
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("--json: %v\n%s", err, out)
			}
			if diff := cmp.Diff(s.fleet, got); diff != "" {
				t.Errorf("--json (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuditShow(t *testing.T) {
	s := &auditAPI{fleet: audit.Fleet{Reports: []audit.Report{report("evil-2", "222222222222",
		audit.Check{Name: audit.CheckGuardrails, Status: audit.StatusFail, Summary: "SCP deny-leave is not attached",
			Evidence: []audit.Evidence{{Call: "organizations:ListPoliciesForTarget", Target: "222222222222", Expected: "deny-leave", Outcome: "absent"}}})}}}
	srv := httptest.NewServer(s)
	defer srv.Close()

	out, _, err := run(t, srv.URL, "audit", "show", "evil-2")
	if err != nil {
		t.Fatalf("a failing report is still shown without error: %v", err)
	}
	for _, want := range []string{
		"tenant   evil-2\naccount  222222222222 (us-east-1)\nstatus   FAIL\n",
		"CHECK                STATUS  SUMMARY\nou                   pass    fine\nguardrails           FAIL    SCP deny-leave is not attached\n",
		"evil-2 guardrails: FAIL: SCP deny-leave is not attached\n  - organizations:ListPoliciesForTarget 222222222222: expected deny-leave, got absent\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks\n%s\nin:\n%s", want, out)
		}
	}
	out, _, err = run(t, srv.URL, "audit", "show", "evil-2", "--json")
	var got audit.Report
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Status != audit.StatusFail || len(got.Checks) != 4 {
		t.Errorf("--json: %v %s", err, out)
	}
	_, _, err = run(t, srv.URL, "audit", "show", "new-4")
	if ae, ok := err.(*api.Error); !ok || ae.Status != http.StatusNotFound {
		t.Errorf("no report: %v", err)
	}
}

func TestAuditUsage(t *testing.T) {
	s := &auditAPI{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, args := range [][]string{
		{"audit", "isolation", "acme-1"},
		{"audit", "isolation", "--tenant", "Not_An_Id"},
		{"audit", "show"},
		{"audit", "show", "a-1", "b-2"},
		{"audit", "isolation", "--tenants", "acme-1"},
	} {
		_, _, err := run(t, srv.URL, args...)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: %v is not a usage error", args, err)
		}
	}
	if len(s.posted) != 0 {
		t.Errorf("a bad command line reached the API: %q", s.posted)
	}
}
