package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

func TestDecommission(t *testing.T) {
	c := wire(t, fastRecovery)
	signup(t, c, "leaving", "staying")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveAll(ctx, t, c, []string{"leaving", "staying"})
	tn, err := c.Registry.Get(ctx, "leaving")
	if err != nil {
		t.Fatal(err)
	}
	acct := tn.AccountID
	member := c.Accounts.Config(acct)

	// Plant resources outside the stack, as a tenant's engineer might.
	s3c := s3.NewFromConfig(member, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("planted-bucket-" + acct)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("planted-bucket-" + acct), Key: aws.String("x"), Body: nil}); err != nil {
		t.Fatal(err)
	}
	ddb := dynamodb.NewFromConfig(member)
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("planted-table"), BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: ddbtypes.KeyTypeHash}},
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
	}); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Registry.Transition(ctx, tn, registry.StateDecommissioning, registry.Change{Actor: "operator:ann", Reason: "contract ended"}); err != nil {
		t.Fatal(err)
	}
	done, err := c.Reconciler.Drive(ctx, "leaving")
	if err != nil {
		t.Fatal(err)
	}
	if done.State != registry.StateClosed || done.Endpoint != "" {
		t.Fatalf("after decommission: %s endpoint %q (%s)", done.State, done.Endpoint, done.Reason)
	}
	// Its DNS name is gone, the other tenant's stays.
	if _, _, ok, err := c.Reconciler.LookupDNS(ctx, done); err != nil || ok {
		t.Errorf("after decommission: DNS record of leaving still there (%v)", err)
	}
	if done.Attributes[vending.AttrDNSName] != "" {
		t.Errorf("after decommission: registry still names %q", done.Attributes[vending.AttrDNSName])
	}
	staying, err := c.Registry.Get(ctx, "staying")
	if err != nil {
		t.Fatal(err)
	}
	checkDNS(t, c, staying)

	var report vending.DeletionReport
	if err := c.Registry.Report(ctx, "leaving", vending.ReportDeletion, &report); err != nil {
		t.Fatal(err)
	}
	found := map[string]vending.Found{}
	for _, f := range report.Found {
		found[f.Kind+"/"+f.Name] = f
	}
	for _, key := range []string{"table/planted-table", "bucket/planted-bucket-" + acct, "table/silo-leaving-data"} {
		f, ok := found[key]
		if !ok {
			t.Errorf("report does not list %s; found %v", key, report.Found)
			continue
		}
		if f.Action != "deleted" {
			t.Errorf("%s: action %q (%s)", key, f.Action, f.Error)
		}
	}
	if f := found["table/planted-table"]; f.Tagged {
		t.Error("planted table reported as the stack's")
	}
	if len(report.Remaining) != 0 {
		t.Errorf("report lists remaining resources: %v", report.Remaining)
	}
	if !slices.Contains(report.Checked, "kms_key") || !slices.Contains(report.Checked, "secret") {
		t.Errorf("report checked only %v", report.Checked)
	}

	// What AWS says now.
	tables, err := ddb.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	buckets, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	fns, err := lambda.NewFromConfig(member).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := secretsmanager.NewFromConfig(member).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables.TableNames)+len(buckets.Buckets)+len(fns.Functions) > 0 {
		t.Errorf("left in the account: tables %v, buckets %d, functions %d", tables.TableNames, len(buckets.Buckets), len(fns.Functions))
	}
	for _, s := range secrets.SecretList {
		if s.DeletedDate == nil {
			t.Errorf("secret %s left", aws.ToString(s.Name))
		}
	}
	kc := kms.NewFromConfig(member)
	keys, err := kc.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil {
		t.Fatal(err)
	}
	pending := 0
	for _, k := range keys.Keys {
		d, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
		if err != nil {
			t.Fatal(err)
		}
		if d.KeyMetadata.KeyManager == kmstypes.KeyManagerTypeCustomer {
			if d.KeyMetadata.KeyState != kmstypes.KeyStatePendingDeletion {
				t.Errorf("key %s is %s, want PendingDeletion", aws.ToString(k.KeyId), d.KeyMetadata.KeyState)
			}
			pending++
		}
	}
	if pending == 0 {
		t.Error("no tenant key found pending deletion")
	}
	orgc := organizations.NewFromConfig(c.Config)
	parents, err := orgc.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(acct)})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(parents.Parents[0].Id); got != c.Org.OUs[emulator.OUSuspended] {
		t.Errorf("account in %s, want Suspended", got)
	}
	desc, err := orgc.DescribeAccount(ctx, &organizations.DescribeAccountInput{AccountId: aws.String(acct)})
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.Account.Status; st != orgtypes.AccountStatusSuspended && st != orgtypes.AccountStatusPendingClosure {
		t.Errorf("account status %s, want closed", st)
	}
	closures, err := c.Registry.Closures(ctx, time.Now().Add(-time.Hour))
	if err != nil || len(closures) != 1 {
		t.Errorf("closure ledger: %v, %v", closures, err)
	}
	// The other tenant is untouched.
	other, err := c.Registry.Get(ctx, "staying")
	if err != nil || other.State != registry.StateActive {
		t.Errorf("other tenant: %+v %v", other, err)
	}
	otherTables, _ := dynamodb.NewFromConfig(c.Accounts.Config(other.AccountID)).ListTables(ctx, &dynamodb.ListTablesInput{})
	if !slices.Equal(otherTables.TableNames, []string{"silo-staying-data"}) {
		t.Errorf("other tenant's tables: %v", otherTables.TableNames)
	}
}

// TestDecommissionWaitsOutABusyStackSet: a decommission whose stack
// instance removal is refused because another operation runs on the stack
// set waits for it and then takes every step in order. It once fell through
// to closing the account: the instance left in place, nothing cleaned, no
// deletion report, and a preview's pool account closed instead of reset.
func TestDecommissionWaitsOutABusyStackSet(t *testing.T) {
	c := wire(t, fastRecovery)
	signup(t, c, "busy-leaving", "busy-staying")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveAll(ctx, t, c, []string{"busy-leaving", "busy-staying"})
	leaving, err := c.Registry.Get(ctx, "busy-leaving")
	if err != nil {
		t.Fatal(err)
	}
	staying, err := c.Registry.Get(ctx, "busy-staying")
	if err != nil {
		t.Fatal(err)
	}

	// Another operation on the stack set, running for a while: the other
	// tenant's instance updated with its own parameters.
	emu.Proxy.Configure(emulator.Faults{StackSetOperationDelay: 3 * time.Second})
	rel, err := c.Reconciler.Release(ctx, staying.AppVersion)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StackSets.UpdateInstance(ctx, "busy-other-op", staying.AccountID, staying.Region, c.Reconciler.Params(staying, rel)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.Transition(ctx, leaving, registry.StateDecommissioning, registry.Change{Actor: "operator:ann", Reason: "contract ended"}); err != nil {
		t.Fatal(err)
	}
	done, err := c.Reconciler.Drive(ctx, "busy-leaving")
	if err != nil {
		t.Fatal(err)
	}
	if got := emu.Proxy.Stats().StackSetConflicts; got == 0 {
		t.Fatal("the removal never met the running operation: the test proves nothing")
	}
	if done.State != registry.StateClosed {
		t.Fatalf("after decommission: %s (%s)", done.State, done.Reason)
	}
	events, err := c.Registry.Events(ctx, "busy-leaving")
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range events {
		switch e.Type {
		case "instance_removed", "account_cleaned", "account_suspended":
			steps = append(steps, e.Type)
		}
	}
	if diff := cmp.Diff([]string{"instance_removed", "account_cleaned", "account_suspended"}, steps); diff != "" {
		t.Errorf("decommission steps (-want +got):\n%s", diff)
	}
	var report vending.DeletionReport
	if err := c.Registry.Report(ctx, "busy-leaving", vending.ReportDeletion, &report); err != nil {
		t.Fatalf("no deletion report: %v", err)
	}
	if has, err := c.StackSets.HasInstance(ctx, leaving.AccountID, leaving.Region); err != nil || has {
		t.Errorf("stack instance of the closed tenant still there (%v)", err)
	}
}
