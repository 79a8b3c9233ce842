package vending

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
)

func TestResourceOf(t *testing.T) {
	const acct = "123456789012"
	secret := "arn:aws:secretsmanager:us-east-1:" + acct + ":secret:silo/acme/signing-AbCdEf"
	cases := []struct {
		name, arn, kind, res string
	}{
		{"function", "arn:aws:lambda:us-east-1:" + acct + ":function:silo-acme-app", "function", "silo-acme-app"},
		{"function version", "arn:aws:lambda:us-east-1:" + acct + ":function:silo-acme-app:3", "function", "silo-acme-app"},
		{"log group", "arn:aws:logs:us-east-1:" + acct + ":log-group:/aws/lambda/silo-acme-app", "log_group", "/aws/lambda/silo-acme-app"},
		{"log group with star", "arn:aws:logs:us-east-1:" + acct + ":log-group:/aws/lambda/x:*", "log_group", "/aws/lambda/x"},
		{"table", "arn:aws:dynamodb:us-east-1:" + acct + ":table/silo-acme-data", "table", "silo-acme-data"},
		{"bucket", "arn:aws:s3:::silo-acme-" + acct, "bucket", "silo-acme-" + acct},
		{"secret by arn", secret, "secret", secret},
		{"key", "arn:aws:kms:us-east-1:" + acct + ":key/1234abcd-12ab-34cd-56ef-1234567890ab", "kms_key", "1234abcd-12ab-34cd-56ef-1234567890ab"},
		{"role", "arn:aws:iam::" + acct + ":role/silo-acme-app", "role", "silo-acme-app"},
		{"role with path", "arn:aws:iam::" + acct + ":role/tenant/app/silo-acme-app", "role", "silo-acme-app"},
		{"rest api", "arn:aws:apigateway:us-east-1::/restapis/a1b2c3", "rest_api", "a1b2c3"},
		{"stack", "arn:aws:cloudformation:us-east-1:" + acct + ":stack/StackSet-silo-tenant-app-1a2b/9f8e7d6c", "stack", "StackSet-silo-tenant-app-1a2b"},
		{"moto stack set stack", "arn:aws:cloudformation:us-east-1:" + acct + ":stack/StackSet:silo-tenant-app/9f8e", "stack", "StackSet:silo-tenant-app"},
		{"api stage", "arn:aws:apigateway:us-east-1::/restapis/a1b2c3/stages/v1", "", ""},
		{"table index", "arn:aws:dynamodb:us-east-1:" + acct + ":table/t/index/i", "", ""},
		{"object", "arn:aws:s3:::bucket/key", "", ""},
		{"iam policy", "arn:aws:iam::" + acct + ":policy/p", "", ""},
		{"queue", "arn:aws:sqs:us-east-1:" + acct + ":q", "", ""},
		{"not an arn", "silo-acme-data", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, name, ok := resourceOf(tc.arn)
			if ok != (tc.kind != "") || kind != tc.kind || name != tc.res {
				t.Errorf("resourceOf(%q) = %q, %q, %v; want %q, %q", tc.arn, kind, name, ok, tc.kind, tc.res)
			}
		})
	}
}

func TestBaselineRole(t *testing.T) {
	cases := []struct {
		name, role, path, acting string
		baseline                 bool
	}{
		{"organizations' role", awsx.MemberRole, "/", awsx.MemberRole, true},
		{"organizations' role when acting through another", awsx.MemberRole, "/", "SiloAccess", true},
		{"the role silo acts through", "SiloAccess", "/", "SiloAccess", true},
		{"service-linked role", "AWSServiceRoleForAutoScaling", "/aws-service-role/autoscaling.amazonaws.com/", awsx.MemberRole, true},
		{"identity center role", "AWSReservedSSO_Admin_0123", "/aws-reserved/sso.amazonaws.com/", awsx.MemberRole, true},
		{"tenant app role", "silo-acme-app", "/", awsx.MemberRole, false},
		{"role named like a service path", "aws-service-role", "/", awsx.MemberRole, false},
		{"similar name", awsx.MemberRole + "2", "/", awsx.MemberRole, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := baselineRole(tc.role, tc.path, tc.acting); got != tc.baseline {
				t.Errorf("baselineRole(%q, %q, %q) = %v, want %v", tc.role, tc.path, tc.acting, got, tc.baseline)
			}
		})
	}
}

// cleanFixture is a fresh member account and a cleaner acting in it.
type cleanFixture struct {
	tenant  *registry.Tenant
	member  aws.Config
	cleaner *AccountCleaner
}

// newCleanFixture resets the emulator and creates one member account.
// Calls are tried up to attempts times, a millisecond apart at most, so a
// failure the proxy injects is retried without slowing the test down.
func newCleanFixture(ctx context.Context, t *testing.T, attempts int) cleanFixture {
	t.Helper()
	org := emu.ResetT(t)
	o := org.Options()
	o.MaxAttempts, o.MaxBackoff, o.Standard = attempts, time.Millisecond, true
	mgmt, err := awsx.Load(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := org.NewAccount(ctx, "preview-1")
	if err != nil {
		t.Fatal(err)
	}
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return cleanFixture{
		tenant:  &registry.Tenant{Spec: registry.Spec{ID: "acme", Region: org.Region}, AccountID: acct},
		member:  accounts.Config(acct),
		cleaner: NewCleaner(accounts, 7, log),
	}
}

const lambdaTrust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// plantRole creates a role tagged for tenant with a managed policy
// attached, an inline policy and an instance profile holding it.
func plantRole(ctx context.Context, t *testing.T, im *iam.Client, role, tenant string) {
	t.Helper()
	if _, err := im.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String(role), AssumeRolePolicyDocument: aws.String(lambdaTrust),
		Tags: []iamtypes.Tag{{Key: aws.String(TagTenant), Value: aws.String(tenant)}},
	}); err != nil {
		t.Fatal(err)
	}
	pol, err := im.CreatePolicy(ctx, &iam.CreatePolicyInput{
		PolicyName:     aws.String(role + "-data"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"dynamodb:*","Resource":"*"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(role), PolicyArn: pol.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	if _, err := im.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(role), PolicyName: aws.String("inline"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := im.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(role)}); err != nil {
		t.Fatal(err)
	}
	if _, err := im.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(role), RoleName: aws.String(role)}); err != nil {
		t.Fatal(err)
	}
}

// leftoverStack is a stack as a tenant's engineer might leave one: moto
// deletes its role with it, but not its REST API (which the cleaner then
// finds and deletes itself).
const leftoverStack = `{"Resources":{
 "Role":{"Type":"AWS::IAM::Role","Properties":{"RoleName":"stack-made","AssumeRolePolicyDocument":` + lambdaTrust + `}},
 "Api":{"Type":"AWS::ApiGateway::RestApi","Properties":{"Name":"stack-made"}}}}`

func TestCleanEmptiesAccountToBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := newCleanFixture(ctx, t, 3)
	im := iam.NewFromConfig(f.member)

	// What a preview lease may leave behind.
	plantRole(ctx, t, im, "silo-acme-app", "acme")
	if _, err := im.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("autoscaling.amazonaws.com")}); err != nil {
		t.Fatal(err)
	}
	agw := apigateway.NewFromConfig(f.member)
	api, err := agw.CreateRestApi(ctx, &apigateway.CreateRestApiInput{Name: aws.String("silo-acme"), Tags: map[string]string{TagTenant: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	cfn := cloudformation.NewFromConfig(f.member)
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String("leftover"), TemplateBody: aws.String(leftoverStack),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityNamedIam},
		Tags:         []cfntypes.Tag{{Key: aws.String(TagTenant), Value: aws.String("acme")}},
	}); err != nil {
		t.Fatal(err)
	}
	apis, err := agw.GetRestApis(ctx, &apigateway.GetRestApisInput{})
	if err != nil {
		t.Fatal(err)
	}
	var stackAPI string
	for _, a := range apis.Items {
		if aws.ToString(a.Name) == "stack-made" {
			stackAPI = aws.ToString(a.Id)
		}
	}
	if stackAPI == "" {
		t.Fatalf("the stack made no REST API: %v", apis.Items)
	}
	ddb := dynamodb.NewFromConfig(f.member)
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("planted-table"), BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: ddbtypes.KeyTypeHash}},
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
	}); err != nil {
		t.Fatal(err)
	}
	s3c := s3.NewFromConfig(f.member, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := "planted-" + f.tenant.AccountID
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "b/c", "d"} {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader([]byte(key))}); err != nil {
			t.Fatal(err)
		}
	}

	report, err := f.cleaner.Clean(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}

	// Found lists the kinds in deletion order.
	if !sort.SliceIsSorted(report.Found, func(i, j int) bool { return kindOrder(report.Found[i].Kind) < kindOrder(report.Found[j].Kind) }) {
		t.Errorf("found out of kind order: %v", report.Found)
	}
	want := []Found{
		{Kind: "stack", Name: "leftover", Tagged: true, Action: "deleted"},
		{Kind: "rest_api", Name: aws.ToString(api.Id), Tagged: true, Action: "deleted"},
		{Kind: "rest_api", Name: stackAPI, Action: "deleted"},
		{Kind: "role", Name: "silo-acme-app", Tagged: true, Action: "deleted"},
		{Kind: "role", Name: "stack-made", Action: "deleted"}, // gone with its stack
		{Kind: "table", Name: "planted-table", Action: "deleted"},
		{Kind: "bucket", Name: bucket, Action: "deleted"},
	}
	got := slices.Clone(report.Found)
	sort.SliceStable(got, func(i, j int) bool {
		if got[i].Kind != got[j].Kind {
			return kindOrder(got[i].Kind) < kindOrder(got[j].Kind)
		}
		return got[i].Name < got[j].Name
	})
	sort.SliceStable(want, func(i, j int) bool {
		if want[i].Kind != want[j].Kind {
			return kindOrder(want[i].Kind) < kindOrder(want[j].Kind)
		}
		return want[i].Name < want[j].Name
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Found{}, report.Remaining); diff != "" {
		t.Errorf("remaining (-want +got):\n%s", diff)
	}
	for _, k := range []string{"stack", "rest_api", "role"} {
		if !slices.Contains(report.Checked, k) {
			t.Errorf("checked %v, without %s", report.Checked, k)
		}
	}

	// The baseline is still there; the rest is gone.
	for _, role := range []string{awsx.MemberRole, "AWSServiceRoleForAutoScaling"} {
		if _, err := im.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(role)}); err != nil {
			t.Errorf("baseline role %s: %v", role, err)
		}
	}
	if _, err := im.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("silo-acme-app")}); !awsx.IsNotFound(err) {
		t.Errorf("instance profile of the deleted role: %v, want not found", err)
	}
	if left, err := agw.GetRestApis(ctx, &apigateway.GetRestApisInput{}); err != nil || len(left.Items) != 0 {
		t.Errorf("rest apis left: %v, %v", left, err)
	}
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); !awsx.IsNotFound(err) {
		t.Errorf("bucket after clean: %v, want not found", err)
	}
	// The member role still works: silo can act in the account again.
	if _, err := sts.NewFromConfig(f.member).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Errorf("acting in the account after clean: %v", err)
	}

	// Cleaning a clean account finds nothing.
	again, err := f.cleaner.Clean(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Found)+len(again.Remaining) != 0 {
		t.Errorf("second clean: found %v, remaining %v", again.Found, again.Remaining)
	}
}

func TestCleanReportsWhatItCouldNotRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := newCleanFixture(ctx, t, 2)
	im := iam.NewFromConfig(f.member)
	plantRole(ctx, t, im, "silo-acme-app", "acme")
	ddb := dynamodb.NewFromConfig(f.member)
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("planted-table"), BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: ddbtypes.KeyTypeHash}},
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
	}); err != nil {
		t.Fatal(err)
	}
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.String() == "IAM.DeleteRole" {
			return errors.New("injected: role deletion fails")
		}
		return nil
	})

	report, err := f.cleaner.Clean(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	emu.Proxy.SetHook(nil)

	byName := map[string]Found{}
	for _, r := range report.Found {
		byName[r.Kind+"/"+r.Name] = r
	}
	if r := byName["table/planted-table"]; r.Action != "deleted" {
		t.Errorf("table: %+v, want deleted (one failure does not stop the rest)", r)
	}
	role := byName["role/silo-acme-app"]
	if role.Action != "left" || !strings.Contains(role.Error, "delete role silo-acme-app") {
		t.Errorf("role in found: %+v, want left with the deletion's error", role)
	}
	if len(report.Remaining) != 1 {
		t.Fatalf("remaining %v, want the role alone", report.Remaining)
	}
	r := report.Remaining[0]
	if r.Kind != "role" || r.Name != "silo-acme-app" || !r.Tagged || r.Action != "left" || r.Error != role.Error {
		t.Errorf("remaining %+v, want the tagged role, left, with its error", r)
	}
	// Tried twice (once more after the other removals), each call retried.
	if n := emu.Proxy.Stats().Calls["IAM.DeleteRole"]; n != 4 {
		t.Errorf("%d DeleteRole calls, want 2 tries of 2 attempts", n)
	}
	// The role's policies went before the failing call; the role stays.
	if _, err := im.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("silo-acme-app")}); err != nil {
		t.Errorf("role after failed removal: %v", err)
	}
	attached, err := im.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("silo-acme-app")})
	if err != nil || len(attached.AttachedPolicies) != 0 {
		t.Errorf("policies still attached: %v, %v", attached, err)
	}
}
