package guardrails

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
)

// ErrNoSuchOU means an OU path names an OU the organization does not have.
var ErrNoSuchOU = errors.New("guardrails: no such OU")

// ouTreeAPI lists the Organizations calls ResolveOUs makes.
type ouTreeAPI interface {
	ListRoots(ctx context.Context, in *organizations.ListRootsInput, opts ...func(*organizations.Options)) (*organizations.ListRootsOutput, error)
	ListOrganizationalUnitsForParent(ctx context.Context, in *organizations.ListOrganizationalUnitsForParentInput, opts ...func(*organizations.Options)) (*organizations.ListOrganizationalUnitsForParentOutput, error)
}

// ResolveOUs maps each OU path ("Tenants/Production") to its id, walking
// the organization's tree from the root by name. Where silo does not create
// the OUs itself (AWS: an operator does, once), this is how it finds them.
// A path that names no OU is an error wrapping ErrNoSuchOU that names the
// path and the first missing part.
func ResolveOUs(ctx context.Context, org ouTreeAPI, paths []string) (map[string]string, error) {
	root, err := rootID(ctx, org)
	if err != nil {
		return nil, err
	}
	// children caches one listing per parent: the tenant OUs share one.
	children := map[string]map[string]string{}
	out := make(map[string]string, len(paths))
	for _, path := range paths {
		parent, walked := root, "the root"
		for _, name := range strings.Split(path, "/") {
			if name == "" {
				return nil, fmt.Errorf("OU path %q: empty part: %w", path, ErrNoSuchOU)
			}
			kids, ok := children[parent]
			if !ok {
				if kids, err = childOUs(ctx, org, parent); err != nil {
					return nil, fmt.Errorf("resolve OU %s: %w", path, err)
				}
				children[parent] = kids
			}
			id, ok := kids[name]
			if !ok {
				return nil, fmt.Errorf("OU %s: %s has no OU named %q: %w", path, walked, name, ErrNoSuchOU)
			}
			parent = id
			if walked == "the root" {
				walked = name
			} else {
				walked += "/" + name
			}
		}
		out[path] = parent
	}
	return out, nil
}

// rootID is the organization's root (an organization has exactly one).
func rootID(ctx context.Context, org ouTreeAPI) (string, error) {
	p := organizations.NewListRootsPaginator(org, &organizations.ListRootsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list the organization's roots: %w", err)
		}
		for _, r := range page.Roots {
			if id := aws.ToString(r.Id); id != "" {
				return id, nil
			}
		}
	}
	return "", errors.New("the organization has no root")
}

// childOUs maps the names of parent's OUs to their ids.
func childOUs(ctx context.Context, org ouTreeAPI, parent string) (map[string]string, error) {
	out := map[string]string{}
	p := organizations.NewListOrganizationalUnitsForParentPaginator(org, &organizations.ListOrganizationalUnitsForParentInput{ParentId: aws.String(parent)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the OUs of %s: %w", parent, err)
		}
		for _, ou := range page.OrganizationalUnits {
			out[aws.ToString(ou.Name)] = aws.ToString(ou.Id)
		}
	}
	return out, nil
}
