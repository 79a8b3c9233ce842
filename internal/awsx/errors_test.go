package awsx

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
)

func apiErr(code string) error {
	// Wrapped as the SDK and silo's callers wrap them.
	return fmt.Errorf("operation error X: %w", &smithy.GenericAPIError{Code: code, Message: "m"})
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, Other},
		{"plain error", errors.New("boom"), Other},
		{"dynamodb throttle", apiErr("ProvisionedThroughputExceededException"), Throttled},
		{"organizations throttle", apiErr("TooManyRequestsException"), Throttled},
		{"cloudformation throttle", apiErr("Throttling"), Throttled},
		{"unknown throttle code from the SDK list", apiErr("BandwidthLimitExceeded"), Throttled},
		{"dynamodb not found", apiErr("ResourceNotFoundException"), NotFound},
		{"iam not found", apiErr("NoSuchEntity"), NotFound},
		{"new not-found code", apiErr("HandshakeNotFoundException"), NotFound},
		{"table exists", apiErr("ResourceInUseException"), AlreadyExists},
		{"ou exists", apiErr("DuplicateOrganizationalUnitException"), AlreadyExists},
		{"new already-exists code", apiErr("WidgetAlreadyExistsException"), AlreadyExists},
		{"condition failed", apiErr("ConditionalCheckFailedException"), Conflict},
		{"stackset busy", apiErr("OperationInProgressException"), Conflict},
		{"access denied", apiErr("AccessDenied"), AccessDenied},
		{"kms access denied", apiErr("AccessDeniedException"), AccessDenied},
		{"validation", apiErr("ValidationException"), Invalid},
		{"cloudformation limit", apiErr("LimitExceededException"), Quota},
		{"cloudformation missing stack", &smithy.GenericAPIError{Code: "ValidationError", Message: "Stack with id StackSet:x does not exist"}, NotFound},
		{"cloudformation bad input", &smithy.GenericAPIError{Code: "ValidationError", Message: "Template format error"}, Invalid},
		{"duplicate operation id", apiErr("OperationIdAlreadyExistsException"), Conflict},
		{"org account limit", fmt.Errorf("create: %w", &orgtypes.ConstraintViolationException{
			Message: aws.String("too many"), Reason: orgtypes.ConstraintViolationExceptionReasonAccountNumberLimitExceeded,
		}), Quota},
		{"org other constraint", &orgtypes.ConstraintViolationException{
			Message: aws.String("no"), Reason: orgtypes.ConstraintViolationExceptionReasonOuDepthLimitExceeded,
		}, Quota},
		{"org close quota", &orgtypes.ConstraintViolationException{
			Message: aws.String("no"), Reason: orgtypes.ConstraintViolationExceptionReasonCloseAccountQuotaExceeded,
		}, Quota},
		{"org constraint that is not a quota", &orgtypes.ConstraintViolationException{
			Message: aws.String("no"), Reason: orgtypes.ConstraintViolationExceptionReasonCannotCloseManagementAccount,
		}, Invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
	if !IsThrottled(apiErr("Throttling")) || IsThrottled(apiErr("NoSuchKey")) {
		t.Error("IsThrottled disagrees with Classify")
	}
	if !IsConditionFailed(apiErr("ConditionalCheckFailedException")) || IsConditionFailed(apiErr("TransactionConflictException")) {
		t.Error("IsConditionFailed must match single-item condition failures only")
	}
}

func TestTransactionReasons(t *testing.T) {
	err := fmt.Errorf("write: %w", &ddbtypes.TransactionCanceledException{CancellationReasons: []ddbtypes.CancellationReason{
		{Code: aws.String("ConditionalCheckFailed")}, {Code: aws.String("None")}, {},
	}})
	if diff := cmp.Diff([]string{"ConditionalCheckFailed", "None", ""}, TransactionReasons(err)); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	if TransactionReasons(errors.New("x")) != nil {
		t.Error("reasons of a non-transaction error")
	}
}

func TestKnownRegion(t *testing.T) {
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		if !KnownRegion(r) {
			t.Errorf("%s not known", r)
		}
	}
	for _, r := range []string{"", "us-east-9", "US-EAST-1", "mars-1"} {
		if KnownRegion(r) {
			t.Errorf("%q known", r)
		}
	}
}

func TestStackSetOperationClassifiers(t *testing.T) {
	cases := []struct {
		name                string
		err                 error
		duplicate, inFlight bool
	}{
		{"duplicate operation id", apiErr("OperationIdAlreadyExistsException"), true, false},
		{"operation in progress", apiErr("OperationInProgressException"), false, true},
		{"other conflict", apiErr("ConcurrentModificationException"), false, false},
		{"plain error", errors.New("boom"), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsDuplicateOperation(tc.err); got != tc.duplicate {
				t.Errorf("IsDuplicateOperation = %v, want %v", got, tc.duplicate)
			}
			if got := IsOperationInProgress(tc.err); got != tc.inFlight {
				t.Errorf("IsOperationInProgress = %v, want %v", got, tc.inFlight)
			}
		})
	}
}

func TestIsRecordSetGone(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"aws: delete of a missing record", fmt.Errorf("delete: %w", &r53types.InvalidChangeBatch{
			Messages: []string{"Tried to delete resource record set [name='a.example.com.', type='A'] but it was not found"},
		}), true},
		{"aws: other change batch problem", &r53types.InvalidChangeBatch{Messages: []string{"RRSet of type CNAME with DNS name a.example.com. is not permitted"}}, false},
		{"emulator: delete of a missing record", &smithy.GenericAPIError{Code: "InvalidInput",
			Message: "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=DELETE, Name=a.example.com, Type=A, SetIdentifier=null]"}, true},
		{"other invalid input", &smithy.GenericAPIError{Code: "InvalidInput", Message: "bad name"}, false},
		{"throttled", apiErr("Throttling"), false},
		{"nil", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsRecordSetGone(tc.err); got != tc.want {
				t.Errorf("IsRecordSetGone(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if got := Classify(&r53types.InvalidChangeBatch{}); got != Invalid {
		t.Errorf("InvalidChangeBatch is %s, want invalid", got)
	}
}
