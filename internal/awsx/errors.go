package awsx

import (
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"
)

// ErrorCode returns the AWS error code of err, or "" when err did not come
// from an AWS API.
func ErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func errorMessage(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorMessage()
	}
	return ""
}

// codes is the one table mapping AWS error codes to the classes silo acts on.
// Codes are listed per class across services; a code belongs to one class.
var codes = map[string]Class{
	// throttling: back off and retry later.
	"Throttling":                             Throttled,
	"ThrottlingException":                    Throttled,
	"ThrottledException":                     Throttled,
	"TooManyRequestsException":               Throttled,
	"RequestLimitExceeded":                   Throttled,
	"RequestThrottled":                       Throttled,
	"RequestThrottledException":              Throttled,
	"ProvisionedThroughputExceededException": Throttled,
	"SlowDown":                               Throttled,
	"PriorRequestNotComplete":                Throttled,

	// not found
	"ResourceNotFoundException":            NotFound,
	"NoSuchEntity":                         NotFound,
	"NoSuchBucket":                         NotFound,
	"NoSuchKey":                            NotFound,
	"NotFoundException":                    NotFound,
	"NotFound":                             NotFound,
	"AccountNotFoundException":             NotFound,
	"OrganizationalUnitNotFoundException":  NotFound,
	"PolicyNotFoundException":              NotFound,
	"CreateAccountStatusNotFoundException": NotFound,
	"StackSetNotFoundException":            NotFound,
	"StackInstanceNotFoundException":       NotFound,
	"OperationNotFoundException":           NotFound,
	"ParameterNotFound":                    NotFound,
	"TableNotFoundException":               NotFound,
	"AWSOrganizationsNotInUseException":    NotFound,
	// S3's "this bucket has none" answers for its optional configurations.
	"NoSuchBucketPolicy":                   NotFound,
	"NoSuchPublicAccessBlockConfiguration": NotFound,

	// already exists
	"ResourceInUseException":               AlreadyExists, // DynamoDB CreateTable on an existing table
	"EntityAlreadyExists":                  AlreadyExists,
	"BucketAlreadyOwnedByYou":              AlreadyExists,
	"BucketAlreadyExists":                  AlreadyExists,
	"AlreadyExistsException":               AlreadyExists,
	"NameAlreadyExistsException":           AlreadyExists,
	"ResourceExistsException":              AlreadyExists,
	"DuplicateOrganizationalUnitException": AlreadyExists,
	"DuplicatePolicyException":             AlreadyExists,
	"DuplicatePolicyAttachmentException":   AlreadyExists,
	"PolicyTypeAlreadyEnabledException":    AlreadyExists,
	"DuplicateAccountException":            AlreadyExists,
	"AlreadyInOrganizationException":       AlreadyExists,
	"ResourceConflictException":            AlreadyExists,
	"HostedZoneAlreadyExists":              AlreadyExists, // Route 53, same caller reference
	"ConflictingDomainExists":              AlreadyExists,

	// conflict: someone else changed the thing first, or an operation is running.
	"ConditionalCheckFailedException":   Conflict,
	"TransactionConflictException":      Conflict,
	"TransactionCanceledException":      Conflict,
	"ConcurrentModificationException":   Conflict,
	"OperationInProgressException":      Conflict,
	"StaleRequestException":             Conflict,
	"OperationIdAlreadyExistsException": Conflict,

	// access denied
	"AccessDenied":                       AccessDenied,
	"AccessDeniedException":              AccessDenied,
	"UnauthorizedOperation":              AccessDenied,
	"UnrecognizedClientException":        AccessDenied,
	"InvalidClientTokenId":               AccessDenied,
	"AuthFailure":                        AccessDenied,
	"ExpiredToken":                       AccessDenied,
	"ExpiredTokenException":              AccessDenied,
	"AccessDeniedForDependencyException": AccessDenied,

	// invalid input: a bug or bad data, retrying will not help.
	"ValidationException":              Invalid,
	"ValidationError":                  Invalid,
	"InvalidParameterException":        Invalid,
	"InvalidParameterValue":            Invalid,
	"InvalidInputException":            Invalid,
	"ConstraintViolationException":     Invalid,
	"MalformedPolicyDocumentException": Invalid,
	"InvalidChangeBatch":               Invalid, // Route 53
	"InvalidInput":                     Invalid, // Route 53

	// quota: an account-level limit; wait for capacity, do not hammer.
	"ServiceQuotaExceededException": Quota,
	"QuotaExceededException":        Quota,
	"LimitExceededException":        Quota, // CloudFormation: too many stack sets, stacks, operations
}

// Class is a coarse category of AWS errors that callers branch on.
type Class int

// The classes silo distinguishes.
const (
	Other Class = iota
	Throttled
	NotFound
	AlreadyExists
	Conflict
	AccessDenied
	Invalid
	Quota
)

func (c Class) String() string {
	switch c {
	case Throttled:
		return "throttled"
	case NotFound:
		return "not found"
	case AlreadyExists:
		return "already exists"
	case Conflict:
		return "conflict"
	case AccessDenied:
		return "access denied"
	case Invalid:
		return "invalid"
	case Quota:
		return "quota"
	}
	return "other"
}

// Classify returns err's class; Other for nil and for non-AWS errors.
func Classify(err error) Class {
	if err == nil {
		return Other
	}
	code := ErrorCode(err)
	// Organizations reports its quotas (accounts per organization, closures
	// per 30 days, ...) as a constraint violation with a *_LIMIT_EXCEEDED
	// reason; other constraint violations are bad input.
	var cv *orgtypes.ConstraintViolationException
	if errors.As(err, &cv) && (strings.Contains(string(cv.Reason), "LIMIT_EXCEEDED") || strings.Contains(string(cv.Reason), "QUOTA")) {
		return Quota
	}
	// CloudFormation has no not-found code for stacks: DescribeStacks and
	// friends answer ValidationError "Stack with id X does not exist".
	if code == "ValidationError" && strings.HasSuffix(errorMessage(err), "does not exist") {
		return NotFound
	}
	if c, ok := codes[code]; ok {
		return c
	}
	// Fall back on the SDK's own throttle list and naming patterns for codes
	// the table does not know yet.
	if code != "" && retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool() {
		return Throttled
	}
	if strings.HasSuffix(code, "NotFoundException") || strings.HasPrefix(code, "NoSuch") {
		return NotFound
	}
	if strings.HasSuffix(code, "AlreadyExistsException") {
		return AlreadyExists
	}
	return Other
}

// IsThrottled reports whether err is AWS throttling or a rate limit.
func IsThrottled(err error) bool { return Classify(err) == Throttled }

// IsNotFound reports whether err says the resource does not exist.
func IsNotFound(err error) bool { return Classify(err) == NotFound }

// IsAlreadyExists reports whether err says the resource exists already.
func IsAlreadyExists(err error) bool { return Classify(err) == AlreadyExists }

// IsConflict reports whether err is a failed condition or a concurrent change.
func IsConflict(err error) bool { return Classify(err) == Conflict }

// IsConditionFailed reports whether err is a DynamoDB condition that did not
// hold (a single-item conditional write). Transactions report through
// TransactionReasons instead.
func IsConditionFailed(err error) bool {
	return ErrorCode(err) == "ConditionalCheckFailedException"
}

// IsDuplicateOperation reports whether a StackSet call was refused because
// its caller-supplied OperationId was used before: the operation was already
// issued (for example before a crash) and the caller should wait on it.
func IsDuplicateOperation(err error) bool {
	return ErrorCode(err) == "OperationIdAlreadyExistsException"
}

// IsOperationInProgress reports whether a StackSet call was refused because
// another operation on the stack set is running (one at a time per stack
// set): try again once it has finished.
func IsOperationInProgress(err error) bool {
	return ErrorCode(err) == "OperationInProgressException"
}

// IsAccessDenied reports whether err is a refusal by IAM or STS.
func IsAccessDenied(err error) bool { return Classify(err) == AccessDenied }

// IsInvalid reports whether AWS rejected the request's input.
func IsInvalid(err error) bool { return Classify(err) == Invalid }

// IsQuota reports whether err is an account-level quota.
func IsQuota(err error) bool { return Classify(err) == Quota }

// IsRecordSetGone reports whether a Route 53 DELETE was refused because
// the record set is not there (deleted already): InvalidChangeBatch "Tried to
// delete resource record set [...] but it was not found" in AWS; the
// emulator answers InvalidInput "... found none in Change with
// [Action=DELETE, ...]" instead.
func IsRecordSetGone(err error) bool {
	var icb *r53types.InvalidChangeBatch
	if errors.As(err, &icb) {
		for _, m := range append([]string{icb.ErrorMessage()}, icb.Messages...) {
			if strings.Contains(m, "but it was not found") {
				return true
			}
		}
		return false
	}
	return ErrorCode(err) == "InvalidInput" && strings.Contains(errorMessage(err), "Action=DELETE")
}

// TransactionReasons returns the per-item cancellation codes of a cancelled
// DynamoDB transaction, in the order of its items ("None" for an item that
// was fine, "ConditionalCheckFailed" for a failed condition), or nil when err
// is not a cancelled transaction.
func TransactionReasons(err error) []string {
	var tce *ddbtypes.TransactionCanceledException
	if !errors.As(err, &tce) {
		return nil
	}
	out := make([]string, len(tce.CancellationReasons))
	for i, r := range tce.CancellationReasons {
		if r.Code != nil {
			out[i] = *r.Code
		}
	}
	return out
}
