package stacksets

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/google/go-cmp/cmp"
)

const (
	testStackID   = "arn:aws:cloudformation:us-east-1:111122223333:stack/StackSet-silo-tenant-app-1/abc"
	testStackName = "StackSet-silo-tenant-app-1"
)

// ev is one event of the test stack: the stack's own when logical is "".
func ev(logical, typ string, status cfntypes.ResourceStatus, reason string) cfntypes.StackEvent {
	e := cfntypes.StackEvent{
		StackId: aws.String(testStackID), StackName: aws.String(testStackName),
		LogicalResourceId: aws.String(logical), ResourceType: aws.String(typ), ResourceStatus: status,
		PhysicalResourceId: aws.String("physical-" + logical),
	}
	if logical == "" {
		e.LogicalResourceId, e.ResourceType, e.PhysicalResourceId = aws.String(testStackName), aws.String(stackType), aws.String(testStackID)
	}
	if reason != "" {
		e.ResourceStatusReason = aws.String(reason)
	}
	return e
}

// newestFirst turns events written oldest first into DescribeStackEvents'
// order.
func newestFirst(events ...cfntypes.StackEvent) []cfntypes.StackEvent {
	out := make([]cfntypes.StackEvent, len(events))
	for i, e := range events {
		out[len(events)-1-i] = e
	}
	return out
}

const (
	bucket  = "AWS::S3::Bucket"
	table   = "AWS::DynamoDB::Table"
	role    = "AWS::IAM::Role"
	fn      = "AWS::Lambda::Function"
	taken   = "The requested bucket name is not available (Service: S3; Error Code: BucketAlreadyExists)"
	failed  = "The following resource(s) failed to create: [Bucket]. Delete requested by user."
	cancels = "Resource creation cancelled"
)

func TestFailureReason(t *testing.T) {
	long := strings.Repeat("policy statement is invalid; ", 40) // 1160 bytes
	for _, tc := range []struct {
		name   string
		events []cfntypes.StackEvent
		want   string
	}{{
		name: "failed creation rolled back and deleted: the refused resource",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Role", role, cfntypes.ResourceStatusCreateInProgress, ""),
			ev("Role", role, cfntypes.ResourceStatusCreateComplete, ""),
			ev("Bucket", bucket, cfntypes.ResourceStatusCreateInProgress, ""),
			ev("Bucket", bucket, cfntypes.ResourceStatusCreateFailed, taken),
			ev("", "", cfntypes.ResourceStatusDeleteInProgress, failed),
			ev("Role", role, cfntypes.ResourceStatusDeleteInProgress, ""),
			ev("Role", role, cfntypes.ResourceStatusDeleteComplete, ""),
			ev("Bucket", bucket, cfntypes.ResourceStatusDeleteComplete, ""),
			ev("", "", cfntypes.ResourceStatusDeleteComplete, ""),
		),
		want: "Bucket (AWS::S3::Bucket): " + taken,
	}, {
		name: "causes first, earliest first, then delete failures, then cancellations",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Bucket", bucket, cfntypes.ResourceStatusCreateFailed, taken),
			ev("Table", table, cfntypes.ResourceStatusCreateFailed, "Table limit exceeded"),
			ev("Fn", fn, cfntypes.ResourceStatusCreateFailed, cancels),
			ev("", "", cfntypes.ResourceStatusRollbackInProgress, failed),
			ev("Role", role, cfntypes.ResourceStatusDeleteFailed, "Cannot delete entity, must detach all policies first."),
			ev("", "", cfntypes.ResourceStatusRollbackFailed, ""),
		),
		want: "Bucket (AWS::S3::Bucket): " + taken + "; Table (AWS::DynamoDB::Table): Table limit exceeded; " +
			"Role (AWS::IAM::Role): Cannot delete entity, must detach all policies first.; Fn (AWS::Lambda::Function): " + cancels,
	}, {
		name: "the same reason once, named by its most relevant resource",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("FnA", fn, cfntypes.ResourceStatusCreateFailed, cancels),
			ev("Bucket", bucket, cfntypes.ResourceStatusCreateFailed, taken),
			ev("FnB", fn, cfntypes.ResourceStatusCreateFailed, cancels),
			ev("Bucket", bucket, cfntypes.ResourceStatusDeleteFailed, taken),
		),
		want: "Bucket (AWS::S3::Bucket): " + taken + "; FnA (AWS::Lambda::Function): " + cancels,
	}, {
		name: "only the latest operation: an update that failed after an earlier failure",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Table", table, cfntypes.ResourceStatusCreateFailed, "an earlier story"),
			ev("", "", cfntypes.ResourceStatusCreateComplete, ""),
			ev("", "", cfntypes.ResourceStatusUpdateInProgress, "User Initiated"),
			ev("Fn", fn, cfntypes.ResourceStatusUpdateFailed, "Code size exceeds the limit"),
			ev("", "", cfntypes.ResourceStatusUpdateRollbackInProgress, "The following resource(s) failed to update: [Fn]."),
			ev("", "", cfntypes.ResourceStatusUpdateRollbackComplete, ""),
		),
		want: "Fn (AWS::Lambda::Function): Code size exceeds the limit",
	}, {
		name: "a nested stack is a resource; failures without a reason are skipped",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Child", stackType, cfntypes.ResourceStatusCreateFailed, "Embedded stack arn:aws:cloudformation:child was not successfully created"),
			ev("Table", table, cfntypes.ResourceStatusCreateFailed, "  "),
			ev("", "", cfntypes.ResourceStatusRollbackComplete, ""),
		),
		want: "Child (AWS::CloudFormation::Stack): Embedded stack arn:aws:cloudformation:child was not successfully created",
	}, {
		name: "no resource failed",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Table", table, cfntypes.ResourceStatusCreateInProgress, ""),
			ev("Table", table, cfntypes.ResourceStatusCreateComplete, ""),
			ev("", "", cfntypes.ResourceStatusCreateComplete, ""),
		),
		want: "",
	}, {
		name: "bounded: a long reason is cut, what does not fit is counted",
		events: newestFirst(
			ev("", "", cfntypes.ResourceStatusCreateInProgress, "User Initiated"),
			ev("Policy", "AWS::IAM::Policy", cfntypes.ResourceStatusCreateFailed, long),
			ev("Table", table, cfntypes.ResourceStatusCreateFailed, "1"+long),
			ev("Bucket", bucket, cfntypes.ResourceStatusCreateFailed, "2"+long),
			ev("Fn", fn, cfntypes.ResourceStatusCreateFailed, "3"+long),
		),
		want: "Policy (AWS::IAM::Policy): " + truncate(long, maxResourceReason) +
			"; Table (AWS::DynamoDB::Table): " + truncate("1"+long, maxResourceReason) + " (+2 more)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := failureReason(tc.events)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("failureReason (-want +got):\n%s", diff)
			}
			if len(got) > maxFailure {
				t.Errorf("%d bytes, more than %d", len(got), maxFailure)
			}
		})
	}
}

func TestJoinAndTruncate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []string
		limit int
		want  string
	}{
		{"all fit", []string{"alpha", "beta"}, 100, "alpha; beta"},
		{"the rest counted", []string{"alpha", "beta", "gamma"}, 20, "alpha (+2 more)"},
		{"a long first part cut to leave room for the count", []string{"a-very-long-first-part", "x"}, 16, "a-v… (+1 more)"},
		{"a long single part cut", []string{"a-very-long-first-part"}, 10, "a-very-…"},
		{"nothing", nil, 10, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := join(tc.parts, "; ", tc.limit)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("join (-want +got):\n%s", diff)
			}
			if len(got) > tc.limit {
				t.Errorf("%d bytes, limit %d", len(got), tc.limit)
			}
		})
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"héllo", 4, "h…"},
		{"ééé", 5, "é…"},
		{"ééé", 4, "…"},
	} {
		t.Run("truncate "+tc.s, func(t *testing.T) {
			if got := truncate(tc.s, tc.n); got != tc.want || len(got) > tc.n {
				t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}
