package console

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

// isolationSource reads every tenant's latest isolation report;
// *audit.Auditor satisfies it.
type isolationSource interface {
	Reports(ctx context.Context) ([]audit.Report, error)
}

type isolationData struct {
	// Configured is false when the console has no audit to read.
	Configured bool
	// Tenant is the one tenant asked for (?tenant=), or "" for all.
	Tenant string
	// Checks are the table's check columns.
	Checks  []string
	Reports []isolationRow
	// The reports by verdict.
	Passed, Failed, Errored int
	// Oldest is when the least recent report shown finished.
	Oldest time.Time
	ReadAt time.Time
}

// isolationRow is one tenant's report: a verdict per check column, and
// every check that did not pass with the evidence that failed.
type isolationRow struct {
	R        audit.Report
	Cells    []isolationCell
	Failures []audit.Check
	// Linked is whether the tenant id is valid, worth a link to its page.
	Linked bool
}

type isolationCell struct {
	Check  string
	Status audit.Status // "" when the report lacks the check
}

// statusRank orders reports failing first: fail, error, then pass.
func statusRank(s audit.Status) int {
	switch s {
	case audit.StatusFail:
		return 0
	case audit.StatusPass:
		return 2
	}
	return 1
}

func (c *Console) isolation(w http.ResponseWriter, r *http.Request, v *view) error {
	q, problems := params(r, "tenant")
	tenant := q.Get("tenant")
	if tenant != "" && registry.ValidateID(tenant) != nil {
		problems = append(problems, fmt.Sprintf("tenant %s is not a tenant id", quote(tenant)))
	}
	if len(problems) > 0 {
		return errBadRequest(problems...)
	}
	d := &isolationData{Configured: c.d.Isolation != nil, Tenant: tenant, ReadAt: c.o.Now()}
	v.Title, v.Page, v.Nav, v.Data = "Isolation", "isolation", "isolation", d
	if c.d.Isolation == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	reports, err := c.d.Isolation.Reports(ctx)
	if err != nil {
		return fmt.Errorf("read isolation reports: %w", err)
	}
	if tenant != "" {
		reports = slices.DeleteFunc(slices.Clone(reports), func(rep audit.Report) bool { return rep.TenantID != tenant })
	}
	fillIsolation(d, reports)
	return nil
}

func fillIsolation(d *isolationData, reports []audit.Report) {
	reports = slices.Clone(reports)
	slices.SortFunc(reports, func(a, b audit.Report) int {
		return cmp.Or(cmp.Compare(statusRank(a.Status), statusRank(b.Status)), strings.Compare(a.TenantID, b.TenantID))
	})
	d.Checks = reportChecks(reports)
	for _, rep := range reports {
		switch rep.Status {
		case audit.StatusPass:
			d.Passed++
		case audit.StatusFail:
			d.Failed++
		default:
			d.Errored++
		}
		if d.Oldest.IsZero() || rep.FinishedAt.Before(d.Oldest) {
			d.Oldest = rep.FinishedAt
		}
		row := isolationRow{R: rep, Linked: registry.ValidateID(rep.TenantID) == nil}
		for _, name := range d.Checks {
			cell := isolationCell{Check: name}
			if i := slices.IndexFunc(rep.Checks, func(c audit.Check) bool { return c.Name == name }); i >= 0 {
				cell.Status = rep.Checks[i].Status
			}
			row.Cells = append(row.Cells, cell)
		}
		for _, ch := range rep.Checks {
			if ch.Status == audit.StatusPass {
				continue
			}
			// The evidence that failed; all of it when none is marked.
			bad := slices.DeleteFunc(slices.Clone(ch.Evidence), func(e audit.Evidence) bool { return e.OK })
			if len(bad) > 0 {
				ch.Evidence = bad
			}
			row.Failures = append(row.Failures, ch)
		}
		d.Reports = append(d.Reports, row)
	}
}

// reportChecks are the checks the reports hold: the audit's own order
// first, then any other in the order met.
func reportChecks(reports []audit.Report) []string {
	out := []string{}
	for _, name := range []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckKMSKeyPolicy,
		audit.CheckS3PublicAccess, audit.CheckAppRoleScope, audit.CheckCrossTenant} {
		if slices.ContainsFunc(reports, func(r audit.Report) bool {
			return slices.ContainsFunc(r.Checks, func(c audit.Check) bool { return c.Name == name })
		}) {
			out = append(out, name)
		}
	}
	for _, r := range reports {
		for _, c := range r.Checks {
			if !slices.Contains(out, c.Name) {
				out = append(out, c.Name)
			}
		}
	}
	return out
}
