// Package audit proves the silo model's promise for each tenant: that its
// account is a bulkhead. It checks statically what fences the account in
// (its OU, the guardrail SCPs, resource and key policies, S3 public access,
// the application role's reach) and probes dynamically that the tenant's
// own application role is refused everything outside its account. Reports
// are kept in the registry and a failure is an audit event on the tenant.
package audit

import "time"

// Status is the verdict of a check, and of a whole report.
type Status string

// The verdicts. Error means the check could not decide (an AWS call failed,
// or the positive control was refused), which is never reported as a pass.
const (
	StatusPass  Status = "pass"
	StatusFail  Status = "fail"
	StatusError Status = "error"
)

// The checks a report holds, in order.
const (
	CheckOU               = "ou"
	CheckGuardrails       = "guardrails"
	CheckResourcePolicies = "resource-policies"
	CheckKMSKeyPolicy     = "kms-key-policy"
	CheckS3PublicAccess   = "s3-public-access"
	CheckAppRoleScope     = "app-role-scope"
	CheckCrossTenant      = "cross-tenant-probes"
)

// EventViolation is the audit event (and bus event) recorded on a tenant
// whose report fails.
const EventViolation = "tenant.isolation_violation"

// ReportKind is the registry report kind under which a tenant's latest
// isolation report is kept (registry.Store.PutReport).
const ReportKind = "isolation"

// Evidence is one observation behind a verdict: an AWS call made or a
// policy statement read, what was expected of it and what happened.
type Evidence struct {
	// Call is what was done ("s3:GetObject", "policy statement").
	Call string `json:"call"`
	// Target is the resource or principal it was about.
	Target string `json:"target,omitempty"`
	// Expected is "denied", "allowed", or what the check wanted to see.
	Expected string `json:"expected,omitempty"`
	// Outcome is what happened: an AWS error code, "allowed", or what was seen.
	Outcome string `json:"outcome"`
	// OK reports whether Outcome met Expected.
	OK bool `json:"ok"`
}

// Check is the verdict of one check with its evidence.
type Check struct {
	Name     string     `json:"name"`
	Status   Status     `json:"status"`
	Summary  string     `json:"summary"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

// Report is one tenant's isolation report.
type Report struct {
	TenantID   string    `json:"tenant_id"`
	AccountID  string    `json:"account_id"`
	Region     string    `json:"region"`
	Status     Status    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Checks     []Check   `json:"checks"`
}

// Fleet is the result of one audit run over several tenants.
type Fleet struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Passed     int       `json:"passed"`
	Failed     int       `json:"failed"`
	Errored    int       `json:"errored"`
	Reports    []Report  `json:"reports"`
}

// RunOptions choose what one audit run covers.
type RunOptions struct {
	// Tenants limits the run to these tenant ids; every ACTIVE customer
	// tenant when empty.
	Tenants []string
	// Actor is who asked, recorded on violation events.
	Actor string
}
