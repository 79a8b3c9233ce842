package stacksets

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/google/go-cmp/cmp"
)

// fleet deploys the stack set's instance for each tenant into an account
// of its own, at version 1.0.0, and returns the accounts by tenant.
func fleet(ctx context.Context, t *testing.T, f fixture, rel Release, tenants ...string) map[string]string {
	t.Helper()
	if _, err := f.m.EnsureStackSet(ctx, rel, Rollout{}); err != nil {
		t.Fatal(err)
	}
	accounts := map[string]string{}
	for _, tenant := range tenants {
		acct := createAccount(ctx, t, f.org, tenant)
		op, err := f.m.AddInstance(ctx, OperationID(tenant, "deploy", 1), acct, f.org.Region, tenantParams(rel, tenant, "1.0.0", "basic"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.m.Wait(ctx, op); err != nil {
			t.Fatal(err)
		}
		accounts[tenant] = acct
	}
	return accounts
}

// wave is the parameters of one release for tenants (by account).
func wave(rel Release, version string, accounts map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for tenant, acct := range accounts {
		out[acct] = tenantParams(rel, tenant, version, "basic")
	}
	return out
}

// TestUpdateInstances rolls a new version out to three tenants in one
// operation, re-issues it as after a crash, and checks that bad input is
// refused before any call.
func TestUpdateInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := setup(ctx, t)
	f.m.opts.ApplyUpdates = true
	region := f.org.Region
	rel, err := f.m.Publish(ctx, TenantTemplate(), codeZip(t, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	accounts := fleet(ctx, t, f, rel, "acme", "globex", "initech")
	params := wave(rel, "2.0.0", accounts)

	f.counter.Reset()
	opID := OperationID("fleet", "wave-1", 1)
	op, err := f.m.UpdateInstances(ctx, opID, region, params, Preferences{MaxConcurrentCount: 3, FailureToleranceCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.m.Wait(ctx, op); err != nil || res.Status != "SUCCEEDED" {
		t.Fatalf("wait: %+v, %v", res, err)
	}
	if n := f.counter.Calls("CloudFormation", "UpdateStackInstances"); n != 1 {
		t.Errorf("%d UpdateStackInstances calls, want one operation for the wave", n)
	}
	if n := f.counter.Calls("CloudFormation", "UpdateStack"); n != 3 {
		t.Errorf("%d member stacks updated, want 3", n)
	}
	for tenant, acct := range accounts {
		got, err := f.m.InstanceParameters(ctx, acct, region)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(params[acct], got); diff != "" {
			t.Errorf("%s: member stack parameters (-want +got):\n%s", tenant, diff)
		}
		fn, err := lambda.NewFromConfig(f.accounts.Config(acct)).GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{
			FunctionName: aws.String("silo-" + tenant + "-app"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if env := fn.Environment.Variables; env["APP_VERSION"] != "2.0.0" || env["TENANT_ID"] != tenant {
			t.Errorf("%s: function environment %v, want APP_VERSION 2.0.0 for %s", tenant, env, tenant)
		}
	}

	// moto accepts UsePreviousValue but records it unresolved (an empty
	// value); nothing reads instance overrides back, the member stacks are
	// what runs. Pinned so that a moto that resolves it shows up here.
	inst, err := cloudformation.NewFromConfig(f.cfg).DescribeStackInstance(ctx, &cloudformation.DescribeStackInstanceInput{
		StackSetName: aws.String(f.m.StackSetName()), StackInstanceAccount: aws.String(accounts["acme"]), StackInstanceRegion: aws.String(region),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range inst.StackInstance.ParameterOverrides {
		if aws.ToString(p.ParameterKey) == "TenantId" && (!aws.ToBool(p.UsePreviousValue) || aws.ToString(p.ParameterValue) != "") {
			t.Logf("moto now resolves UsePreviousValue: TenantId override %q", aws.ToString(p.ParameterValue))
		}
	}

	// Re-issued after a crash: the operation is issued again (moto ignores
	// the id), but no member stack is updated twice.
	f.counter.Reset()
	op, err = f.m.UpdateInstances(ctx, opID, region, params, Preferences{MaxConcurrentCount: 3, FailureToleranceCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.m.Wait(ctx, op); err != nil || res.Status != "SUCCEEDED" {
		t.Fatalf("wait for the re-issued operation: %+v, %v", res, err)
	}
	if n := f.counter.Calls("CloudFormation", "UpdateStack"); n != 0 {
		t.Errorf("re-issue updated %d member stacks, want 0", n)
	}
	if n := f.counter.Calls("CloudFormation", "DescribeStacks"); n != 3 {
		t.Errorf("re-issue read %d member stacks, want 3", n)
	}

	// The single-account update shares the check.
	f.counter.Reset()
	acme := accounts["acme"]
	if _, err := f.m.UpdateInstance(ctx, OperationID("acme", "update", 1), acme, region, params[acme]); err != nil {
		t.Fatal(err)
	}
	if n := f.counter.Calls("CloudFormation", "UpdateStack"); n != 0 {
		t.Errorf("UpdateInstance to the present parameters updated %d stacks", n)
	}

	f.counter.Reset()
	for _, tc := range []struct {
		name   string
		params map[string]map[string]string
		prefs  Preferences
		want   string
	}{
		{"no accounts", nil, Preferences{}, "no accounts"},
		{"concurrency above the limit", params, Preferences{MaxConcurrentCount: 101}, "MaxConcurrentCount 101 is outside 1..100"},
	} {
		if _, err := f.m.UpdateInstances(ctx, OperationID("fleet", "bad", 1), region, tc.params, tc.prefs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	if n := f.counter.Total(); n != 0 {
		t.Errorf("bad input made %d calls: %v", n, f.counter.Snapshot())
	}
}

// TestUpdateInstancesFailure makes one member stack fail its update and
// checks that Wait reports it as a failed instance, with the failure
// tolerance deciding whether the accounts after it are attempted.
func TestUpdateInstancesFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := setup(ctx, t)
	f.m.opts.ApplyUpdates = true
	region := f.org.Region
	rel, err := f.m.Publish(ctx, TenantTemplate(), codeZip(t, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	accounts := fleet(ctx, t, f, rel, "acme", "globex", "initech")
	// The middle account (in id order) loses its stack.
	ordered := []string{accounts["acme"], accounts["globex"], accounts["initech"]}
	slices.Sort(ordered)
	broken := ordered[1]
	if _, err := cloudformation.NewFromConfig(f.accounts.Config(broken)).DeleteStack(ctx, &cloudformation.DeleteStackInput{
		StackName: aws.String("StackSet:" + f.m.StackSetName()),
	}); err != nil {
		t.Fatal(err)
	}
	params := wave(rel, "2.0.0", accounts)

	// No tolerance: one account at a time; the first is updated, the
	// second fails, the third is not attempted.
	op, err := f.m.UpdateInstances(ctx, OperationID("fleet", "wave-1", 1), region, params, Preferences{MaxConcurrentCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.m.Wait(ctx, op)
	var oe *OperationError
	if !errors.As(err, &oe) || res.Status != "FAILED" || oe.Status != "FAILED" {
		t.Fatalf("wait: %+v, %v; want an *OperationError FAILED", res, err)
	}
	if len(oe.Accounts) != 2 || !strings.Contains(oe.Accounts[broken], "does not exist") ||
		oe.Accounts[ordered[2]] != region+": "+cancelledReason {
		t.Errorf("failed accounts %v, want %s missing its stack and %s cancelled", oe.Accounts, broken, ordered[2])
	}
	if v := stackParameters(ctx, t, f.accounts.Config(ordered[0]), "StackSet:"+f.m.StackSetName())["AppVersion"]; v != "2.0.0" {
		t.Errorf("first account at %s, want 2.0.0", v)
	}
	if v := stackParameters(ctx, t, f.accounts.Config(ordered[2]), "StackSet:"+f.m.StackSetName())["AppVersion"]; v != "1.0.0" {
		t.Errorf("cancelled account at %s, want 1.0.0", v)
	}

	// The next attempt tolerates one failure: the cancelled account is
	// updated, the done one is left alone, and the failed one is reported.
	f.counter.Reset()
	op, err = f.m.UpdateInstances(ctx, OperationID("fleet", "wave-1", 2), region, params, Preferences{MaxConcurrentCount: 3, FailureToleranceCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err = f.m.Wait(ctx, op)
	if !errors.As(err, &oe) || res.Status != "FAILED" || len(oe.Accounts) != 1 || !strings.Contains(oe.Accounts[broken], "does not exist") {
		t.Fatalf("wait with tolerance 1: %+v, %v; want %s failed alone", res, err, broken)
	}
	if n := f.counter.Calls("CloudFormation", "UpdateStack"); n != 1 {
		t.Errorf("%d member stacks updated, want 1 (the cancelled one)", n)
	}
	if v := stackParameters(ctx, t, f.accounts.Config(ordered[2]), "StackSet:"+f.m.StackSetName())["AppVersion"]; v != "2.0.0" {
		t.Errorf("third account at %s, want 2.0.0", v)
	}
	if _, err := f.m.InstanceParameters(ctx, broken, region); !errors.Is(err, ErrNotFound) {
		t.Errorf("parameters of the account without a stack: %v, want ErrNotFound", err)
	}
}

// TestUpdateInstancesRequests checks the one request of a batch: accounts
// sorted, values where the accounts agree and UsePreviousValue where they
// differ, the caller's preferences.
func TestUpdateInstancesRequests(t *testing.T) {
	params := map[string]map[string]string{
		"333344445555": {"TenantId": "initech", "AppVersion": "2.0.0", "Tier": "basic"},
		"111122223333": {"TenantId": "acme", "AppVersion": "2.0.0", "Tier": "enterprise"},
		"222233334444": {"TenantId": "globex", "AppVersion": "2.0.0", "Tier": "basic"},
	}
	accounts := []string{"111122223333", "222233334444", "333344445555"}
	overrides := []cfntypes.Parameter{
		{ParameterKey: aws.String("AppVersion"), ParameterValue: aws.String("2.0.0")},
		{ParameterKey: aws.String("TenantId"), UsePreviousValue: aws.Bool(true)},
		{ParameterKey: aws.String("Tier"), UsePreviousValue: aws.Bool(true)},
	}
	prefs := func(max, ft int32) *cfntypes.StackSetOperationPreferences {
		return &cfntypes.StackSetOperationPreferences{
			MaxConcurrentCount: aws.Int32(max), FailureToleranceCount: aws.Int32(ft),
			RegionConcurrencyType: cfntypes.RegionConcurrencyTypeSequential,
		}
	}
	cases := []struct {
		name  string
		opts  Options
		prefs Preferences
		want  *cloudformation.UpdateStackInstancesInput
	}{
		{
			name: "self-managed", prefs: Preferences{MaxConcurrentCount: 25, FailureToleranceCount: 2},
			want: &cloudformation.UpdateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"}, Accounts: accounts,
				ParameterOverrides: overrides, OperationId: aws.String("wave-1"), OperationPreferences: prefs(25, 2),
			},
		},
		{
			name:  "service-managed",
			opts:  Options{PermissionModel: ServiceManaged, OrganizationalUnits: []string{"ou-ab12-prod1234"}, CallAs: cfntypes.CallAsDelegatedAdmin},
			prefs: Preferences{MaxConcurrentCount: 100},
			want: &cloudformation.UpdateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"},
				DeploymentTargets: &cfntypes.DeploymentTargets{
					OrganizationalUnitIds: []string{"ou-ab12-prod1234"}, Accounts: accounts,
					AccountFilterType: cfntypes.AccountFilterTypeIntersection,
				},
				ParameterOverrides: overrides, OperationId: aws.String("wave-1"), OperationPreferences: prefs(100, 0),
				CallAs: cfntypes.CallAsDelegatedAdmin,
			},
		},
		{
			name: "the manager's preferences by default", opts: Options{Preferences: Preferences{MaxConcurrentCount: 10, FailureToleranceCount: 3}},
			want: &cloudformation.UpdateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"}, Accounts: accounts,
				ParameterOverrides: overrides, OperationId: aws.String("wave-1"), OperationPreferences: prefs(10, 3),
			},
		},
		{
			name: "the caller's tolerance with the default concurrency", prefs: Preferences{FailureToleranceCount: 1},
			want: &cloudformation.UpdateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"}, Accounts: accounts,
				ParameterOverrides: overrides, OperationId: aws.String("wave-1"), OperationPreferences: prefs(1, 1),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCFN{}
			m := New(fake, nil, nil, "eu-west-1", quiet(), tc.opts)
			id, err := m.UpdateInstances(t.Context(), "wave-1", "eu-west-1", params, tc.prefs)
			if err != nil || id != "wave-1" {
				t.Fatalf("UpdateInstances = %q, %v", id, err)
			}
			if len(fake.calls) != 1 {
				t.Fatalf("%d mutating calls, want 1: %#v", len(fake.calls), fake.calls)
			}
			if diff := cmp.Diff(tc.want, fake.calls[0], ignoreSDK); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpdateInstancesRejects checks that bad input fails before any call.
func TestUpdateInstancesRejects(t *testing.T) {
	ok := map[string]map[string]string{
		"111122223333": {"TenantId": "acme", "AppVersion": "2"},
		"222233334444": {"TenantId": "globex", "AppVersion": "2"},
	}
	cases := []struct {
		name   string
		opID   string
		params map[string]map[string]string
		prefs  Preferences
		want   string
	}{
		{"no operation id", "", ok, Preferences{}, "no operation id"},
		{"no accounts", "op", map[string]map[string]string{}, Preferences{}, "no accounts"},
		{"concurrency 101", "op", ok, Preferences{MaxConcurrentCount: 101}, "MaxConcurrentCount 101 is outside 1..100"},
		{"negative concurrency", "op", ok, Preferences{MaxConcurrentCount: -1}, "MaxConcurrentCount -1 is outside 1..100"},
		{"negative tolerance", "op", ok, Preferences{MaxConcurrentCount: 5, FailureToleranceCount: -1}, "FailureToleranceCount -1 is negative"},
		{"not an account id", "op", map[string]map[string]string{"acme": {"TenantId": "acme"}}, Preferences{}, `"acme" is not an account id`},
		{"no parameters", "op", map[string]map[string]string{"111122223333": {}}, Preferences{}, "no parameters for account 111122223333"},
		{"different parameter names", "op", map[string]map[string]string{
			"111122223333": {"TenantId": "acme", "AppVersion": "2"},
			"222233334444": {"TenantId": "globex"},
		}, Preferences{}, "account 111122223333 has parameters AppVersion,TenantId, account 222233334444 has TenantId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCFN{}
			m := New(fake, nil, nil, "us-east-1", quiet(), Options{})
			id, err := m.UpdateInstances(t.Context(), tc.opID, "us-east-1", tc.params, tc.prefs)
			if err == nil || id != "" || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UpdateInstances = %q, %v; want an error with %q", id, err, tc.want)
			}
			if len(fake.calls) != 0 {
				t.Errorf("bad input made calls: %v", fake.calls)
			}
		})
	}
}
