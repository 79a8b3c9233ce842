package emulator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
)

// failingSet is a stack set whose bucket is named by a parameter, and whose
// two tables are created before the bucket (its tags refer to them), so
// that a refused bucket leaves something to roll back: Marker, deleted, and
// Kept, retained by its DeletionPolicy.
const failingSet = `{
 "Parameters": {"BucketName": {"Type": "String"}},
 "Resources": {
  "Marker": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "silo-marker", "BillingMode": "PAY_PER_REQUEST",
   "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}], "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}]}},
  "Kept": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "Properties": {"TableName": "silo-kept", "BillingMode": "PAY_PER_REQUEST",
   "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}], "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}]}},
  "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "BucketName"},
   "Tags": [{"Key": "marker", "Value": {"Ref": "Marker"}}, {"Key": "kept", "Value": {"Ref": "Kept"}}]}}
 },
 "Outputs": {"BucketArn": {"Value": {"Fn::GetAtt": ["Bucket", "Arn"]}}}
}`

// stackSetFixture is a self-managed stack set of failingSet and the
// clients to drive and inspect it.
type stackSetFixture struct {
	t        *testing.T
	cfn      *cloudformation.Client
	s3       *s3.Client // the management account's
	accounts *awsx.Accounts
	name     string
}

func (f *stackSetFixture) params(bucket string) []cftypes.Parameter {
	return []cftypes.Parameter{{ParameterKey: aws.String("BucketName"), ParameterValue: aws.String(bucket)}}
}

// await waits for an operation to end and returns its status.
func (f *stackSetFixture) await(op string) cftypes.StackSetOperationStatus {
	f.t.Helper()
	var status cftypes.StackSetOperationStatus
	waitUntil(f.t, "operation "+op, func() bool {
		out, err := f.cfn.DescribeStackSetOperation(f.t.Context(), &cloudformation.DescribeStackSetOperationInput{
			StackSetName: aws.String(f.name), OperationId: aws.String(op)})
		if err != nil {
			f.t.Fatal(err)
		}
		status = out.StackSetOperation.Status
		return status != cftypes.StackSetOperationStatusRunning
	})
	return status
}

// results returns each account's result of an operation: status and reason.
func (f *stackSetFixture) results(op string) map[string]string {
	f.t.Helper()
	out, err := f.cfn.ListStackSetOperationResults(f.t.Context(), &cloudformation.ListStackSetOperationResultsInput{
		StackSetName: aws.String(f.name), OperationId: aws.String(op)})
	if err != nil {
		f.t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range out.Summaries {
		got[aws.ToString(s.Account)] = string(s.Status) + " " + aws.ToString(s.StatusReason)
	}
	return got
}

// instances lists the stack set's instances by account.
func (f *stackSetFixture) instances() map[string]cftypes.StackInstanceSummary {
	f.t.Helper()
	out, err := f.cfn.ListStackInstances(f.t.Context(), &cloudformation.ListStackInstancesInput{StackSetName: aws.String(f.name)})
	if err != nil {
		f.t.Fatal(err)
	}
	got := map[string]cftypes.StackInstanceSummary{}
	for _, s := range out.Summaries {
		if _, dup := got[aws.ToString(s.Account)]; dup {
			f.t.Errorf("two instances for account %s", aws.ToString(s.Account))
		}
		got[aws.ToString(s.Account)] = s
	}
	return got
}

// refusal is what S3 answers anyone creating a bucket named name now.
func refusal(t *testing.T, client *s3.Client, name string) string {
	t.Helper()
	_, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)})
	var apiErr smithy.APIError
	if err == nil || !errors.As(err, &apiErr) {
		t.Fatalf("create bucket %s: %v, want the service to refuse it", name, err)
	}
	return apiErr.ErrorMessage()
}

// TestStackInstanceFailsInItsAccount checks patch 10 of py/sitecustomize.py
// through the Go SDK, with the proxy's operation delay on: a member stack
// whose bucket name S3 refuses (taken by another account) makes the
// operation FAILED, not the call; the instance is listed OUTDATED/FAILED;
// the member stack records the bucket's CREATE_FAILED with S3's refusal,
// rolls back what it created but the retained table, and ends
// DELETE_COMPLETE; an update creates the stack again once the cause and
// the retained table are gone; a failed instance can be deleted and created
// again.
func TestStackInstanceFailsInItsAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	mgmt := clientConfig(t, o, 0, nil)
	org := organizations.NewFromConfig(mgmt)
	first, second := newMember(t, org, "first"), newMember(t, org, "second")
	f := &stackSetFixture{
		t: t, cfn: cloudformation.NewFromConfig(mgmt), name: "failing",
		s3:       s3.NewFromConfig(mgmt, func(o *s3.Options) { o.UsePathStyle = true }),
		accounts: awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{}),
	}
	if _, err := f.cfn.CreateStackSet(ctx, &cloudformation.CreateStackSetInput{
		StackSetName: aws.String(f.name), TemplateBody: aws.String(failingSet), PermissionModel: cftypes.PermissionModelsSelfManaged,
		Parameters:            f.params("unused"),
		AdministrationRoleARN: aws.String("arn:aws:iam::" + o.ManagementAccountID + ":role/AWSCloudFormationStackSetAdministrationRole"),
		ExecutionRoleName:     aws.String(awsx.MemberRole),
	}); err != nil {
		t.Fatal(err)
	}
	emu.Proxy.Configure(Faults{StackSetOperationDelay: 300 * time.Millisecond})
	member := func(acct string) (*cloudformation.Client, *s3.Client, *dynamodb.Client) {
		cfg := f.accounts.Config(acct)
		return cloudformation.NewFromConfig(cfg), s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), dynamodb.NewFromConfig(cfg)
	}
	cfnA, s3A, ddbA := member(first)

	// Another account holds the name the instance's bucket wants.
	taken := "silo-taken-" + first
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(taken)}); err != nil {
		t.Fatal(err)
	}
	refused := refusal(t, s3A, taken)

	out, err := f.cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{
		StackSetName: aws.String(f.name), Accounts: []string{first}, Regions: []string{Region}, ParameterOverrides: f.params(taken),
	})
	if err != nil {
		t.Fatalf("create stack instances: %v; want the call to succeed and the operation to fail", err)
	}
	op := aws.ToString(out.OperationId)
	// While it runs, nothing has failed yet.
	if diff := cmp.Diff(map[string]string{first: "RUNNING "}, f.results(op)); diff != "" {
		t.Errorf("results while running (-want +got):\n%s", diff)
	}
	if status := f.await(op); status != cftypes.StackSetOperationStatusFailed {
		t.Fatalf("operation ended %s, want FAILED", status)
	}
	const stackReason = "The following resource(s) failed to create: [Bucket]. Delete requested by user."
	if diff := cmp.Diff(map[string]string{first: "FAILED " + stackReason}, f.results(op)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	inst, ok := f.instances()[first]
	if !ok {
		t.Fatal("no stack instance for the failed account")
	}
	got := []string{string(inst.Status), aws.ToString(inst.StatusReason)}
	if inst.StackInstanceStatus != nil {
		got = append(got, string(inst.StackInstanceStatus.DetailedStatus))
	}
	if diff := cmp.Diff([]string{"OUTDATED", stackReason, "FAILED"}, got); diff != "" {
		t.Errorf("instance status, reason, detailed status (-want +got):\n%s", diff)
	}

	// The member stack: deleted, readable by its id, its events AWS's.
	stackID := aws.ToString(inst.StackId)
	stacks, err := cfnA.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stackID)})
	if err != nil {
		t.Fatalf("describe the failed stack by its id: %v", err)
	}
	if s := stacks.Stacks[0]; s.StackStatus != cftypes.StackStatusDeleteComplete || aws.ToString(s.StackStatusReason) != stackReason || len(s.Outputs) != 0 {
		t.Errorf("failed stack: %s (%s), outputs %v; want DELETE_COMPLETE with the reason and no outputs", s.StackStatus, aws.ToString(s.StackStatusReason), s.Outputs)
	}
	events, err := cfnA.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stackID)})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	failedReason := ""
	for i := len(events.StackEvents) - 1; i >= 0; i-- { // newest first: read backwards
		e := events.StackEvents[i]
		seen = append(seen, aws.ToString(e.LogicalResourceId)+" "+string(e.ResourceStatus))
		if e.ResourceStatus == cftypes.ResourceStatusCreateFailed {
			failedReason = aws.ToString(e.ResourceStatusReason)
			if rt := aws.ToString(e.ResourceType); rt != "AWS::S3::Bucket" {
				t.Errorf("failed resource type %s", rt)
			}
		}
	}
	stack := "StackSet:" + f.name
	want := []string{
		stack + " CREATE_IN_PROGRESS",
		"Marker CREATE_IN_PROGRESS", "Marker CREATE_COMPLETE",
		"Kept CREATE_IN_PROGRESS", "Kept CREATE_COMPLETE",
		"Bucket CREATE_IN_PROGRESS", "Bucket CREATE_FAILED",
		stack + " DELETE_IN_PROGRESS",
		"Kept DELETE_SKIPPED",
		"Marker DELETE_IN_PROGRESS", "Marker DELETE_COMPLETE", "Bucket DELETE_COMPLETE",
		stack + " DELETE_COMPLETE",
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("stack events, oldest first (-want +got):\n%s", diff)
	}
	if !strings.Contains(failedReason, refused) {
		t.Errorf("CREATE_FAILED reason %q does not carry S3's refusal %q", failedReason, refused)
	}
	live, err := cfnA.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(live.Stacks) != 0 {
		t.Errorf("%d live stacks left in the account after the rollback", len(live.Stacks))
	}
	if _, err := ddbA.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("silo-marker")}); awsx.ErrorCode(err) != "ResourceNotFoundException" {
		t.Errorf("the rolled-back table: %v, want ResourceNotFoundException", err)
	}
	if _, err := ddbA.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("silo-kept")}); err != nil {
		t.Errorf("the retained table: %v, want it kept", err)
	}

	// Creating it again skips the existing instance.
	out, err = f.cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{
		StackSetName: aws.String(f.name), Accounts: []string{first}, Regions: []string{Region}, ParameterOverrides: f.params(taken),
	})
	if err != nil {
		t.Fatalf("create the existing instance again: %v", err)
	}
	f.await(aws.ToString(out.OperationId))
	if n := len(f.instances()); n != 1 {
		t.Errorf("%d instances after creating an existing one again, want 1", n)
	}

	// Updating the stack set for the account tries its stack again: it
	// fails again, and the operation the call answers with says so.
	us, err := f.cfn.UpdateStackSet(ctx, &cloudformation.UpdateStackSetInput{
		StackSetName: aws.String(f.name), TemplateBody: aws.String(failingSet), Parameters: f.params(taken),
		Accounts: []string{first}, Regions: []string{Region},
	})
	if err != nil {
		t.Fatal(err)
	}
	if status := f.await(aws.ToString(us.OperationId)); status != cftypes.StackSetOperationStatusFailed {
		t.Errorf("stack set update with the cause still there: %s, want FAILED", status)
	}

	// The cause goes; an update of the failed instance creates its stack
	// again, but the retained table is in the way, as it is in AWS.
	if _, err := f.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(taken)}); err != nil {
		t.Fatal(err)
	}
	update := func() string {
		up, err := f.cfn.UpdateStackInstances(ctx, &cloudformation.UpdateStackInstancesInput{
			StackSetName: aws.String(f.name), Accounts: []string{first}, Regions: []string{Region}, ParameterOverrides: f.params(taken),
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(up.OperationId)
	}
	op = update()
	if status := f.await(op); status != cftypes.StackSetOperationStatusFailed {
		t.Fatalf("update with the retained table in the way: %s, want FAILED", status)
	}
	if inst := f.instances()[first]; aws.ToString(inst.StatusReason) != "The following resource(s) failed to create: [Kept]. Delete requested by user." {
		t.Errorf("instance after the blocked update: %s (%s)", inst.Status, aws.ToString(inst.StatusReason))
	}
	if _, err := ddbA.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("silo-kept")}); err != nil {
		t.Fatal(err)
	}
	op = update()
	if status := f.await(op); status != cftypes.StackSetOperationStatusSucceeded {
		t.Fatalf("update after the cause went: %s %v, want SUCCEEDED", status, f.results(op))
	}
	if inst := f.instances()[first]; inst.Status != cftypes.StackInstanceStatusCurrent {
		t.Errorf("instance after the update: %s (%s)", inst.Status, aws.ToString(inst.StatusReason))
	}
	now, err := cfnA.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	if s := now.Stacks[0]; s.StackStatus != cftypes.StackStatusCreateComplete {
		t.Errorf("stack after the update: %s", s.StackStatus)
	}
	if _, err := s3A.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(taken)}); err != nil {
		t.Errorf("the instance's bucket: %v", err)
	}

	// A failed instance can be deleted, and created afresh once the cause
	// and what the failed attempt retained are gone.
	taken2 := "silo-taken-" + second
	if _, err := f.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(taken2)}); err != nil {
		t.Fatal(err)
	}
	out, err = f.cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{
		StackSetName: aws.String(f.name), Accounts: []string{second}, Regions: []string{Region}, ParameterOverrides: f.params(taken2),
	})
	if err != nil {
		t.Fatal(err)
	}
	if status := f.await(aws.ToString(out.OperationId)); status != cftypes.StackSetOperationStatusFailed {
		t.Fatalf("second account: %s, want FAILED", status)
	}
	del, err := f.cfn.DeleteStackInstances(ctx, &cloudformation.DeleteStackInstancesInput{
		StackSetName: aws.String(f.name), Accounts: []string{second}, Regions: []string{Region}, RetainStacks: aws.Bool(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if status := f.await(aws.ToString(del.OperationId)); status != cftypes.StackSetOperationStatusSucceeded {
		t.Fatalf("delete the failed instance: %s", status)
	}
	if _, ok := f.instances()[second]; ok {
		t.Error("the failed instance is still listed after its deletion")
	}
	cfnB, _, ddbB := member(second)
	if _, err := ddbB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("silo-kept")}); err != nil {
		t.Errorf("the retained table after the instance's deletion: %v, want it kept", err)
	}
	if _, err := f.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(taken2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ddbB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String("silo-kept")}); err != nil {
		t.Fatal(err)
	}
	out, err = f.cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{
		StackSetName: aws.String(f.name), Accounts: []string{second}, Regions: []string{Region}, ParameterOverrides: f.params(taken2),
	})
	if err != nil {
		t.Fatal(err)
	}
	if status := f.await(aws.ToString(out.OperationId)); status != cftypes.StackSetOperationStatusSucceeded {
		t.Fatalf("create after the deletion: %s %v", status, f.results(aws.ToString(out.OperationId)))
	}
	if s, err := cfnB.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)}); err != nil || s.Stacks[0].StackStatus != cftypes.StackStatusCreateComplete {
		t.Errorf("second account's stack after the re-creation: %v", err)
	}
}
