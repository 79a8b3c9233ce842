package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

// Audits is the isolation audit; *audit.Auditor satisfies it.
type Audits interface {
	Run(ctx context.Context, o audit.RunOptions) (*audit.Fleet, error)
	// Report is a tenant's latest report; it wraps registry.ErrNotFound
	// when the tenant has none.
	Report(ctx context.Context, tenantID string) (*audit.Report, error)
}

// AuditRequest is the (optional) body of POST /v1/audit/isolation.
type AuditRequest struct {
	// Tenants limits the run to these tenant ids; every active customer
	// tenant when empty.
	Tenants []string `json:"tenants,omitempty"`
}

// MaxAuditTenants bounds the tenants one POST /v1/audit/isolation names.
// A whole-fleet run names none.
const MaxAuditTenants = 1000

var (
	errNoAudits    = fail(http.StatusNotFound, CodeNotFound, "the isolation audit is not enabled on this API")
	errNoIsoReport = fail(http.StatusNotFound, CodeNotFound, "no isolation report for this tenant (run silo audit isolation)")
)

func (a *API) auditRoutes() {
	a.handle("/v1/audit/isolation", route{http.MethodPost: a.auditRun})
	// More specific than /v1/tenants/{id}/{action}, so a GET here is this
	// route's and a POST gets a 405 rather than "no such action".
	a.handle("/v1/tenants/{id}/isolation", route{http.MethodGet: a.isolationReport})
}

// auditRun answers POST /v1/audit/isolation (operator): audit the tenants
// named, or every active one, now, and answer the whole run. A run that
// finds violations is still a 200: the answer is the verdict.
func (a *API) auditRun(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.d.Audits == nil {
		writeError(ctx, w, errNoAudits)
		return
	}
	p, err := a.operator(r, RoleOperator)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	var req AuditRequest
	if r.ContentLength != 0 {
		if req, err = decodeJSON[AuditRequest](w, r, a.o.MaxBody); err != nil {
			writeError(ctx, w, err)
			return
		}
	}
	tenants, err := auditTenants(req.Tenants)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	// A run takes minutes, far beyond the server's write timeout for
	// ordinary requests (ServerTimeouts); its client waits AuditTimeout.
	// Behind API Gateway (the Lambda) there is no deadline to lift, and no
	// run: ErrNotSupported is expected there.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(AuditTimeout + time.Minute))
	f, err := a.d.Audits.Run(ctx, audit.RunOptions{Tenants: tenants, Actor: p.Actor()})
	if err != nil {
		writeError(ctx, w, err) // registry.ErrNotFound: "no such tenant"
		return
	}
	out := *f
	if out.Reports == nil {
		out.Reports = []audit.Report{}
	}
	logger(ctx).InfoContext(ctx, "isolation audit", "actor", p.Actor(), "tenants", len(out.Reports),
		"passed", out.Passed, "failed", out.Failed, "errored", out.Errored)
	writeJSON(w, http.StatusOK, out)
}

// auditTenants checks the ids of a request and drops repeats, keeping
// their order.
func auditTenants(ids []string) ([]string, error) {
	if len(ids) > MaxAuditTenants {
		return nil, &registry.FieldError{Field: "tenants", Problem: fmt.Sprintf("names more than %d tenants; send none to audit the whole fleet", MaxAuditTenants)}
	}
	var out []string
	var errs []error
	for i, id := range ids {
		if registry.ValidateID(id) != nil {
			errs = append(errs, &registry.FieldError{Field: fmt.Sprintf("tenants[%d]", i), Problem: "is not a tenant id"})
			continue
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, errors.Join(errs...)
}

// isolationReport answers GET /v1/tenants/{id}/isolation (viewer): the
// tenant's latest isolation report.
func (a *API) isolationReport(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.d.Audits == nil {
		writeError(ctx, w, errNoAudits)
		return
	}
	if _, err := a.operator(r, RoleViewer); err != nil {
		writeError(ctx, w, err)
		return
	}
	id := r.PathValue("id")
	if registry.ValidateID(id) != nil {
		writeError(ctx, w, errNoIsoReport)
		return
	}
	rep, err := a.d.Audits.Report(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		writeError(ctx, w, errNoIsoReport)
		return
	}
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
