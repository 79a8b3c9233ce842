package vending

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
)

// Readiness is the readiness gate: a new account counts as usable when
// silo can assume its access role and a harmless read succeeds in it. AWS
// keeps new accounts unusable for minutes after SUCCEEDED.
type Readiness struct {
	accounts *awsx.Accounts
}

// NewReadiness returns a readiness gate acting through accounts.
func NewReadiness(accounts *awsx.Accounts) *Readiness { return &Readiness{accounts: accounts} }

// Ready returns nil when the account is usable.
func (r *Readiness) Ready(ctx context.Context, account string) error {
	cfg := r.accounts.Config(account)
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		// Credentials that were refused are not worth keeping.
		r.accounts.Forget(account)
		return fmt.Errorf("assume role in %s: %w", account, err)
	}
	if got := aws.ToString(id.Account); got != account {
		return fmt.Errorf("assumed role landed in %s, not %s", got, account)
	}
	if _, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)}); err != nil {
		return fmt.Errorf("read in %s: %w", account, err)
	}
	return nil
}
