package vending

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	taggingapi "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi"
	tagtypes "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
)

// AccountCleaner deletes what a tenant owned in its account and proves by
// inventory that nothing is left. It looks not only at what the stack
// created (found through the tagging API) but lists every kind of resource
// the tenant app can create, so a table or bucket made outside the stack is
// found, deleted and reported too.
type AccountCleaner struct {
	accounts *awsx.Accounts
	keyDays  int32
	log      *slog.Logger
}

// NewCleaner returns a cleaner acting in member accounts through accounts.
func NewCleaner(accounts *awsx.Accounts, keyDeletionDays int32, log *slog.Logger) *AccountCleaner {
	if keyDeletionDays == 0 {
		keyDeletionDays = 7
	}
	return &AccountCleaner{accounts: accounts, keyDays: keyDeletionDays, log: log}
}

// kinds the cleaner checks, in the order it deletes them (functions before
// the data they use; keys last, as their deletion is only scheduled).
var kinds = []string{"function", "log_group", "table", "bucket", "secret", "kms_key"}

// Clean empties the tenant's account and returns the report.
func (c *AccountCleaner) Clean(ctx context.Context, t *registry.Tenant) (*DeletionReport, error) {
	cfg := c.accounts.Config(t.AccountID)
	cfg.Region = t.Region
	cl := clients{
		lambda:  lambda.NewFromConfig(cfg),
		logs:    cloudwatchlogs.NewFromConfig(cfg),
		ddb:     dynamodb.NewFromConfig(cfg),
		s3:      s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = awsx.Emulated(cfg) }),
		secrets: secretsmanager.NewFromConfig(cfg),
		kms:     kms.NewFromConfig(cfg),
		tagging: taggingapi.NewFromConfig(cfg),
	}
	tagged, err := cl.taggedNames(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	report := &DeletionReport{Account: t.AccountID, Region: t.Region, Checked: kinds}
	first, err := cl.inventory(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range first {
		f.Tagged = tagged[f.Name]
		if err := cl.remove(ctx, f, c.keyDays); err != nil {
			f.Action, f.Error = "left", err.Error()
		} else if f.Kind == "kms_key" {
			f.Action = "deletion_scheduled"
		} else {
			f.Action = "deleted"
		}
		report.Found = append(report.Found, f)
	}
	second, err := cl.inventory(ctx)
	if err != nil {
		return nil, err
	}
	report.Remaining = second
	if report.Remaining == nil {
		report.Remaining = []Found{}
	}
	c.log.InfoContext(ctx, "account cleaned", "tenant", t.ID, "account", t.AccountID, "found", len(report.Found), "remaining", len(report.Remaining))
	return report, nil
}

type clients struct {
	lambda  *lambda.Client
	logs    *cloudwatchlogs.Client
	ddb     *dynamodb.Client
	s3      *s3.Client
	secrets *secretsmanager.Client
	kms     *kms.Client
	tagging *taggingapi.Client
}

// taggedNames returns the names (last part of the ARN, or the key id) of
// everything tagged for the tenant.
func (cl clients) taggedNames(ctx context.Context, tenant string) (map[string]bool, error) {
	out := map[string]bool{}
	p := taggingapi.NewGetResourcesPaginator(cl.tagging, &taggingapi.GetResourcesInput{
		TagFilters: []tagtypes.TagFilter{{Key: aws.String(TagTenant), Values: []string{tenant}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("tagging api: %w", err)
		}
		for _, m := range page.ResourceTagMappingList {
			out[arnName(aws.ToString(m.ResourceARN))] = true
		}
	}
	return out, nil
}

// arnName returns what follows the last '/' or ':' of an ARN.
func arnName(arn string) string {
	for i := len(arn) - 1; i >= 0; i-- {
		if arn[i] == '/' || arn[i] == ':' {
			return arn[i+1:]
		}
	}
	return arn
}

// inventory lists everything of the checked kinds in the account; keys
// already pending deletion count as gone.
func (cl clients) inventory(ctx context.Context) ([]Found, error) {
	var out []Found
	add := func(kind, name string) { out = append(out, Found{Kind: kind, Name: name}) }

	fp := lambda.NewListFunctionsPaginator(cl.lambda, &lambda.ListFunctionsInput{})
	for fp.HasMorePages() {
		page, err := fp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list functions: %w", err)
		}
		for _, f := range page.Functions {
			add("function", aws.ToString(f.FunctionName))
		}
	}
	lp := cloudwatchlogs.NewDescribeLogGroupsPaginator(cl.logs, &cloudwatchlogs.DescribeLogGroupsInput{})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list log groups: %w", err)
		}
		for _, g := range page.LogGroups {
			add("log_group", aws.ToString(g.LogGroupName))
		}
	}
	tp := dynamodb.NewListTablesPaginator(cl.ddb, &dynamodb.ListTablesInput{})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		for _, name := range page.TableNames {
			add("table", name)
		}
	}
	buckets, err := cl.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", err)
	}
	for _, b := range buckets.Buckets {
		add("bucket", aws.ToString(b.Name))
	}
	sp := secretsmanager.NewListSecretsPaginator(cl.secrets, &secretsmanager.ListSecretsInput{})
	for sp.HasMorePages() {
		page, err := sp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		for _, s := range page.SecretList {
			if s.DeletedDate == nil {
				add("secret", aws.ToString(s.ARN))
			}
		}
	}
	kp := kms.NewListKeysPaginator(cl.kms, &kms.ListKeysInput{})
	for kp.HasMorePages() {
		page, err := kp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		for _, k := range page.Keys {
			d, err := cl.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
			if err != nil {
				return nil, fmt.Errorf("describe key %s: %w", aws.ToString(k.KeyId), err)
			}
			md := d.KeyMetadata
			if md.KeyManager == kmstypes.KeyManagerTypeCustomer && md.KeyState != kmstypes.KeyStatePendingDeletion {
				add("kms_key", aws.ToString(k.KeyId))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kindOrder(out[i].Kind) < kindOrder(out[j].Kind) })
	return out, nil
}

func kindOrder(k string) int {
	for i, kk := range kinds {
		if kk == k {
			return i
		}
	}
	return len(kinds)
}

func (cl clients) remove(ctx context.Context, f Found, keyDays int32) error {
	var err error
	switch f.Kind {
	case "function":
		_, err = cl.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(f.Name)})
	case "log_group":
		_, err = cl.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String(f.Name)})
	case "table":
		_, err = cl.ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(f.Name)})
	case "bucket":
		err = cl.emptyAndDeleteBucket(ctx, f.Name)
	case "secret":
		_, err = cl.secrets.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(f.Name), ForceDeleteWithoutRecovery: aws.Bool(true)})
	case "kms_key":
		_, err = cl.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(f.Name), PendingWindowInDays: aws.Int32(keyDays)})
	}
	if awsx.IsNotFound(err) {
		return nil
	}
	return err
}

// emptyAndDeleteBucket removes every object version and delete marker, then
// the bucket (tenant buckets are versioned).
func (cl clients) emptyAndDeleteBucket(ctx context.Context, bucket string) error {
	p := s3.NewListObjectVersionsPaginator(cl.s3, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list versions of %s: %w", bucket, err)
		}
		var ids []s3types.ObjectIdentifier
		for _, v := range page.Versions {
			ids = append(ids, s3types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range page.DeleteMarkers {
			ids = append(ids, s3types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		for len(ids) > 0 {
			n := min(len(ids), 1000)
			if _, err := cl.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids[:n], Quiet: aws.Bool(true)}}); err != nil {
				return fmt.Errorf("empty %s: %w", bucket, err)
			}
			ids = ids[n:]
		}
	}
	_, err := cl.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	return err
}
