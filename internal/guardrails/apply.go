package guardrails

import (
	"context"
	"fmt"
	"log/slog"

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
	existing, err := a.existing(ctx)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]string, len(policies))
	for _, p := range policies {
		content, err := p.JSON()
		if err != nil {
			return nil, err
		}
		if len(content) > MaxPolicySize {
			return nil, fmt.Errorf("policy %s is %d characters, over the %d limit", p.Name, len(content), MaxPolicySize)
		}
		id, ok := existing[p.Name]
		if ok {
			if err := a.update(ctx, id, p, content); err != nil {
				return nil, err
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
			a.log.InfoContext(ctx, "guardrail created", "policy", p.Name, "id", id)
		}
		ids[p.Name] = id
		for _, path := range p.Targets {
			ou, ok := ous[path]
			if !ok {
				return nil, fmt.Errorf("attach policy %s: no OU %q", p.Name, path)
			}
			if err := a.attach(ctx, id, ou); err != nil {
				return nil, fmt.Errorf("attach policy %s to %s: %w", p.Name, path, err)
			}
		}
	}
	return ids, nil
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

func (a *Applier) update(ctx context.Context, id string, p Policy, content string) error {
	cur, err := a.org.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: aws.String(id)})
	if err != nil {
		return fmt.Errorf("describe policy %s: %w", p.Name, err)
	}
	if cur.Policy != nil && aws.ToString(cur.Policy.Content) == content &&
		cur.Policy.PolicySummary != nil && aws.ToString(cur.Policy.PolicySummary.Description) == p.Description {
		return nil
	}
	if _, err := a.org.UpdatePolicy(ctx, &organizations.UpdatePolicyInput{
		PolicyId: aws.String(id), Content: aws.String(content), Description: aws.String(p.Description),
	}); err != nil {
		return fmt.Errorf("update policy %s: %w", p.Name, err)
	}
	a.log.InfoContext(ctx, "guardrail updated", "policy", p.Name, "id", id)
	return nil
}

func (a *Applier) attach(ctx context.Context, policyID, target string) error {
	attached, err := a.attached(ctx, target)
	if err != nil {
		return err
	}
	if attached[policyID] {
		return nil
	}
	_, err = a.org.AttachPolicy(ctx, &organizations.AttachPolicyInput{PolicyId: aws.String(policyID), TargetId: aws.String(target)})
	if err != nil && !awsx.IsAlreadyExists(err) { // attached by a concurrent run
		return err
	}
	a.log.InfoContext(ctx, "guardrail attached", "policy", policyID, "target", target)
	return nil
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
