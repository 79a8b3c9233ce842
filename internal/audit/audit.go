package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/registry"
)

// Publisher puts an event about a tenant on the bus (vending.Bus).
type Publisher interface {
	Publish(ctx context.Context, kind string, t *registry.Tenant)
}

// Enforcer switches IAM enforcement on and off where it is optional (the
// local emulator; emulator.Org). Against AWS, IAM is always enforced and
// Deps.Enforcer is nil.
type Enforcer interface {
	EnforceIAM(ctx context.Context) error
	RelaxIAM(ctx context.Context) error
}

// StackFinder names a tenant's stack in its account (stacksets.Manager).
type StackFinder interface {
	InstanceStack(ctx context.Context, account, region string) (string, error)
}

// Deps are the auditor's collaborators.
type Deps struct {
	// Registry lists the tenants and keeps the reports and events.
	Registry *registry.Store
	// Management is the management account's config: its region and
	// account hold the registry table the probes must be refused.
	Management aws.Config
	// Org reads the organization (OUs, SCPs); an Organizations client on
	// Management when nil.
	Org orgAPI
	// Accounts gives the member-account credentials (the member role) the
	// static checks read with and the probes start from.
	Accounts *awsx.Accounts
	// Stacks finds each tenant's stack.
	Stacks StackFinder
	// Enforcer, when set, has IAM enforced only for the probe window.
	Enforcer Enforcer
	// Events, when set, is told of each violation.
	Events Publisher
	Log    *slog.Logger
}

// Options configure the auditor.
type Options struct {
	// ManagementAccountID owns the registry table.
	ManagementAccountID string
	// OrganizationID is the organization whose principals may read what
	// a statement conditioned on aws:PrincipalOrgID allows (the artifact
	// bucket's exception).
	OrganizationID string
	// OUs maps OU paths ("Tenants/Production") to their ids.
	OUs map[string]string
	// Guardrails are the SCPs silo writes (guardrails.Policies); each
	// must be attached to the account or an OU above it with this content.
	Guardrails []guardrails.Policy
	// RegistryTable is the registry's table name; the Registry's when empty.
	RegistryTable string
	// Concurrency bounds the tenants audited at once; 8 when zero.
	Concurrency int
	// Partition of ARNs; "aws" when empty.
	Partition string
}

// SessionName is the session the probes assume a tenant's application
// role with; the role's trust policy lets the account's member role assume
// it under this name only.
const SessionName = "silo-isolation-audit"

// Auditor runs isolation audits.
type Auditor struct {
	d      Deps
	o      Options
	org    orgAPI
	reader *Reader
}

// orgAPI is what the audit reads of Organizations.
type orgAPI interface {
	ListParents(ctx context.Context, in *organizations.ListParentsInput, opts ...func(*organizations.Options)) (*organizations.ListParentsOutput, error)
	ListPolicies(ctx context.Context, in *organizations.ListPoliciesInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesOutput, error)
	DescribePolicy(ctx context.Context, in *organizations.DescribePolicyInput, opts ...func(*organizations.Options)) (*organizations.DescribePolicyOutput, error)
	ListPoliciesForTarget(ctx context.Context, in *organizations.ListPoliciesForTargetInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesForTargetOutput, error)
}

// New returns an auditor.
func New(d Deps, o Options) (*Auditor, error) {
	switch {
	case d.Registry == nil || d.Accounts == nil || d.Stacks == nil || d.Log == nil:
		return nil, errors.New("audit: Registry, Accounts, Stacks and Log are required")
	case o.ManagementAccountID == "":
		return nil, errors.New("audit: the management account id is required")
	case o.OUs[guardrails.OUProduction] == "":
		return nil, fmt.Errorf("audit: the id of OU %s is required", guardrails.OUProduction)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Partition == "" {
		o.Partition = "aws"
	}
	if o.RegistryTable == "" {
		o.RegistryTable = d.Registry.Table()
	}
	org := d.Org
	if org == nil {
		org = organizations.NewFromConfig(d.Management)
	}
	return &Auditor{d: d, o: o, org: org, reader: NewReader(d.Registry)}, nil
}

// subject is one tenant the run looks at: audited, or probed as a partner.
type subject struct {
	t   *registry.Tenant
	res *resources
	err error // finding its resources failed
}

// Run audits o.Tenants, or every ACTIVE customer tenant, and stores each
// report. Each tenant's application role probes the next ACTIVE tenant's
// resources (tenants ordered by id, as a ring). A failing report records
// EventViolation on the tenant and publishes it.
func (a *Auditor) Run(ctx context.Context, o RunOptions) (*Fleet, error) {
	fleet := &Fleet{StartedAt: time.Now().UTC()}
	active, err := a.active(ctx)
	if err != nil {
		return nil, err
	}
	targets := active
	if len(o.Tenants) > 0 {
		targets = nil
		for _, id := range o.Tenants {
			t, err := a.d.Registry.Get(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("audit tenant %s: %w", id, err)
			}
			if t.AccountID == "" || t.Tombstone() {
				return nil, fmt.Errorf("audit tenant %s: it has no account (state %s): %w", id, t.State, registry.ErrInvalid)
			}
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		fleet.FinishedAt = time.Now().UTC()
		return fleet, nil
	}

	// Every tenant to look at: the targets and their ring partners.
	subjects := map[string]*subject{}
	partner := map[string]string{}
	for _, t := range targets {
		subjects[t.ID] = &subject{t: t}
		if p := next(active, t.ID); p != nil {
			partner[t.ID] = p.ID
			if _, ok := subjects[p.ID]; !ok {
				subjects[p.ID] = &subject{t: p}
			}
		}
	}
	a.each(ctx, mapValues(subjects), func(ctx context.Context, s *subject) {
		s.res, s.err = a.discover(ctx, s.t)
	})

	scps, scpErr := a.guardrailPolicies(ctx)
	reports := make([]*Report, len(targets))
	for i, t := range targets {
		reports[i] = &Report{TenantID: t.ID, AccountID: t.AccountID, Region: a.region(t), StartedAt: time.Now().UTC()}
	}
	a.eachIndex(ctx, len(targets), func(ctx context.Context, i int) {
		s := subjects[targets[i].ID]
		reports[i].Checks = a.static(ctx, s, scps, scpErr)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	probes := a.probeAll(ctx, targets, subjects, partner)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, r := range reports {
		r.Checks = append(r.Checks, probes[i])
		r.Status = verdict(r.Checks)
		r.FinishedAt = time.Now().UTC()
	}

	for i, r := range reports {
		if err := a.d.Registry.PutFleetReport(ctx, r.TenantID, ReportKind, r); err != nil {
			return nil, err
		}
		if r.Status == StatusFail {
			if err := a.violation(ctx, targets[i], r, o.Actor); err != nil {
				return nil, err
			}
		}
		switch r.Status {
		case StatusPass:
			fleet.Passed++
		case StatusFail:
			fleet.Failed++
		default:
			fleet.Errored++
		}
		fleet.Reports = append(fleet.Reports, *r)
	}
	fleet.FinishedAt = time.Now().UTC()
	a.d.Log.InfoContext(ctx, "isolation audit finished", "tenants", len(reports), "passed", fleet.Passed,
		"failed", fleet.Failed, "errored", fleet.Errored, "elapsed", fleet.FinishedAt.Sub(fleet.StartedAt).Round(time.Millisecond))
	return fleet, nil
}

// Report returns the latest stored report of a tenant; an error wrapping
// registry.ErrNotFound when it was never audited.
func (a *Auditor) Report(ctx context.Context, tenantID string) (*Report, error) {
	return a.reader.Report(ctx, tenantID)
}

// Reports returns the latest report of every audited tenant, by tenant id,
// in one registry query.
func (a *Auditor) Reports(ctx context.Context) ([]Report, error) {
	return a.reader.Reports(ctx)
}

// active lists the ACTIVE customer tenants, by id.
func (a *Auditor) active(ctx context.Context) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	cursor := ""
	for {
		page, err := a.d.Registry.List(ctx, registry.StateActive, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("list active tenants: %w", err)
		}
		for _, t := range page.Tenants {
			if (t.Kind == "" || t.Kind == registry.KindTenant) && t.AccountID != "" {
				out = append(out, t)
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// next is the tenant after id in the ring of active tenants (ordered by
// id), or nil when there is no other.
func next(ring []*registry.Tenant, id string) *registry.Tenant {
	i := sort.Search(len(ring), func(i int) bool { return ring[i].ID > id })
	for range ring {
		if i >= len(ring) {
			i = 0
		}
		if ring[i].ID != id {
			return ring[i]
		}
		i++
	}
	return nil
}

// violation records EventViolation on the tenant's audit history (an
// update without a state change, retried on a concurrent write) and
// publishes it.
func (a *Auditor) violation(ctx context.Context, t *registry.Tenant, r *Report, actor string) error {
	if actor == "" {
		actor = "audit"
	}
	var failed []string
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			failed = append(failed, c.Name)
		}
	}
	detail := map[string]string{"failed_checks": fmt.Sprint(failed), "report": ReportKind}
	for attempt := 0; ; attempt++ {
		cur, err := a.d.Registry.Get(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("record isolation violation of %s: %w", t.ID, err)
		}
		next, err := a.d.Registry.Update(ctx, cur, registry.Change{Actor: actor, Type: EventViolation,
			Reason: "isolation audit failed: " + fmt.Sprint(failed), Detail: detail})
		if errors.Is(err, registry.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("record isolation violation of %s: %w", t.ID, err)
		}
		if a.d.Events != nil {
			a.d.Events.Publish(ctx, EventViolation, next)
		}
		a.d.Log.WarnContext(ctx, "isolation violation", "tenant", t.ID, "account", t.AccountID, "failed_checks", failed)
		return nil
	}
}

// verdict is a report's status: fail if any check failed, else error if
// any could not decide, else pass.
func verdict(checks []Check) Status {
	st := StatusPass
	for _, c := range checks {
		switch c.Status {
		case StatusFail:
			return StatusFail
		case StatusError:
			st = StatusError
		}
	}
	return st
}

func (a *Auditor) region(t *registry.Tenant) string {
	if t.Region != "" {
		return t.Region
	}
	return a.d.Management.Region
}

// each runs f on every subject, at most Concurrency at once.
func (a *Auditor) each(ctx context.Context, subjects []*subject, f func(context.Context, *subject)) {
	a.eachIndex(ctx, len(subjects), func(ctx context.Context, i int) { f(ctx, subjects[i]) })
}

func (a *Auditor) eachIndex(ctx context.Context, n int, f func(context.Context, int)) {
	sem := make(chan struct{}, a.o.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(ctx, i)
		})
	}
	wg.Wait()
}

func mapValues(m map[string]*subject) []*subject {
	out := make([]*subject, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *subject) int { return strings.Compare(a.t.ID, b.t.ID) })
	return out
}

// outcome is what an AWS error says as evidence: its code, or the error.
func outcome(err error) string {
	if code := awsx.ErrorCode(err); code != "" {
		return code
	}
	return err.Error()
}
