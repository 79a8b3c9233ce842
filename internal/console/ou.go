package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
)

// orgAPI lists the Organizations calls the OU lookup makes.
type orgAPI interface {
	ListParents(ctx context.Context, in *organizations.ListParentsInput, opts ...func(*organizations.Options)) (*organizations.ListParentsOutput, error)
	DescribeOrganizationalUnit(ctx context.Context, in *organizations.DescribeOrganizationalUnitInput, opts ...func(*organizations.Options)) (*organizations.DescribeOrganizationalUnitOutput, error)
}

// ouSource is what the console needs to show an account's OU;
// *OULookup is the real one.
type ouSource interface {
	Path(ctx context.Context, accountID string) (string, error)
}

// OULookup finds the OU path of an account ("Tenants/Production") by
// walking Organizations from the account up to the root. Paths are cached
// per account for a few minutes: accounts move between OUs rarely (on
// suspend and resume), and a detail page should not cost a walk each time.
type OULookup struct {
	org orgAPI
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	paths map[string]ouEntry
}

type ouEntry struct {
	path string
	at   time.Time
}

// ouTTL is how long an account's OU path is reused.
const ouTTL = 5 * time.Minute

// maxOUDepth is Organizations' own limit on OU nesting, plus the root.
const maxOUDepth = 6

// NewOULookup returns an OU lookup that calls org as the management account
// (or a delegated administrator).
func NewOULookup(org orgAPI) *OULookup {
	return &OULookup{org: org, ttl: ouTTL, now: time.Now, paths: map[string]ouEntry{}}
}

// Path returns the account's OU path below the root, such as
// "Tenants/Production", or "" for an account directly under the root.
func (l *OULookup) Path(ctx context.Context, accountID string) (string, error) {
	l.mu.Lock()
	e, ok := l.paths[accountID]
	l.mu.Unlock()
	if ok && l.now().Sub(e.at) < l.ttl {
		return e.path, nil
	}
	var names []string
	child := accountID
	for range maxOUDepth + 1 {
		out, err := l.org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(child)})
		if err != nil {
			return "", fmt.Errorf("parents of %s: %w", child, err)
		}
		if len(out.Parents) == 0 {
			return "", fmt.Errorf("parents of %s: none", child)
		}
		p := out.Parents[0]
		if p.Type == orgtypes.ParentTypeRoot {
			slices.Reverse(names)
			path := strings.Join(names, "/")
			l.mu.Lock()
			l.paths[accountID] = ouEntry{path: path, at: l.now()}
			l.mu.Unlock()
			return path, nil
		}
		ou, err := l.org.DescribeOrganizationalUnit(ctx, &organizations.DescribeOrganizationalUnitInput{OrganizationalUnitId: p.Id})
		if err != nil {
			return "", fmt.Errorf("describe OU %s: %w", aws.ToString(p.Id), err)
		}
		names = append(names, aws.ToString(ou.OrganizationalUnit.Name))
		child = aws.ToString(p.Id)
	}
	return "", errors.New("OU tree deeper than Organizations allows")
}
