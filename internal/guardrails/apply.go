package guardrails

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// orgAPI lists the Organizations calls the Applier makes.
type orgAPI interface {
	ListPolicies(ctx context.Context, in *organizations.ListPoliciesInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesOutput, error)
	DescribePolicy(ctx context.Context, in *organizations.DescribePolicyInput, opts ...func(*organizations.Options)) (*organizations.DescribePolicyOutput, error)
	CreatePolicy(ctx context.Context, in *organizations.CreatePolicyInput, opts ...func(*organizations.Options)) (*organizations.CreatePolicyOutput, error)
	UpdatePolicy(ctx context.Context, in *organizations.UpdatePolicyInput, opts ...func(*organizations.Options)) (*organizations.UpdatePolicyOutput, error)
	AttachPolicy(ctx context.Context, in *organizations.AttachPolicyInput, opts ...func(*organizations.Options)) (*organizations.AttachPolicyOutput, error)
	ListPoliciesForTarget(ctx context.Context, in *organizations.ListPoliciesForTargetInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesForTargetOutput, error)
}

// Applier creates, updates and attaches SCPs. Every step is idempotent, so
// Apply can run on every reconcile.
type Applier struct {
	org orgAPI
	log *slog.Logger
}

// New returns an Applier acting through org (the management account).
func New(org orgAPI, log *slog.Logger) *Applier {
	return &Applier{org: org, log: log}
}

// Apply makes each policy exist with its current content and be attached to
// its targets. ous maps an OU path ("Tenants/Production") to its id. It
// returns the policy ids by name.
func (a *Applier) Apply(ctx context.Context, policies []Policy, ous map[string]string) (map[string]string, error) {
	results, err := a.Reconcile(ctx, policies, ous)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]string, len(results))
	for _, r := range results {
		ids[r.Name] = r.ID
	}
	return ids, nil
}

// Change is what a run did to a policy's content.
type Change string

// The changes Reconcile reports.
const (
	Created   Change = "created"
	Updated   Change = "updated"
	Unchanged Change = "unchanged"
)

// Result is what Reconcile did with one policy.
type Result struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Change is what happened to the policy itself (content, description).
	Change Change `json:"change"`
	// Targets are the OU paths the policy is attached to now.
	Targets []string `json:"targets"`
	// Attached are the targets this run attached it to (the others
	// already had it).
	Attached []string `json:"attached"`
}

// Reconcile is Apply reporting, per policy in the order given, what it
// changed: for operators who want to see what a run did.
func (a *Applier) Reconcile(ctx context.Context, policies []Policy, ous map[string]string) ([]Result, error) {
	existing, err := a.existing(ctx)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(policies))
	for _, p := range policies {
		content, err := p.JSON()
		if err != nil {
			return nil, err
		}
		if len(content) > MaxPolicySize {
			return nil, fmt.Errorf("policy %s is %d characters, over the %d limit", p.Name, len(content), MaxPolicySize)
		}
		r := Result{Name: p.Name, Change: Unchanged, Targets: slices.Clone(p.Targets), Attached: []string{}}
		id, ok := existing[p.Name]
		if ok {
			changed, err := a.update(ctx, id, p, content)
			if err != nil {
				return nil, err
			}
			if changed {
				r.Change = Updated
			}
		} else {
			out, err := a.org.CreatePolicy(ctx, &organizations.CreatePolicyInput{
				Name: aws.String(p.Name), Description: aws.String(p.Description),
				Content: aws.String(content), Type: orgtypes.PolicyTypeServiceControlPolicy,
				Tags: []orgtypes.Tag{{Key: aws.String("silo:managed"), Value: aws.String("true")}},
			})
			if err != nil {
				return nil, fmt.Errorf("create policy %s: %w", p.Name, err)
			}
			id = aws.ToString(out.Policy.PolicySummary.Id)
			r.Change = Created
			a.log.InfoContext(ctx, "guardrail created", "policy", p.Name, "id", id)
		}
		r.ID = id
		for _, path := range p.Targets {
			ou, ok := ous[path]
			if !ok {
				return nil, fmt.Errorf("attach policy %s: no OU %q", p.Name, path)
			}
			attached, err := a.attach(ctx, id, ou)
			if err != nil {
				return nil, fmt.Errorf("attach policy %s to %s: %w", p.Name, path, err)
			}
			if attached {
				r.Attached = append(r.Attached, path)
			}
		}
		results = append(results, r)
	}
	return results, nil
}

// existing returns the ids of the organization's SCPs by name.
func (a *Applier) existing(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	p := organizations.NewListPoliciesPaginator(a.org, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list policies: %w", err)
		}
		for _, s := range page.Policies {
			out[aws.ToString(s.Name)] = aws.ToString(s.Id)
		}
	}
	return out, nil
}

// update gives the policy id p's content and description, reporting
// whether they differed.
func (a *Applier) update(ctx context.Context, id string, p Policy, content string) (bool, error) {
	cur, err := a.org.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: aws.String(id)})
	if err != nil {
		return false, fmt.Errorf("describe policy %s: %w", p.Name, err)
	}
	if cur.Policy != nil && aws.ToString(cur.Policy.Content) == content &&
		cur.Policy.PolicySummary != nil && aws.ToString(cur.Policy.PolicySummary.Description) == p.Description {
		return false, nil
	}
	if _, err := a.org.UpdatePolicy(ctx, &organizations.UpdatePolicyInput{
		PolicyId: aws.String(id), Content: aws.String(content), Description: aws.String(p.Description),
	}); err != nil {
		return false, fmt.Errorf("update policy %s: %w", p.Name, err)
	}
	a.log.InfoContext(ctx, "guardrail updated", "policy", p.Name, "id", id)
	return true, nil
}

// attach attaches the policy to target unless it is already, reporting
// whether this call attached it.
func (a *Applier) attach(ctx context.Context, policyID, target string) (bool, error) {
	attached, err := a.attached(ctx, target)
	if err != nil {
		return false, err
	}
	if attached[policyID] {
		return false, nil
	}
	_, err = a.org.AttachPolicy(ctx, &organizations.AttachPolicyInput{PolicyId: aws.String(policyID), TargetId: aws.String(target)})
	if awsx.IsAlreadyExists(err) { // attached by a concurrent run
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.log.InfoContext(ctx, "guardrail attached", "policy", policyID, "target", target)
	return true, nil
}

// attached returns the ids of the SCPs attached directly to target.
func (a *Applier) attached(ctx context.Context, target string) (map[string]bool, error) {
	out := map[string]bool{}
	p := organizations.NewListPoliciesForTargetPaginator(a.org, &organizations.ListPoliciesForTargetInput{
		TargetId: aws.String(target), Filter: orgtypes.PolicyTypeServiceControlPolicy,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list policies for %s: %w", target, err)
		}
		for _, s := range page.Policies {
			out[aws.ToString(s.Id)] = true
		}
	}
	return out, nil
}
