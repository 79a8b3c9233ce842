package stacksets

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// templateBucket returns the logical id of the tenant template's bucket
// and the name it gets for tenant in account and region, from the
// template's own Fn::Sub, so that the test follows the template.
func templateBucket(t *testing.T, tenant, account, region string) (logical, name string) {
	t.Helper()
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				BucketName struct {
					Sub string `json:"Fn::Sub"`
				}
			}
		}
	}
	if err := json.Unmarshal(TenantTemplate(), &tpl); err != nil {
		t.Fatal(err)
	}
	for id, r := range tpl.Resources {
		if r.Type == "AWS::S3::Bucket" && r.Properties.BucketName.Sub != "" {
			return id, strings.NewReplacer("${TenantId}", tenant, "${AWS::AccountId}", account, "${AWS::Region}", region).
				Replace(r.Properties.BucketName.Sub)
		}
	}
	t.Fatal("the tenant template names no bucket with Fn::Sub")
	return "", ""
}

// s3Refusal is what S3 answers the member account creating bucket now.
func s3Refusal(ctx context.Context, t *testing.T, client *s3.Client, bucket string) string {
	t.Helper()
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("create bucket %s: %v, want S3 to refuse it", bucket, err)
	}
	return apiErr.ErrorMessage()
}

// TestStackFailure deploys the real tenant template into an account where
// S3 refuses its bucket's name (another account holds it): the operation
// fails with the stack's generic reason, and StackFailure reads S3's own
// refusal from the member stack's events.
func TestStackFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := setup(ctx, t)
	bad, good := createAccount(ctx, t, f.org, "tenant-bad"), createAccount(ctx, t, f.org, "tenant-good")
	region := f.org.Region
	rel, err := f.m.Publish(ctx, TenantTemplate(), codeZip(t, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.EnsureStackSet(ctx, rel, Rollout{}); err != nil {
		t.Fatal(err)
	}
	logical, bucket := templateBucket(t, "acme", bad, region)
	mgmtS3 := s3.NewFromConfig(f.cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := mgmtS3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	refused := s3Refusal(ctx, t, s3.NewFromConfig(f.accounts.Config(bad), func(o *s3.Options) { o.UsePathStyle = true }), bucket)

	if _, err := f.m.StackFailure(ctx, bad, region); !errors.Is(err, ErrNotFound) {
		t.Errorf("StackFailure before any instance: %v, want ErrNotFound", err)
	}
	op, err := f.m.AddInstance(ctx, OperationID("acme", "deploy", 1), bad, region, tenantParams(rel, "acme", "1.0.0", "basic"))
	if err != nil {
		t.Fatalf("add instance: %v", err)
	}
	_, err = f.m.Wait(ctx, op)
	var oe *OperationError
	if !errors.As(err, &oe) {
		t.Fatalf("wait: %v, want an *OperationError", err)
	}
	if got, want := oe.Accounts[bad], region+": The following resource(s) failed to create: ["+logical+"]. Delete requested by user."; got != want {
		t.Errorf("operation's reason for the account: %q, want %q", got, want)
	}
	got, err := f.m.StackFailure(ctx, bad, region)
	if err != nil {
		t.Fatal(err)
	}
	if prefix := logical + " (AWS::S3::Bucket): "; !strings.HasPrefix(got, prefix) || !strings.Contains(got, refused) {
		t.Errorf("StackFailure = %q, want %q and S3's refusal %q", got, prefix, refused)
	}
	t.Logf("stack failure: %s", got)

	// A healthy instance has no failure.
	op, err = f.m.AddInstance(ctx, OperationID("globex", "deploy", 1), good, region, tenantParams(rel, "globex", "1.0.0", "basic"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Wait(ctx, op); err != nil {
		t.Fatal(err)
	}
	if got, err := f.m.StackFailure(ctx, good, region); err != nil || got != "" {
		t.Errorf("StackFailure of a healthy instance: %q, %v; want nothing", got, err)
	}

	// The failed instance is removed: nothing to read any more.
	op, err = f.m.RemoveInstance(ctx, OperationID("acme", "remove", 1), bad, region, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Wait(ctx, op); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.StackFailure(ctx, bad, region); !errors.Is(err, ErrNotFound) {
		t.Errorf("StackFailure after the removal: %v, want ErrNotFound", err)
	}
}
