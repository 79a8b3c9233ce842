package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/silo-saas/silo/registry"
)

// ErrRunsElsewhere is what Reader.Run answers: this process only reads
// reports, and the audit runs somewhere else (in AWS, the reconciler's
// daily schedule; see docs/isolation.md).
var ErrRunsElsewhere = errors.New("audit: the isolation audit does not run here; it runs on its schedule in the reconciler")

// Reader reads the stored isolation reports. It needs only the registry,
// so a process that must not reach into tenant accounts (the API and
// console functions in AWS) can serve the reports the auditor wrote.
type Reader struct {
	reg *registry.Store
}

// NewReader returns a Reader of the reports kept in reg.
func NewReader(reg *registry.Store) *Reader { return &Reader{reg: reg} }

// Report returns the latest stored report of a tenant; an error wrapping
// registry.ErrNotFound when it was never audited.
func (r *Reader) Report(ctx context.Context, tenantID string) (*Report, error) {
	var rep Report
	if err := r.reg.Report(ctx, tenantID, ReportKind, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Reports returns the latest report of every audited tenant, by tenant id,
// in one registry query.
func (r *Reader) Reports(ctx context.Context) ([]Report, error) {
	stored, err := r.reg.FleetReports(ctx, ReportKind)
	if err != nil {
		return nil, err
	}
	out := make([]Report, 0, len(stored))
	for _, s := range stored {
		var rep Report
		if err := json.Unmarshal(s.Body, &rep); err != nil {
			return nil, fmt.Errorf("decode isolation report of %s: %w", s.TenantID, err)
		}
		out = append(out, rep)
	}
	return out, nil
}

// Run does not audit: it answers ErrRunsElsewhere, so a Reader stands in
// for the auditor where runs are not allowed (the API function in AWS,
// which API Gateway cuts at 29 seconds and which has no way into tenant
// accounts).
func (r *Reader) Run(context.Context, RunOptions) (*Fleet, error) {
	return nil, ErrRunsElsewhere
}
