package vending

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
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
//
// It runs after the tenant's stack instance was removed from the stack set
// (decommission, pool reset): a stack it finds then is a leftover, and it
// deletes it. Run while the instance exists, it would delete the instance's
// stack behind the stack set's back.
type AccountCleaner struct {
	accounts  *awsx.Accounts
	keyDays   int32
	stackWait time.Duration
	log       *slog.Logger
}

// NewCleaner returns a cleaner acting in member accounts through accounts.
func NewCleaner(accounts *awsx.Accounts, keyDeletionDays int32, log *slog.Logger) *AccountCleaner {
	if keyDeletionDays == 0 {
		keyDeletionDays = 7
	}
	// A tenant stack deletes in a few minutes; the bound only keeps a stuck
	// deletion from holding the reconciler for ever.
	return &AccountCleaner{accounts: accounts, keyDays: keyDeletionDays, stackWait: 15 * time.Minute, log: log}
}

// kinds the cleaner checks, in the order it deletes them:
//   - stacks first: CloudFormation deletes what a stack still holds in
//     dependency order; whatever it retains or fails on is also listed
//     under its own kind below and deleted directly;
//   - the API (it invokes the functions), then functions, their log groups
//     (a running function would recreate its group), and the roles the
//     functions run as;
//   - the data: tables, buckets, secrets; keys last, as they encrypt the
//     data and their deletion is only scheduled.
var kinds = []string{"stack", "rest_api", "function", "log_group", "role", "table", "bucket", "secret", "kms_key"}

// baselineRoleNames and baselineRolePaths are the roles every account keeps
// and no cleaning deletes:
//   - awsx.MemberRole (OrganizationAccountAccessRole): Organizations creates
//     it with the account, silo acts in the account through it and the
//     self-managed stack set deploys through it; without it the account is
//     lost to silo;
//   - service-linked roles (path /aws-service-role/): they belong to AWS
//     services and are deleted only through them;
//   - IAM Identity Center's roles (path /aws-reserved/): managed from the
//     management account.
//
// The role the cleaner itself acts through is kept too (see baselineRole),
// for a silo configured to assume another role than MemberRole.
var (
	baselineRoleNames = []string{awsx.MemberRole}
	baselineRolePaths = []string{"/aws-service-role/", "/aws-reserved/"}
)

// baselineRole reports whether the role is part of every account's
// baseline; acting is the role silo assumes in member accounts.
func baselineRole(name, path, acting string) bool {
	if name == acting {
		return true
	}
	for _, n := range baselineRoleNames {
		if name == n {
			return true
		}
	}
	for _, p := range baselineRolePaths {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Clean empties the tenant's account and returns the report.
func (c *AccountCleaner) Clean(ctx context.Context, t *registry.Tenant) (*DeletionReport, error) {
	cfg := c.accounts.Config(t.AccountID)
	cfg.Region = t.Region
	s := sweeper{
		tenant:    t.ID,
		acting:    c.accounts.Role(),
		keyDays:   c.keyDays,
		stackWait: c.stackWait,
		cfn:       cloudformation.NewFromConfig(cfg),
		apigw:     apigateway.NewFromConfig(cfg),
		lambda:    lambda.NewFromConfig(cfg),
		logs:      cloudwatchlogs.NewFromConfig(cfg),
		iam:       iam.NewFromConfig(cfg),
		ddb:       dynamodb.NewFromConfig(cfg),
		s3:        s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = awsx.Emulated(cfg) }),
		secrets:   secretsmanager.NewFromConfig(cfg),
		kms:       kms.NewFromConfig(cfg),
		tagging:   taggingapi.NewFromConfig(cfg),
	}
	tagged, err := s.taggedResources(ctx)
	if err != nil {
		return nil, err
	}
	report := &DeletionReport{Account: t.AccountID, Region: t.Region, Checked: kinds}
	first, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	// A removal that fails is tried once more after all the others: what
	// blocked it may be gone by then (a stack whose deletion failed on a
	// non-empty bucket, say, once the bucket was emptied and deleted).
	var failed []int
	for i, f := range first {
		f.Tagged = f.Tagged || tagged[resource{f.Kind, f.Name}]
		err := s.remove(ctx, f)
		if err != nil {
			failed = append(failed, i)
		}
		report.Found = append(report.Found, outcome(f, err))
	}
	for _, i := range failed {
		report.Found[i] = outcome(report.Found[i], s.remove(ctx, report.Found[i]))
	}
	second, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	// What is left says why: the first pass's action and error.
	done := map[resource]Found{}
	for _, f := range report.Found {
		done[resource{f.Kind, f.Name}] = f
	}
	for i, r := range second {
		key := resource{r.Kind, r.Name}
		second[i].Tagged = r.Tagged || tagged[key]
		if f, ok := done[key]; ok {
			second[i].Action, second[i].Error = f.Action, f.Error
		}
	}
	report.Remaining = second
	if report.Remaining == nil {
		report.Remaining = []Found{}
	}
	c.log.InfoContext(ctx, "account cleaned", "tenant", t.ID, "account", t.AccountID, "found", len(report.Found), "remaining", len(report.Remaining))
	return report, nil
}

// outcome records on f what its removal did.
func outcome(f Found, err error) Found {
	f.Error = ""
	switch {
	case err != nil:
		f.Action, f.Error = "left", err.Error()
	case f.Kind == "kms_key":
		f.Action = "deletion_scheduled"
	default:
		f.Action = "deleted"
	}
	return f
}

// sweeper acts in one member account for one tenant.
type sweeper struct {
	tenant    string
	acting    string // the role silo assumes in the account; never deleted
	keyDays   int32
	stackWait time.Duration

	cfn     *cloudformation.Client
	apigw   *apigateway.Client
	lambda  *lambda.Client
	logs    *cloudwatchlogs.Client
	iam     *iam.Client
	ddb     *dynamodb.Client
	s3      *s3.Client
	secrets *secretsmanager.Client
	kms     *kms.Client
	tagging *taggingapi.Client
}

// resource is a kind and a name as the inventory reports them.
type resource struct{ kind, name string }

// taggedResources returns the resources the tagging API finds tagged for
// the tenant.
func (s sweeper) taggedResources(ctx context.Context) (map[resource]bool, error) {
	out := map[resource]bool{}
	p := taggingapi.NewGetResourcesPaginator(s.tagging, &taggingapi.GetResourcesInput{
		TagFilters: []tagtypes.TagFilter{{Key: aws.String(TagTenant), Values: []string{s.tenant}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("tagging api: %w", err)
		}
		for _, m := range page.ResourceTagMappingList {
			if kind, name, ok := resourceOf(aws.ToString(m.ResourceARN)); ok {
				out[resource{kind, name}] = true
			}
		}
	}
	return out, nil
}

// resourceOf returns the kind and the name the inventory gives the resource
// an ARN names; ok is false for what the cleaner does not check.
func resourceOf(arn string) (kind, name string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return "", "", false
	}
	service, res := parts[2], parts[5]
	segments := strings.Split(res, "/")
	switch {
	case service == "lambda" && strings.HasPrefix(res, "function:"):
		// function:NAME, or function:NAME:QUALIFIER
		name, _, _ = strings.Cut(strings.TrimPrefix(res, "function:"), ":")
		return "function", name, true
	case service == "logs" && strings.HasPrefix(res, "log-group:"):
		// log-group:NAME, or log-group:NAME:* (group names hold '/')
		return "log_group", strings.TrimSuffix(strings.TrimPrefix(res, "log-group:"), ":*"), true
	case service == "dynamodb" && segments[0] == "table" && len(segments) == 2:
		return "table", segments[1], true
	case service == "s3" && len(segments) == 1 && res != "":
		return "bucket", res, true
	case service == "secretsmanager" && strings.HasPrefix(res, "secret:"):
		return "secret", arn, true // the inventory names secrets by ARN
	case service == "kms" && segments[0] == "key" && len(segments) == 2:
		return "kms_key", segments[1], true
	case service == "iam" && segments[0] == "role" && len(segments) >= 2:
		// role/NAME or role/PATH/NAME
		return "role", segments[len(segments)-1], true
	case service == "apigateway" && len(segments) == 3 && segments[0] == "" && segments[1] == "restapis":
		return "rest_api", segments[2], true
	case service == "cloudformation" && segments[0] == "stack" && len(segments) == 3:
		// stack/NAME/ID
		return "stack", segments[1], true
	}
	return "", "", false
}

// hasTenantTag reports whether one of the key/value pairs is the tenant tag.
func (s sweeper) hasTenantTag(tags map[string]string) bool { return tags[TagTenant] == s.tenant }

// inventory lists everything of the checked kinds in the account, but the
// baseline; keys already pending deletion count as gone. Tagged is set
// where the listing shows tags (stacks, APIs, roles: kinds the tagging API
// may not report).
func (s sweeper) inventory(ctx context.Context) ([]Found, error) {
	var out []Found
	add := func(kind, name string) { out = append(out, Found{Kind: kind, Name: name}) }
	addTagged := func(kind, name string, tagged bool) {
		out = append(out, Found{Kind: kind, Name: name, Tagged: tagged})
	}

	sp := cloudformation.NewDescribeStacksPaginator(s.cfn, &cloudformation.DescribeStacksInput{})
	for sp.HasMorePages() {
		page, err := sp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list stacks: %w", err)
		}
		for _, st := range page.Stacks {
			// A nested stack goes with its root.
			if st.StackStatus == cfntypes.StackStatusDeleteComplete || st.ParentId != nil {
				continue
			}
			tags := map[string]string{}
			for _, tg := range st.Tags {
				tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
			addTagged("stack", aws.ToString(st.StackName), s.hasTenantTag(tags))
		}
	}
	ap := apigateway.NewGetRestApisPaginator(s.apigw, &apigateway.GetRestApisInput{})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list rest apis: %w", err)
		}
		for _, a := range page.Items {
			addTagged("rest_api", aws.ToString(a.Id), s.hasTenantTag(a.Tags))
		}
	}
	fp := lambda.NewListFunctionsPaginator(s.lambda, &lambda.ListFunctionsInput{})
	for fp.HasMorePages() {
		page, err := fp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list functions: %w", err)
		}
		for _, f := range page.Functions {
			add("function", aws.ToString(f.FunctionName))
		}
	}
	lp := cloudwatchlogs.NewDescribeLogGroupsPaginator(s.logs, &cloudwatchlogs.DescribeLogGroupsInput{})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list log groups: %w", err)
		}
		for _, g := range page.LogGroups {
			add("log_group", aws.ToString(g.LogGroupName))
		}
	}
	rp := iam.NewListRolesPaginator(s.iam, &iam.ListRolesInput{})
	for rp.HasMorePages() {
		page, err := rp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list roles: %w", err)
		}
		for _, r := range page.Roles {
			name := aws.ToString(r.RoleName)
			if baselineRole(name, aws.ToString(r.Path), s.acting) {
				continue
			}
			// ListRoles leaves tags out, and the tagging API may not
			// report roles (moto's does not).
			tagged, err := s.roleTagged(ctx, name)
			if err != nil {
				return nil, err
			}
			addTagged("role", name, tagged)
		}
	}
	tp := dynamodb.NewListTablesPaginator(s.ddb, &dynamodb.ListTablesInput{})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		for _, name := range page.TableNames {
			add("table", name)
		}
	}
	buckets, err := s.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", err)
	}
	for _, b := range buckets.Buckets {
		add("bucket", aws.ToString(b.Name))
	}
	secp := secretsmanager.NewListSecretsPaginator(s.secrets, &secretsmanager.ListSecretsInput{})
	for secp.HasMorePages() {
		page, err := secp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		for _, sec := range page.SecretList {
			if sec.DeletedDate == nil {
				add("secret", aws.ToString(sec.ARN))
			}
		}
	}
	kp := kms.NewListKeysPaginator(s.kms, &kms.ListKeysInput{})
	for kp.HasMorePages() {
		page, err := kp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		for _, k := range page.Keys {
			md, err := s.describeKey(ctx, aws.ToString(k.KeyId))
			if err != nil {
				return nil, err
			}
			if md.KeyManager == kmstypes.KeyManagerTypeCustomer && md.KeyState != kmstypes.KeyStatePendingDeletion {
				add("kms_key", aws.ToString(k.KeyId))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kindOrder(out[i].Kind) < kindOrder(out[j].Kind) })
	return out, nil
}

func (s sweeper) roleTagged(ctx context.Context, role string) (bool, error) {
	p := iam.NewListRoleTagsPaginator(s.iam, &iam.ListRoleTagsInput{RoleName: aws.String(role)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if awsx.IsNotFound(err) {
			return false, nil // deleted since it was listed
		}
		if err != nil {
			return false, fmt.Errorf("list tags of role %s: %w", role, err)
		}
		for _, t := range page.Tags {
			if aws.ToString(t.Key) == TagTenant && aws.ToString(t.Value) == s.tenant {
				return true, nil
			}
		}
	}
	return false, nil
}

func (s sweeper) describeKey(ctx context.Context, id string) (*kmstypes.KeyMetadata, error) {
	d, err := s.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		return nil, fmt.Errorf("describe key %s: %w", id, err)
	}
	return d.KeyMetadata, nil
}

func kindOrder(k string) int {
	for i, kk := range kinds {
		if kk == k {
			return i
		}
	}
	return len(kinds)
}

// remove deletes f. A resource already gone (deleted with its stack, say)
// counts as removed.
func (s sweeper) remove(ctx context.Context, f Found) error {
	var err error
	switch f.Kind {
	case "stack":
		err = s.deleteStack(ctx, f.Name)
	case "rest_api":
		err = s.deleteRestAPI(ctx, f.Name)
	case "function":
		_, err = s.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(f.Name)})
	case "log_group":
		_, err = s.logs.DeleteLogGroup(ctx, &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String(f.Name)})
	case "role":
		err = s.deleteRole(ctx, f.Name)
	case "table":
		_, err = s.ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(f.Name)})
	case "bucket":
		err = s.emptyAndDeleteBucket(ctx, f.Name)
	case "secret":
		_, err = s.secrets.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(f.Name), ForceDeleteWithoutRecovery: aws.Bool(true)})
	case "kms_key":
		err = s.scheduleKeyDeletion(ctx, f.Name)
	default:
		err = fmt.Errorf("cannot remove a %s", f.Kind)
	}
	if awsx.IsNotFound(err) {
		return nil
	}
	return err
}

// deleteStack deletes a stack and waits until it is gone. A deletion that
// fails (DELETE_FAILED) is an error with CloudFormation's reason; Clean
// tries it again after the other removals.
func (s sweeper) deleteStack(ctx context.Context, name string) error {
	if _, err := s.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(name)}); err != nil {
		return fmt.Errorf("delete stack %s: %w", name, err)
	}
	w := cloudformation.NewStackDeleteCompleteWaiter(s.cfn, func(o *cloudformation.StackDeleteCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 5*time.Second, 30*time.Second
	})
	err := w.Wait(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)}, s.stackWait)
	if err == nil {
		return nil
	}
	if d, derr := s.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)}); derr == nil && len(d.Stacks) == 1 {
		st := d.Stacks[0]
		return fmt.Errorf("delete stack %s: %s %s: %w", name, st.StackStatus, aws.ToString(st.StackStatusReason), err)
	}
	return fmt.Errorf("delete stack %s: %w", name, err)
}

// deleteRestAPI deletes a REST API. It looks the API up first: moto
// answers DeleteRestApi of an API that is gone (deleted with its stack)
// with an HTML 500 that the SDK retries for over a minute, where AWS
// answers NotFoundException. (AWS allows one DeleteRestApi per 30 s per
// account; the SDK's retries ride that out for the one API a tenant has.)
func (s sweeper) deleteRestAPI(ctx context.Context, id string) error {
	if _, err := s.apigw.GetRestApi(ctx, &apigateway.GetRestApiInput{RestApiId: aws.String(id)}); err != nil {
		return err
	}
	_, err := s.apigw.DeleteRestApi(ctx, &apigateway.DeleteRestApiInput{RestApiId: aws.String(id)})
	return err
}

// deleteRole takes a role out of everything that IAM requires to be
// undone first (managed policies, inline policies, instance profiles;
// profiles that held only this role go too), then deletes it.
func (s sweeper) deleteRole(ctx context.Context, role string) error {
	ap := iam.NewListAttachedRolePoliciesPaginator(s.iam, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role)})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list policies attached to role %s: %w", role, err)
		}
		for _, p := range page.AttachedPolicies {
			if _, err := s.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(role), PolicyArn: p.PolicyArn}); err != nil && !awsx.IsNotFound(err) {
				return fmt.Errorf("detach %s from role %s: %w", aws.ToString(p.PolicyArn), role, err)
			}
		}
	}
	ip := iam.NewListRolePoliciesPaginator(s.iam, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
	for ip.HasMorePages() {
		page, err := ip.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list inline policies of role %s: %w", role, err)
		}
		for _, name := range page.PolicyNames {
			if _, err := s.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)}); err != nil && !awsx.IsNotFound(err) {
				return fmt.Errorf("delete inline policy %s of role %s: %w", name, role, err)
			}
		}
	}
	pp := iam.NewListInstanceProfilesForRolePaginator(s.iam, &iam.ListInstanceProfilesForRoleInput{RoleName: aws.String(role)})
	for pp.HasMorePages() {
		page, err := pp.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list instance profiles of role %s: %w", role, err)
		}
		for _, prof := range page.InstanceProfiles {
			if _, err := s.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{
				RoleName: aws.String(role), InstanceProfileName: prof.InstanceProfileName,
			}); err != nil && !awsx.IsNotFound(err) {
				return fmt.Errorf("remove role %s from instance profile %s: %w", role, aws.ToString(prof.InstanceProfileName), err)
			}
			others := 0
			for _, r := range prof.Roles {
				if aws.ToString(r.RoleName) != role {
					others++
				}
			}
			if others > 0 {
				continue
			}
			if _, err := s.iam.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: prof.InstanceProfileName}); err != nil && !awsx.IsNotFound(err) {
				return fmt.Errorf("delete instance profile %s: %w", aws.ToString(prof.InstanceProfileName), err)
			}
		}
	}
	if _, err := s.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(role)}); err != nil {
		return fmt.Errorf("delete role %s: %w", role, err)
	}
	return nil
}

// scheduleKeyDeletion schedules a key's deletion unless that is done
// already (a stack's deletion schedules its keys' deletion).
func (s sweeper) scheduleKeyDeletion(ctx context.Context, id string) error {
	md, err := s.describeKey(ctx, id)
	if err != nil {
		return err
	}
	if md.KeyState == kmstypes.KeyStatePendingDeletion {
		return nil
	}
	_, err = s.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(s.keyDays)})
	return err
}

// emptyAndDeleteBucket removes every object version and delete marker, then
// the bucket (tenant buckets are versioned).
func (s sweeper) emptyAndDeleteBucket(ctx context.Context, bucket string) error {
	p := s3.NewListObjectVersionsPaginator(s.s3, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
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
			if _, err := s.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids[:n], Quiet: aws.Bool(true)}}); err != nil {
				return fmt.Errorf("empty %s: %w", bucket, err)
			}
			ids = ids[n:]
		}
	}
	_, err := s.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	return err
}
