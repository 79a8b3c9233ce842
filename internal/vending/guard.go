package vending

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
)

// ErrRefused is returned when the guard refuses a destructive call.
var ErrRefused = errors.New("refused by the destructive-call guard")

// TagTenant is the tag every silo-vended account and resource carries.
const TagTenant = "silo:tenant"

// guardAPI is what the guard reads from Organizations.
type guardAPI interface {
	ListTagsForResource(ctx context.Context, in *organizations.ListTagsForResourceInput, opts ...func(*organizations.Options)) (*organizations.ListTagsForResourceOutput, error)
	ListParents(ctx context.Context, in *organizations.ListParentsInput, opts ...func(*organizations.Options)) (*organizations.ListParentsOutput, error)
}

// Guard stands before every destructive call (delete a stack instance,
// delete resources, close an account): it proves that the account is one
// silo vended for that tenant and that it sits in one of silo's OUs. It
// never trusts the registry alone: a corrupted or hand-edited record must
// not be enough to destroy someone else's account.
type Guard struct {
	org        guardAPI
	management string
	siloOUs    []string
}

// NewGuard returns a guard for an organization whose silo OUs are ous
// (ids) and whose management account is management.
func NewGuard(org guardAPI, management string, ous []string) *Guard {
	return &Guard{org: org, management: management, siloOUs: slices.Clone(ous)}
}

// Check returns nil only when account belongs to tenant: not the management
// account, tagged silo:tenant=<tenant>, and parented by a silo OU.
func (g *Guard) Check(ctx context.Context, account, tenant string) error {
	refuse := func(why string) error {
		return fmt.Errorf("account %s for tenant %s: %s: %w", account, tenant, why, ErrRefused)
	}
	switch {
	case account == "" || tenant == "":
		return refuse("account and tenant are required")
	case account == g.management:
		return refuse("it is the management account")
	}
	tags, err := g.org.ListTagsForResource(ctx, &organizations.ListTagsForResourceInput{ResourceId: aws.String(account)})
	if err != nil {
		return fmt.Errorf("guard: read tags of %s: %w", account, err)
	}
	owner := ""
	for _, tg := range tags.Tags {
		if aws.ToString(tg.Key) == TagTenant {
			owner = aws.ToString(tg.Value)
		}
	}
	if owner != tenant {
		if owner == "" {
			return refuse("it has no " + TagTenant + " tag, so silo did not vend it")
		}
		return refuse(fmt.Sprintf("it is tagged for tenant %q", owner))
	}
	parents, err := g.org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(account)})
	if err != nil {
		return fmt.Errorf("guard: read parent of %s: %w", account, err)
	}
	if len(parents.Parents) != 1 || !slices.Contains(g.siloOUs, aws.ToString(parents.Parents[0].Id)) {
		return refuse("it is not in a silo OU")
	}
	return nil
}
