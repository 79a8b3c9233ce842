package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/audit"
)

// fakeIsolation stands in for the auditor (tested against the emulator in
// internal/audit): the page only reads the latest reports.
type fakeIsolation struct {
	mu      sync.Mutex
	reports []audit.Report
	err     error
}

func (f *fakeIsolation) Reports(context.Context) ([]audit.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reports, f.err
}

// Markup an attacker controls: a bucket policy's principal, an error text.
const (
	evilPrincipal = `arn:aws:iam::333333333333:root"><script>alert(1)</script>`
	evilOutcome   = `AccessDenied <img src=x onerror=alert(2)>`
)

// isolationReports are three tenants' reports: t-00001 passes, t-00002
// fails with evidence carrying markup, t-00003 errs.
func isolationReports(now time.Time) []audit.Report {
	checks := func(override ...audit.Check) []audit.Check {
		var out []audit.Check
		for _, n := range []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckKMSKeyPolicy,
			audit.CheckS3PublicAccess, audit.CheckAppRoleScope, audit.CheckCrossTenant} {
			c := audit.Check{Name: n, Status: audit.StatusPass, Summary: "as expected",
				Evidence: []audit.Evidence{{Call: "read " + n, Outcome: "as expected", OK: true}}}
			for _, o := range override {
				if o.Name == n {
					c = o
				}
			}
			out = append(out, c)
		}
		return out
	}
	rep := func(id, acct string, st audit.Status, cs []audit.Check) audit.Report {
		return audit.Report{TenantID: id, AccountID: acct, Region: "us-east-1", Status: st,
			StartedAt: now.Add(-2 * time.Hour), FinishedAt: now.Add(-2*time.Hour + 5*time.Second), Checks: cs}
	}
	return []audit.Report{
		rep("t-00001", "200000000001", audit.StatusPass, checks()),
		rep("t-00003", "200000000003", audit.StatusError, checks(audit.Check{Name: audit.CheckCrossTenant, Status: audit.StatusError,
			Summary:  "the positive control was refused: the probe role cannot act",
			Evidence: []audit.Evidence{{Call: "s3:GetObject", Target: "own bucket", Expected: "allowed", Outcome: "AccessDenied", OK: false}}})),
		rep("t-00002", "200000000002", audit.StatusFail, checks(
			audit.Check{Name: audit.CheckResourcePolicies, Status: audit.StatusFail, Summary: "the bucket policy grants an account outside",
				Evidence: []audit.Evidence{
					{Call: "policy statement", Target: "arn:aws:s3:::b-t-00002", Expected: "principals of 200000000002", Outcome: evilPrincipal, OK: false},
					{Call: "policy statement", Target: "arn:aws:s3:::artifacts", Expected: "the organization", Outcome: "aws:PrincipalOrgID o-org", OK: true},
				}},
			audit.Check{Name: audit.CheckCrossTenant, Status: audit.StatusFail, Summary: "1 of 12 cross-tenant attempts was allowed",
				Evidence: []audit.Evidence{
					{Call: "dynamodb:GetItem", Target: "table of t-00001", Expected: "denied", Outcome: evilOutcome, OK: false},
				}})),
	}
}

func TestIsolationPage(t *testing.T) {
	now := time.Now().UTC()
	src := &fakeIsolation{reports: isolationReports(now)}
	f := newFixture(t, fleetTenants(5, now), func(f *fixture, d *Deps, o *Options) { d.Isolation = src })

	body := f.mustGet(t, "/isolation")
	if !strings.Contains(body, `<a href="/isolation" aria-current="page">Isolation</a>`) {
		t.Errorf("the nav has no current Isolation link")
	}
	// Failing first, then the one that could not decide, then passing.
	rows := rowsOf(section(t, body, "table", "isolation"))
	if len(rows) != 4 {
		t.Fatalf("%d rows:\n%s", len(rows), strings.Join(rows, "\n"))
	}
	for i, want := range []string{`data-tenant="t-00002" data-status="fail"`, `data-tenant="t-00003" data-status="error"`, `data-tenant="t-00001" data-status="pass"`} {
		if !strings.Contains(rows[i+1], want) {
			t.Errorf("row %d is not %s:\n%s", i+1, want, rows[i+1])
		}
	}
	for _, want := range []string{
		`<th>ou</th><th>guardrails</th><th>resource-policies</th><th>kms-key-policy</th><th>s3-public-access</th><th>app-role-scope</th><th>cross-tenant-probes</th>`,
	} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("the header lacks %s:\n%s", want, rows[0])
		}
	}
	for _, want := range []string{
		`<td data-check="resource-policies"><span class="state iso-fail">fail</span></td>`,
		`<td data-check="ou"><span class="state iso-pass">pass</span></td>`,
		`<a href="#iso-t-00002" class="badge iso-fail">fail</a>`,
		`<a href="/tenants/t-00002">t-00002</a>`,
	} {
		if !strings.Contains(rows[1], want) {
			t.Errorf("the failing row lacks %s:\n%s", want, rows[1])
		}
	}
	for _, want := range []string{`id="iso-failed">1<`, `id="iso-errored">1<`, `id="iso-passed">1<`} {
		if !strings.Contains(body, want) {
			t.Errorf("the counts lack %s", want)
		}
	}

	// The evidence of failures, escaped; passing evidence left out.
	fails := section(t, body, "section", "isolation-failures")
	for _, want := range []string{
		`id="iso-t-00002"`, `id="iso-t-00003"`,
		`resource-policies: the bucket policy grants an account outside`,
		`arn:aws:iam::333333333333:root&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`,
		`AccessDenied &lt;img src=x onerror=alert(2)&gt;`,
		`cross-tenant-probes: the positive control was refused`,
	} {
		if !strings.Contains(fails, want) {
			t.Errorf("the failures lack %s:\n%s", want, fails)
		}
	}
	for _, bad := range []string{"<script>", "<img", "aws:PrincipalOrgID", `id="iso-t-00001"`} {
		if strings.Contains(fails, bad) {
			t.Errorf("the failures show %q:\n%s", bad, fails)
		}
	}

	// One tenant's report, as the tenant's page links to it.
	if tp := f.mustGet(t, "/tenants/t-00001"); !strings.Contains(tp, `<a id="isolation-link" href="/isolation?tenant=t-00001">`) {
		t.Errorf("the tenant page does not link to its isolation report")
	}
	one := f.mustGet(t, "/isolation?tenant=t-00002")
	if rows := rowsOf(section(t, one, "table", "isolation")); len(rows) != 2 || !strings.Contains(rows[1], `data-tenant="t-00002"`) {
		t.Errorf("?tenant=t-00002 shows:\n%s", strings.Join(rows, "\n"))
	}
	if none := f.mustGet(t, "/isolation?tenant=t-00004"); !strings.Contains(none, `id="isolation-none"`) {
		t.Errorf("a tenant without a report:\n%s", none)
	}
	for _, target := range []string{"/isolation?tenant=%3Cb%3E", "/isolation?id=t-00001", "/isolation?tenant=t-00001&tenant=t-00002"} {
		if r := f.get(t, target); r.status != http.StatusBadRequest || strings.Contains(r.body, "<b>") {
			t.Errorf("GET %s = %d:\n%s", target, r.status, r.body)
		}
	}

	// No reports yet; the source failing: a 500 that does not say why.
	src.mu.Lock()
	src.reports = nil
	src.mu.Unlock()
	if body := f.mustGet(t, "/isolation"); !strings.Contains(body, `id="isolation-none"`) || strings.Contains(body, `id="isolation"`) {
		t.Errorf("no reports:\n%s", body)
	}
	src.mu.Lock()
	src.err = errors.New("query reports: dial tcp: secret-host refused")
	src.mu.Unlock()
	if r := f.get(t, "/isolation"); r.status != http.StatusInternalServerError || strings.Contains(r.body, "secret-host") {
		t.Errorf("a failing source: %d\n%s", r.status, r.body)
	}
	if !strings.Contains(f.logs.String(), "secret-host") {
		t.Errorf("the cause is not logged:\n%s", f.logs.String())
	}
}

func TestIsolationNotConfigured(t *testing.T) {
	f := newFixture(t, fleetTenants(3, time.Now()), nil)
	if r := do(t, f.c, "GET", "/isolation", "", nil, nil); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
		t.Errorf("a stranger: %d %q", r.status, r.header.Get("Location"))
	}
	body := f.mustGet(t, "/isolation")
	if !strings.Contains(body, `id="isolation-unconfigured"`) {
		t.Errorf("no not-configured note:\n%s", body)
	}
	if tp := f.mustGet(t, "/tenants/t-00001"); strings.Contains(tp, "isolation-link") {
		t.Errorf("the tenant page links to a page with nothing to show")
	}
}
