package emulator

import (
	"errors"
	"maps"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/grants"
)

// Faults says how the Proxy departs from moto to behave like AWS. The zero
// value injects nothing: the proxy then forwards everything as moto answers
// it (apart from serializing DynamoDB writes, which it always does).
//
// Operation keys (Throttle, Latency, Stats) are "Service.Operation" with the
// SDK's service id, as awsx.Op prints them ("Organizations.CreateAccount",
// "DynamoDB.PutItem"), "Service.*" for every operation of a service, or "*"
// for everything. The most specific key wins.
type Faults struct {
	// CreateAccountDelay is how long an Organizations CreateAccount request
	// stays IN_PROGRESS before it ends SUCCEEDED (or FAILED). Real creations
	// take minutes; tests use a few hundred milliseconds.
	CreateAccountDelay time.Duration
	// MaxCreateInProgress is how many create-account requests may be
	// IN_PROGRESS at once (AWS: 5). One more is refused with
	// ConstraintViolationException, reason ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED.
	// Zero means no limit.
	MaxCreateInProgress int
	// CreateAccountFailure chooses creations that end FAILED: it returns the
	// FailureReason (EMAIL_ALREADY_EXISTS, ACCOUNT_LIMIT_EXCEEDED, ...) or ""
	// for a creation that succeeds. No account is created for a failure.
	CreateAccountFailure func(email, name string) string

	// Throttle is the fraction (0..1) of calls per operation key answered
	// with that service's throttling error instead of being forwarded.
	Throttle map[string]float64
	// Latency is added to every call of an operation key before it is
	// handled.
	Latency map[string]time.Duration

	// StackSetOperationDelay is how long a StackSet operation
	// (Create/Update/DeleteStackInstances, UpdateStackSet) reports RUNNING
	// before it reports SUCCEEDED or FAILED. While one runs, another
	// operation on the same stack set is refused with
	// OperationInProgressException, as AWS does.
	StackSetOperationDelay time.Duration
	// StackSetFailure chooses accounts whose stack instances fail: it
	// returns a StatusReason, or "" for an account that succeeds. The
	// operation ends FAILED, ListStackSetOperationResults reports the
	// account FAILED with that reason, and nothing is deployed there.
	StackSetFailure func(account string) string

	// NewAccountUnusable is how long STS AssumeRole into an account is
	// refused (AccessDenied) after the proxy saw the account's creation
	// complete, as IAM in a new account takes a while to work.
	NewAccountUnusable time.Duration

	// Seed makes the random choices (throttling) repeatable.
	Seed int64
}

// Hook is called for every request the proxy receives, before any fault is
// applied, with the request's operation and its number (1 for the first
// request since the last Reset). A non-nil error fails that request: with
// ErrDropConnection the connection is closed without an answer; with any
// other error the proxy answers HTTP 500 in the service's error shape
// (InternalFailure, or InternalError for S3). Either way nothing is
// forwarded. Crash tests use it to fail the Nth AWS call.
type Hook func(op awsx.Op, call int64) error

// ErrDropConnection, returned by a Hook, makes the proxy close the
// connection instead of answering, as a network failure would.
var ErrDropConnection = errors.New("emulator: drop the connection")

// Stats is what the proxy saw and did since the last Reset.
type Stats struct {
	// Calls counts requests per operation key ("STS.AssumeRole"), including
	// those the proxy failed, throttled or answered itself. Retries count.
	Calls map[string]int64
	// Throttled counts the requests answered with a throttling error.
	Throttled map[string]int64
	// Latency sums the latency added per operation key.
	Latency map[string]time.Duration
	// HookFailures counts the requests a Hook failed.
	HookFailures int64
	// MaxCreateInProgress is the most create-account requests that were
	// IN_PROGRESS at once.
	MaxCreateInProgress int
	// CreateLimitViolations counts CreateAccount calls refused because
	// MaxCreateInProgress requests were already in progress.
	CreateLimitViolations int64
	// CreateRequests counts the create-account requests the proxy accepted
	// and answered IN_PROGRESS (made asynchronous, delayed, maybe failed).
	CreateRequests int64
	// CreateFailures counts the create-account requests that ended FAILED,
	// by FailureReason.
	CreateFailures map[string]int64
	// AssumeRoleDenied counts AssumeRole calls refused because the target
	// account was too new.
	AssumeRoleDenied int64
	// StackSetOperations counts the StackSet operations the proxy tracked
	// (delayed, maybe failed for some accounts).
	StackSetOperations int64
	// StackSetConflicts counts StackSet operations refused because another
	// was running on the same stack set.
	StackSetConflicts int64
	// StackSetAccountFailures counts the accounts StackSetFailure failed in
	// StackSet operations (an account once per operation).
	StackSetAccountFailures int64
	// Callers counts requests per caller (the access key id that signed
	// them) and operation key: who called what, which the deployed-mode
	// harness turns into each function's calls (its role's session key).
	Callers map[string]map[string]int64
	// Denied counts, the same way, the requests the emulator refused for
	// want of a permission (AccessDenied under IAM enforcement).
	Denied map[string]map[string]int64
	// Accesses counts, per caller, the IAM authorizations its requests
	// needed (an action on a resource, see access.go), refused or not:
	// what the caller's policy must grant for its calls to pass in AWS.
	Accesses map[string]map[grants.Access]int64
}

// Total returns the number of requests of every operation.
func (s Stats) Total() int64 {
	var n int64
	for _, v := range s.Calls {
		n += v
	}
	return n
}

func (s Stats) clone() Stats {
	s.Calls = maps.Clone(s.Calls)
	s.Throttled = maps.Clone(s.Throttled)
	s.Latency = maps.Clone(s.Latency)
	s.CreateFailures = maps.Clone(s.CreateFailures)
	s.Callers = cloneNested(s.Callers)
	s.Denied = cloneNested(s.Denied)
	s.Accesses = cloneNested(s.Accesses)
	return s
}

func cloneNested[K comparable](m map[string]map[K]int64) map[string]map[K]int64 {
	out := make(map[string]map[K]int64, len(m))
	for k, v := range m {
		out[k] = maps.Clone(v)
	}
	return out
}

func newStats() Stats {
	return Stats{
		Calls: map[string]int64{}, Throttled: map[string]int64{}, Latency: map[string]time.Duration{}, CreateFailures: map[string]int64{},
		Callers: map[string]map[string]int64{}, Denied: map[string]map[string]int64{}, Accesses: map[string]map[grants.Access]int64{},
	}
}

// lookup returns the value of the most specific key matching op.
func lookup[V any](m map[string]V, op awsx.Op) (V, bool) {
	for _, k := range []string{op.String(), op.Service + ".*", "*"} {
		if v, ok := m[k]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// interceptsCreate reports whether CreateAccount must be made asynchronous.
func (f *Faults) interceptsCreate() bool {
	return f.CreateAccountDelay > 0 || f.MaxCreateInProgress > 0 || f.CreateAccountFailure != nil
}

// interceptsStackSets reports whether StackSet operations must be tracked.
func (f *Faults) interceptsStackSets() bool {
	return f.StackSetOperationDelay > 0 || f.StackSetFailure != nil
}
