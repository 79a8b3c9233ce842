package awsx_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// newAccount creates a member account through Organizations.
func newAccount(t *testing.T, cfg aws.Config, name string) string {
	t.Helper()
	out, err := organizations.NewFromConfig(cfg).CreateAccount(context.Background(), &organizations.CreateAccountInput{
		AccountName: aws.String(name), Email: aws.String(name + "@tenants.example.com"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.CreateAccountStatus.AccountId)
}

func TestMemberAccountSeesOnlyItsOwnTables(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	counter := awsx.NewCounter()
	mgmt, err := org.Config(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{})
	a, b := newAccount(t, mgmt, "tenant-a"), newAccount(t, mgmt, "tenant-b")

	for _, acct := range []string{a, b} {
		cfg := accounts.Config(acct)
		id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(id.Account); got != acct {
			t.Fatalf("assumed-role caller is in %s, want %s", got, acct)
		}
		db := dynamodb.NewFromConfig(cfg)
		if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String("data-" + acct),
			BillingMode:          types.BillingModePayPerRequest,
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The management account creates one too; no member may see it.
	mdb := dynamodb.NewFromConfig(mgmt)
	if _, err := mdb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("registry"), BillingMode: types.BillingModePayPerRequest,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
	}); err != nil {
		t.Fatal(err)
	}

	for acct, want := range map[string][]string{a: {"data-" + a}, b: {"data-" + b}, "mgmt": {"registry"}} {
		cfg := mgmt
		if acct != "mgmt" {
			cfg = accounts.Config(acct)
		}
		out, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.TableNames, want) {
			t.Errorf("account %s lists %v, want %v", acct, out.TableNames, want)
		}
	}
	// Reaching into another account's table by name fails.
	_, err = dynamodb.NewFromConfig(accounts.Config(a)).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("data-" + b)})
	if !awsx.IsNotFound(err) {
		t.Errorf("account A describing B's table: %v, want not found", err)
	}
	// Two accounts' worth of credentials cost two AssumeRole calls, however
	// many calls were made with them.
	if n := counter.Calls("STS", "AssumeRole"); n != 2 {
		t.Errorf("%d AssumeRole calls, want 2 (one per account)", n)
	}
}

func TestCredentialsCachedAndSingleFlight(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	counter := awsx.NewCounter()
	mgmt, err := org.Config(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{SessionName: "silo-test"})
	acct := newAccount(t, mgmt, "busy")
	counter.Reset()

	const n = 200
	var wg sync.WaitGroup
	keys := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			creds, err := accounts.Credentials(acct).Retrieve(ctx)
			keys[i], errs[i] = creds.AccessKeyID, err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("retrieve %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("retrieve %d got key %s, retrieve 0 got %s", i, keys[i], keys[0])
		}
	}
	if calls := counter.Calls("STS", "AssumeRole"); calls != 1 {
		t.Errorf("%d concurrent retrievals made %d AssumeRole calls, want 1", n, calls)
	}
	// Forget drops the cache: the next use assumes the role again.
	accounts.Forget(acct)
	if _, err := accounts.Credentials(acct).Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := counter.Calls("STS", "AssumeRole"); calls != 2 {
		t.Errorf("after Forget: %d AssumeRole calls, want 2", calls)
	}
	// (moto lets AssumeRole into an account or role that does not exist
	// succeed, so refusals are exercised by the fault proxy, not here.)
}

func TestCounterCountsCallsAndAttempts(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	counter := awsx.NewCounter()
	cfg, err := org.Config(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	for range 3 {
		if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("nope")})
	if !awsx.IsNotFound(err) {
		t.Fatalf("describe missing table: %v", err)
	}
	want := []awsx.OpCount{
		{Op: awsx.Op{Service: "DynamoDB", Operation: "DescribeTable"}, Calls: 1, Attempts: 1},
		{Op: awsx.Op{Service: "DynamoDB", Operation: "ListTables"}, Calls: 3, Attempts: 3},
	}
	got := counter.Snapshot()
	for i := range got {
		if got[i].Elapsed <= 0 {
			t.Errorf("%s: no time recorded", got[i].Op)
		}
		got[i].Elapsed = 0
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if counter.Total() != 4 {
		t.Errorf("total = %d, want 4", counter.Total())
	}
	// A config copied from a counted one keeps counting (member configs do).
	cp := cfg.Copy()
	if _, err := dynamodb.NewFromConfig(cp).ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatal(err)
	}
	if n := counter.Calls("DynamoDB", "ListTables"); n != 4 {
		t.Errorf("copied config: ListTables = %d, want 4", n)
	}
}

func TestLoadEndpointFromEnv(t *testing.T) {
	t.Setenv(awsx.EndpointEnv, "http://127.0.0.1:1")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	cfg, err := awsx.Load(context.Background(), awsx.Options{AccessKeyID: "a", SecretAccessKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:1" || !awsx.Emulated(cfg) {
		t.Errorf("endpoint = %v", aws.ToString(cfg.BaseEndpoint))
	}
	if cfg.Region != awsx.DefaultRegion {
		t.Errorf("region = %q, want default %s", cfg.Region, awsx.DefaultRegion)
	}
	explicit, err := awsx.Load(context.Background(), awsx.Options{Endpoint: "http://x", Region: "eu-west-1", AccessKeyID: "a", SecretAccessKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(explicit.BaseEndpoint) != "http://x" || explicit.Region != "eu-west-1" {
		t.Errorf("explicit options ignored: %v %s", aws.ToString(explicit.BaseEndpoint), explicit.Region)
	}
}
