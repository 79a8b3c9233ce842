package emulator

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
)

// NewAccount creates a member account as the management account and waits
// until Organizations reports it created (at once in moto; after the
// configured delay when the proxy makes creation asynchronous, as AWS does).
// For tests and seeding; silo's own vending is internal/vending.
func (o *Org) NewAccount(ctx context.Context, name string) (string, error) {
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		return "", err
	}
	org := organizations.NewFromConfig(cfg)
	req, err := org.CreateAccount(ctx, &organizations.CreateAccountInput{
		AccountName: aws.String(name), Email: aws.String(name + "@accounts.example.com"),
	})
	if err != nil {
		return "", fmt.Errorf("create account %s: %w", name, err)
	}
	id := aws.ToString(req.CreateAccountStatus.Id)
	delay := 20 * time.Millisecond
	for {
		st, err := org.DescribeCreateAccountStatus(ctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(id)})
		if err != nil {
			return "", fmt.Errorf("create account %s: %w", name, err)
		}
		switch st.CreateAccountStatus.State {
		case orgtypes.CreateAccountStateSucceeded:
			return aws.ToString(st.CreateAccountStatus.AccountId), nil
		case orgtypes.CreateAccountStateFailed:
			return "", fmt.Errorf("create account %s: %s", name, st.CreateAccountStatus.FailureReason)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("create account %s: %w", name, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}
