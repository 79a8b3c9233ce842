package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

// TestDemoAudit gives the demo's tenants their isolation reports: an
// ACTIVE tenant that does not pass, or that has no report, is a problem
// (the demo exits 1); a FAILED tenant is not audited. The summary shows a
// verdict and the checks passed per audited tenant.
func TestDemoAudit(t *testing.T) {
	broken := report("evil-2", "222222222222",
		audit.Check{Name: audit.CheckResourcePolicies, Status: audit.StatusFail, Summary: "the bucket policy grants 333333333333"})
	fl := &audit.Fleet{Reports: []audit.Report{report("acme-1", "111111111111"), broken}}
	tenant := func(id string, st registry.State) *demoResult {
		return &demoResult{Tenant: &api.TenantView{ID: id, State: st}}
	}
	results := []*demoResult{
		tenant("acme-1", registry.StateActive),
		tenant("evil-2", registry.StateActive),
		tenant("lost-3", registry.StateActive),
		tenant("gone-4", registry.StateFailed),
	}
	results[3].Problems = []string{"not ACTIVE: quota"}
	applyAudit(results, fl)

	got := map[string][]string{}
	for _, r := range results {
		got[r.Tenant.ID] = r.Problems
	}
	want := map[string][]string{
		"acme-1": nil,
		"evil-2": {"isolation audit: fail (resource-policies)"},
		"lost-3": {"no isolation report"},
		"gone-4": {"not ACTIVE: quota"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	if n := demoFailures(results); n != 3 {
		t.Errorf("demoFailures = %d, want 3", n)
	}
	if results[3].Audit != nil {
		t.Error("a FAILED tenant got a report")
	}

	var out strings.Builder
	printDemoAudit(&out, results)
	wantText := `
isolation audit (silo audit isolation, 3s):
TENANT  VERDICT  CHECKS PASSED
acme-1  pass     4/4
evil-2  FAIL     3/4 (not passed: resource-policies)
`
	if d := cmp.Diff(wantText, out.String()); d != "" {
		t.Errorf("audit table (-want +got):\n%s", d)
	}
	// The whole summary holds the audit table after the tenants.
	out.Reset()
	printDemo(&out, results, 42*time.Second)
	if i, j := strings.Index(out.String(), "TENANT  STATE"), strings.Index(out.String(), "isolation audit ("); i < 0 || j < i {
		t.Errorf("the summary lacks the tenants, then the audit:\n%s", out.String())
	}

	// Nothing audited, no table.
	out.Reset()
	printDemoAudit(&out, results[3:])
	if out.Len() != 0 {
		t.Errorf("audit table of no report: %q", out.String())
	}
}
