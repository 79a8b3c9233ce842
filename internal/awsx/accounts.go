package awsx

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// MemberRole is the role Organizations creates in every account it vends;
// the management account assumes it to act inside a member account.
const MemberRole = "OrganizationAccountAccessRole"

// assumeRoleAPI is the one STS call the member-account credentials use.
type assumeRoleAPI interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

// Accounts hands out credentials and configs for member accounts. Each
// account's credentials come from AssumeRole into MemberRole and are cached
// until shortly before they expire. The cache is safe for concurrent use and
// makes at most one AssumeRole call per account at a time (the SDK's
// CredentialsCache single-flights refreshes), so a thousand goroutines
// touching one new account cost one STS call, not a thousand.
type Accounts struct {
	base      aws.Config
	sts       assumeRoleAPI
	partition string
	role      string
	session   string

	mu     sync.Mutex
	caches map[string]*aws.CredentialsCache
}

// AccountsOptions tune NewAccounts.
type AccountsOptions struct {
	// Role to assume in each member account; MemberRole when empty.
	Role string
	// SessionName recorded in CloudTrail; "silo" when empty.
	SessionName string
	// Partition of the role ARNs; "aws" when empty.
	Partition string
}

// NewAccounts returns a member-account credentials source. base is the
// management account's config: member configs inherit its region, endpoint,
// retryer and middleware, and only swap the credentials.
func NewAccounts(base aws.Config, client assumeRoleAPI, o AccountsOptions) *Accounts {
	a := &Accounts{base: base, sts: client, partition: o.Partition, role: o.Role, session: o.SessionName,
		caches: map[string]*aws.CredentialsCache{}}
	if a.role == "" {
		a.role = MemberRole
	}
	if a.session == "" {
		a.session = "silo"
	}
	if a.partition == "" {
		a.partition = "aws"
	}
	return a
}

// Credentials returns the cached credentials provider of accountID.
func (a *Accounts) Credentials(accountID string) aws.CredentialsProvider {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.caches[accountID]; ok {
		return c
	}
	arn := fmt.Sprintf("arn:%s:iam::%s:role/%s", a.partition, accountID, a.role)
	p := stscreds.NewAssumeRoleProvider(a.sts, arn, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = a.session
		o.Duration = time.Hour
	})
	c := aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
		// Refresh five minutes early (with up to a minute of jitter so a
		// fleet's worth of credentials does not refresh in one burst).
		o.ExpiryWindow = 5 * time.Minute
		o.ExpiryWindowJitterFrac = 0.2
	})
	a.caches[accountID] = c
	return c
}

// Role is the name of the role assumed in every member account.
func (a *Accounts) Role() string { return a.role }

// Config returns a copy of the base config acting as accountID.
func (a *Accounts) Config(accountID string) aws.Config {
	cfg := a.base.Copy()
	cfg.Credentials = a.Credentials(accountID)
	return cfg
}

// Forget drops the cached credentials of accountID, for example after the
// account was closed or its role was found broken.
func (a *Accounts) Forget(accountID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.caches, accountID)
}
