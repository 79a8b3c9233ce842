package guardrails

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// policyTypeAPI lists the Organizations calls EnableSCPs makes.
type policyTypeAPI interface {
	ListRoots(ctx context.Context, in *organizations.ListRootsInput, opts ...func(*organizations.Options)) (*organizations.ListRootsOutput, error)
	EnablePolicyType(ctx context.Context, in *organizations.EnablePolicyTypeInput, opts ...func(*organizations.Options)) (*organizations.EnablePolicyTypeOutput, error)
}

// How often, and how long, EnableSCPs waits for a pending enablement:
// Organizations enables a policy type asynchronously (PENDING_ENABLE), and
// attaching an SCP before it is ENABLED fails.
const (
	enablePoll    = 2 * time.Second
	enableTimeout = 2 * time.Minute
)

// EnableSCPs makes sure service control policies are enabled on the
// organization's root, which a new organization does not have: without
// them SCPs can be created but not attached. It reports whether this call
// enabled them, and returns once they are ENABLED.
func EnableSCPs(ctx context.Context, org policyTypeAPI) (bool, error) {
	root, status, err := scpStatus(ctx, org)
	if err != nil {
		return false, err
	}
	if status == orgtypes.PolicyTypeStatusEnabled {
		return false, nil
	}
	enabled := false
	if status != orgtypes.PolicyTypeStatusPendingEnable {
		_, err := org.EnablePolicyType(ctx, &organizations.EnablePolicyTypeInput{
			RootId: aws.String(root), PolicyType: orgtypes.PolicyTypeServiceControlPolicy,
		})
		switch {
		case awsx.IsAlreadyExists(err): // enabled by someone else meanwhile
		case err != nil:
			return false, fmt.Errorf("enable service control policies on %s: %w", root, err)
		default:
			enabled = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, enableTimeout)
	defer cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return enabled, fmt.Errorf("service control policies on %s still %s after %s: %w", root, orString(string(status), "disabled"), enableTimeout, ctx.Err())
		case <-timer.C:
		}
		if _, status, err = scpStatus(ctx, org); err != nil {
			return enabled, err
		}
		if status == orgtypes.PolicyTypeStatusEnabled {
			return enabled, nil
		}
		timer.Reset(enablePoll)
	}
}

// scpStatus returns the root's id and the status of its SCP policy type
// ("" when it is not enabled at all).
func scpStatus(ctx context.Context, org policyTypeAPI) (string, orgtypes.PolicyTypeStatus, error) {
	p := organizations.NewListRootsPaginator(org, &organizations.ListRootsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", "", fmt.Errorf("list the organization's roots: %w", err)
		}
		for _, r := range page.Roots {
			var status orgtypes.PolicyTypeStatus
			for _, t := range r.PolicyTypes {
				if t.Type == orgtypes.PolicyTypeServiceControlPolicy {
					status = t.Status
				}
			}
			return aws.ToString(r.Id), status, nil
		}
	}
	return "", "", errors.New("the organization has no root")
}

func orString(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
