package vending

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
)

// fakeOrg answers the guard's two questions from maps. It implements every
// method of guardAPI.
type fakeOrg struct {
	tags    map[string]map[string]string // account → tags
	parents map[string]string            // account → parent id
	err     error
}

func (f *fakeOrg) ListTagsForResource(_ context.Context, in *organizations.ListTagsForResourceInput, _ ...func(*organizations.Options)) (*organizations.ListTagsForResourceOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := &organizations.ListTagsForResourceOutput{}
	for k, v := range f.tags[aws.ToString(in.ResourceId)] {
		out.Tags = append(out.Tags, orgtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return out, nil
}

func (f *fakeOrg) ListParents(_ context.Context, in *organizations.ListParentsInput, _ ...func(*organizations.Options)) (*organizations.ListParentsOutput, error) {
	p, ok := f.parents[aws.ToString(in.ChildId)]
	if !ok {
		return &organizations.ListParentsOutput{}, nil
	}
	return &organizations.ListParentsOutput{Parents: []orgtypes.Parent{{Id: aws.String(p)}}}, nil
}

func TestGuard(t *testing.T) {
	org := &fakeOrg{
		tags: map[string]map[string]string{
			"111111111111": {TagTenant: "acme"},
			"222222222222": {TagTenant: "globex"},
			"333333333333": {"team": "payments"},
			"444444444444": {TagTenant: "acme"},
			"000000000000": {TagTenant: "acme"},
		},
		parents: map[string]string{
			"111111111111": "ou-prod", "222222222222": "ou-prod", "333333333333": "ou-prod",
			"444444444444": "ou-finance", "000000000000": "r-root",
		},
	}
	g := NewGuard(org, "000000000000", []string{"ou-prod", "ou-suspended"})
	cases := []struct {
		name, account, tenant string
		refused               bool
	}{
		{"silo account of the tenant", "111111111111", "acme", false},
		{"another tenant's account", "222222222222", "acme", true},
		{"untagged account", "333333333333", "acme", true},
		{"tagged but outside silo OUs", "444444444444", "acme", true},
		{"management account", "000000000000", "acme", true},
		{"unknown account", "999999999999", "acme", true},
		{"empty account", "", "acme", true},
		{"empty tenant", "111111111111", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := g.Check(context.Background(), tc.account, tc.tenant)
			if got := errors.Is(err, ErrRefused); got != tc.refused {
				t.Errorf("Check = %v, refused %v, want refused %v", err, got, tc.refused)
			}
		})
	}
	// An error reading the facts is not a pass.
	org.err = errors.New("organizations down")
	if err := g.Check(context.Background(), "111111111111", "acme"); err == nil {
		t.Error("Check passed while Organizations was failing")
	}
}
