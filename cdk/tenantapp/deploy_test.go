package tenantapp

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
)

// TestDeployIntoMemberAccount deploys the template with plain CloudFormation
// into member account A and checks that the tenant's resources exist in A,
// seen with A's credentials, and not in B.
func TestDeployIntoMemberAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	mgmt, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	acctA := createAccount(ctx, t, o, "tenant-a")
	acctB := createAccount(ctx, t, o, "tenant-b")
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{})
	cfgA, cfgB := accounts.Config(acctA), accounts.Config(acctB)

	// The code artifact sits in the organization's artifact bucket in the
	// management account, as in AWS.
	const codeBucket, codeKey = "silo-artifacts-test", "tenantapp/v1.zip"
	s3M := s3.NewFromConfig(mgmt, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3M.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(codeBucket)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3M.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(codeBucket), Key: aws.String(codeKey), Body: bytes.NewReader(bootstrapZip(t))}); err != nil {
		t.Fatal(err)
	}

	// The committed template as it is, only minified (CreateStack takes at
	// most 51,200 bytes of TemplateBody). The emulator harness patches the
	// gaps of moto that used to need an adapted copy (internal/emulator/py).
	var compact bytes.Buffer
	if err := json.Compact(&compact, template); err != nil {
		t.Fatal(err)
	}
	body := compact.String()
	const tenant = "acme"
	cfnA := cloudformation.NewFromConfig(cfgA)
	params := map[string]string{
		ParamTenantID: tenant, ParamAppVersion: "1.0.0", ParamTier: "standard",
		ParamCodeBucket: codeBucket, ParamCodeKey: codeKey,
		ParamJwtIssuer: "https://auth.example.com/", ParamJwtAudience: "silo-app",
	}
	var cfnParams []cfntypes.Parameter
	for k, v := range params {
		cfnParams = append(cfnParams, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	const stackName = "silo-tenant-acme"
	if _, err := cfnA.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(stackName), TemplateBody: aws.String(body),
		Parameters: cfnParams, Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam},
	}); err != nil {
		t.Fatalf("create stack: %v", err)
	}
	w := cloudformation.NewStackCreateCompleteWaiter(cfnA, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	})
	out, err := w.WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stackName)}, 2*time.Minute)
	if err != nil {
		t.Fatalf("wait for CREATE_COMPLETE: %v", err)
	}
	if st := out.Stacks[0].StackStatus; st != cfntypes.StackStatusCreateComplete {
		t.Fatalf("stack status %s", st)
	}

	wantTable, wantFunction := "silo-"+tenant+"-data", "silo-"+tenant+"-app"
	wantBucket := fmt.Sprintf("silo-%s-%s-%s", tenant, acctA, o.Region)

	seen := inventory(ctx, t, cfgA)
	if len(seen["secret"]) != 1 {
		t.Errorf("account A: secrets %v, want the stack's one", seen["secret"])
	}
	for kind, name := range map[string]string{"table": wantTable, "bucket": wantBucket, "function": wantFunction} {
		if !slices.Contains(seen[kind], name) {
			t.Errorf("account A: %s %s missing; found %v", kind, name, seen[kind])
		}
	}
	if len(seen["key"]) == 0 {
		t.Error("account A: no KMS key")
	}
	res, err := cfnA.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(stackName)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.StackResources {
		if aws.ToString(r.ResourceType) == "AWS::KMS::Key" && !slices.Contains(seen["key"], aws.ToString(r.PhysicalResourceId)) {
			t.Errorf("account A: stack key %s not listed by KMS (%v)", aws.ToString(r.PhysicalResourceId), seen["key"])
		}
	}

	other := inventory(ctx, t, cfgB)
	for kind, names := range other {
		if len(names) > 0 {
			t.Errorf("account B: unexpected %s %v", kind, names)
		}
	}
}

// inventory lists, with cfg's credentials, the names of what the tenant
// stack creates: tables, buckets, functions, secrets and key ids.
func inventory(ctx context.Context, t *testing.T, cfg aws.Config) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	tables, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	out["table"] = tables.TableNames
	buckets, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets.Buckets {
		if name := aws.ToString(b.Name); name != "silo-artifacts-test" {
			out["bucket"] = append(out["bucket"], name)
		}
	}
	fns, err := lambda.NewFromConfig(cfg).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fns.Functions {
		out["function"] = append(out["function"], aws.ToString(f.FunctionName))
	}
	secrets, err := secretsmanager.NewFromConfig(cfg).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.SecretList {
		out["secret"] = append(out["secret"], aws.ToString(s.Name))
	}
	keys, err := kms.NewFromConfig(cfg).ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.Keys {
		out["key"] = append(out["key"], aws.ToString(k.KeyId))
	}
	return out
}

// createAccount vends a member account through the emulator's helper.
func createAccount(ctx context.Context, t *testing.T, o *emulator.Org, name string) string {
	t.Helper()
	id, err := o.NewAccount(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// bootstrapZip is a Lambda deployment package: a zip with an executable
// named bootstrap (content irrelevant, moto never runs it).
func bootstrapZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	f, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("#!/bin/sh\nexit 1\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
