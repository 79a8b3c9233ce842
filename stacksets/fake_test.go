package stacksets

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeCFN records requests and answers from its fields. It implements every
// method of cfnAPI, so a new call fails to compile rather than panicking.
type fakeCFN struct {
	calls []any
	// stackSet answers DescribeStackSet; nil means StackSetNotFound.
	stackSet *cfntypes.StackSet
	// err, when set, answers every mutating call.
	err error
	// ops answers DescribeStackSetOperation, one per poll; the last repeats.
	ops     []cfntypes.StackSetOperationStatus
	opErrs  []error
	polls   int
	results []cfntypes.StackSetOperationResultSummary
	// polled is signalled on every DescribeStackSetOperation.
	polled chan struct{}
}

func (f *fakeCFN) record(in any) { f.calls = append(f.calls, in) }

func (f *fakeCFN) CreateStackSet(_ context.Context, in *cloudformation.CreateStackSetInput, _ ...func(*cloudformation.Options)) (*cloudformation.CreateStackSetOutput, error) {
	f.record(in)
	return &cloudformation.CreateStackSetOutput{StackSetId: aws.String("ss-1")}, f.err
}

func (f *fakeCFN) UpdateStackSet(_ context.Context, in *cloudformation.UpdateStackSetInput, _ ...func(*cloudformation.Options)) (*cloudformation.UpdateStackSetOutput, error) {
	f.record(in)
	if f.err != nil {
		return nil, f.err
	}
	return &cloudformation.UpdateStackSetOutput{OperationId: in.OperationId}, nil
}

func (f *fakeCFN) DescribeStackSet(_ context.Context, in *cloudformation.DescribeStackSetInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStackSetOutput, error) {
	if f.stackSet == nil {
		return nil, &smithy.GenericAPIError{Code: "StackSetNotFoundException"}
	}
	return &cloudformation.DescribeStackSetOutput{StackSet: f.stackSet}, nil
}

func (f *fakeCFN) CreateStackInstances(_ context.Context, in *cloudformation.CreateStackInstancesInput, _ ...func(*cloudformation.Options)) (*cloudformation.CreateStackInstancesOutput, error) {
	f.record(in)
	if f.err != nil {
		return nil, f.err
	}
	return &cloudformation.CreateStackInstancesOutput{OperationId: in.OperationId}, nil
}

func (f *fakeCFN) UpdateStackInstances(_ context.Context, in *cloudformation.UpdateStackInstancesInput, _ ...func(*cloudformation.Options)) (*cloudformation.UpdateStackInstancesOutput, error) {
	f.record(in)
	if f.err != nil {
		return nil, f.err
	}
	return &cloudformation.UpdateStackInstancesOutput{OperationId: in.OperationId}, nil
}

func (f *fakeCFN) DeleteStackInstances(_ context.Context, in *cloudformation.DeleteStackInstancesInput, _ ...func(*cloudformation.Options)) (*cloudformation.DeleteStackInstancesOutput, error) {
	f.record(in)
	if f.err != nil {
		return nil, f.err
	}
	return &cloudformation.DeleteStackInstancesOutput{OperationId: in.OperationId}, nil
}

func (f *fakeCFN) ListStackInstances(context.Context, *cloudformation.ListStackInstancesInput, ...func(*cloudformation.Options)) (*cloudformation.ListStackInstancesOutput, error) {
	return &cloudformation.ListStackInstancesOutput{}, nil
}

func (f *fakeCFN) DescribeStackSetOperation(_ context.Context, in *cloudformation.DescribeStackSetOperationInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStackSetOperationOutput, error) {
	i := min(f.polls, len(f.ops)-1)
	f.polls++
	if f.polled != nil {
		select {
		case f.polled <- struct{}{}:
		default:
		}
	}
	if i < len(f.opErrs) && f.opErrs[i] != nil {
		return nil, f.opErrs[i]
	}
	return &cloudformation.DescribeStackSetOperationOutput{StackSetOperation: &cfntypes.StackSetOperation{
		OperationId: in.OperationId, Action: cfntypes.StackSetOperationActionCreate, Status: f.ops[i],
	}}, nil
}

func (f *fakeCFN) ListStackSetOperations(context.Context, *cloudformation.ListStackSetOperationsInput, ...func(*cloudformation.Options)) (*cloudformation.ListStackSetOperationsOutput, error) {
	return &cloudformation.ListStackSetOperationsOutput{}, nil
}

// ListStackSetOperationResults answers one result per page to exercise
// pagination.
func (f *fakeCFN) ListStackSetOperationResults(_ context.Context, in *cloudformation.ListStackSetOperationResultsInput, _ ...func(*cloudformation.Options)) (*cloudformation.ListStackSetOperationResultsOutput, error) {
	i := 0
	if in.NextToken != nil {
		i = len(*in.NextToken)
	}
	if i >= len(f.results) {
		return &cloudformation.ListStackSetOperationResultsOutput{}, nil
	}
	out := &cloudformation.ListStackSetOperationResultsOutput{Summaries: f.results[i : i+1]}
	if i+1 < len(f.results) {
		out.NextToken = aws.String(strings.Repeat("x", i+1))
	}
	return out, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var ignoreSDK = cmpopts.IgnoreUnexported(
	cloudformation.CreateStackSetInput{}, cloudformation.UpdateStackSetInput{},
	cloudformation.CreateStackInstancesInput{}, cloudformation.UpdateStackInstancesInput{},
	cloudformation.DeleteStackInstancesInput{}, cfntypes.DeploymentTargets{}, cfntypes.Parameter{},
	cfntypes.StackSetOperationPreferences{}, cfntypes.AutoDeployment{}, cfntypes.ManagedExecution{},
)

// TestServiceManagedRequests checks the requests of the SERVICE_MANAGED
// model, which moto supports only partly: OU targets narrowed to one
// account, auto-deployment off, no roles, CallAs passed through.
func TestServiceManagedRequests(t *testing.T) {
	rel := Release{ID: "r1", TemplateSHA256: "abc", TemplateURL: "https://b.s3.us-east-1.amazonaws.com/t.json"}
	params := map[string]string{"TenantId": "acme", "Tier": "basic"}
	wantParams := []cfntypes.Parameter{
		{ParameterKey: aws.String("TenantId"), ParameterValue: aws.String("acme")},
		{ParameterKey: aws.String("Tier"), ParameterValue: aws.String("basic")},
	}
	targets := &cfntypes.DeploymentTargets{
		OrganizationalUnitIds: []string{"ou-ab12-prod1234"}, Accounts: []string{"111122223333"},
		AccountFilterType: cfntypes.AccountFilterTypeIntersection,
	}
	prefs := &cfntypes.StackSetOperationPreferences{
		MaxConcurrentCount: aws.Int32(5), FailureToleranceCount: aws.Int32(1),
		RegionConcurrencyType: cfntypes.RegionConcurrencyTypeSequential,
	}
	cases := []struct {
		name     string
		stackSet *cfntypes.StackSet
		call     func(context.Context, *Manager) (string, error)
		want     any
	}{
		{
			name: "create stack set",
			call: func(ctx context.Context, m *Manager) (string, error) { return m.EnsureStackSet(ctx, rel, Rollout{}) },
			want: &cloudformation.CreateStackSetInput{
				StackSetName: aws.String("silo-tenant-app"), Description: aws.String(describe(rel)),
				TemplateURL:      aws.String(rel.TemplateURL),
				Capabilities:     []cfntypes.Capability{cfntypes.CapabilityCapabilityNamedIam},
				Parameters:       []cfntypes.Parameter{},
				PermissionModel:  cfntypes.PermissionModelsServiceManaged,
				AutoDeployment:   &cfntypes.AutoDeployment{Enabled: aws.Bool(false)},
				ManagedExecution: &cfntypes.ManagedExecution{Active: aws.Bool(true)},
				CallAs:           cfntypes.CallAsDelegatedAdmin,
			},
		},
		{
			name:     "update stack set for one account",
			stackSet: &cfntypes.StackSet{Description: aws.String("older release")},
			call: func(ctx context.Context, m *Manager) (string, error) {
				return m.EnsureStackSet(ctx, rel, Rollout{OperationID: "op-1", Accounts: []string{"111122223333"}})
			},
			want: &cloudformation.UpdateStackSetInput{
				StackSetName: aws.String("silo-tenant-app"), Description: aws.String(describe(rel)),
				TemplateURL:  aws.String(rel.TemplateURL),
				Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityNamedIam},
				Parameters:   []cfntypes.Parameter{}, OperationId: aws.String("op-1"),
				OperationPreferences: prefs, Regions: []string{"eu-west-1"}, DeploymentTargets: targets,
				CallAs: cfntypes.CallAsDelegatedAdmin,
			},
		},
		{
			name: "add instance",
			call: func(ctx context.Context, m *Manager) (string, error) {
				return m.AddInstance(ctx, "op-1", "111122223333", "eu-west-1", params)
			},
			want: &cloudformation.CreateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"},
				DeploymentTargets: targets, ParameterOverrides: wantParams, OperationId: aws.String("op-1"),
				OperationPreferences: prefs, CallAs: cfntypes.CallAsDelegatedAdmin,
			},
		},
		{
			name: "update instance",
			call: func(ctx context.Context, m *Manager) (string, error) {
				return m.UpdateInstance(ctx, "op-1", "111122223333", "eu-west-1", params)
			},
			want: &cloudformation.UpdateStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"},
				DeploymentTargets: targets, ParameterOverrides: wantParams, OperationId: aws.String("op-1"),
				OperationPreferences: prefs, CallAs: cfntypes.CallAsDelegatedAdmin,
			},
		},
		{
			name: "remove instance",
			call: func(ctx context.Context, m *Manager) (string, error) {
				return m.RemoveInstance(ctx, "op-1", "111122223333", "eu-west-1", true)
			},
			want: &cloudformation.DeleteStackInstancesInput{
				StackSetName: aws.String("silo-tenant-app"), Regions: []string{"eu-west-1"},
				DeploymentTargets: targets, RetainStacks: aws.Bool(true), OperationId: aws.String("op-1"),
				OperationPreferences: prefs, CallAs: cfntypes.CallAsDelegatedAdmin,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCFN{stackSet: tc.stackSet}
			m := New(fake, nil, nil, "eu-west-1", quiet(), Options{
				PermissionModel:     ServiceManaged,
				OrganizationalUnits: []string{"ou-ab12-prod1234"},
				CallAs:              cfntypes.CallAsDelegatedAdmin,
				Preferences:         Preferences{MaxConcurrentCount: 5, FailureToleranceCount: 1},
			})
			if _, err := tc.call(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			if len(fake.calls) != 1 {
				t.Fatalf("%d mutating calls, want 1: %#v", len(fake.calls), fake.calls)
			}
			if diff := cmp.Diff(tc.want, fake.calls[0], ignoreSDK); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIssueErrors checks how a refused call is reported: a used operation
// id means "already issued, wait on it"; a running operation is ErrBusy.
func TestIssueErrors(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		wantID  string
		wantErr error
	}{
		{"fresh", nil, "op-7", nil},
		{"re-issued after a crash", &smithy.GenericAPIError{Code: "OperationIdAlreadyExistsException"}, "op-7", nil},
		{"another operation running", &smithy.GenericAPIError{Code: "OperationInProgressException"}, "", ErrBusy},
		{"stack set missing", &smithy.GenericAPIError{Code: "StackSetNotFoundException"}, "", ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(&fakeCFN{err: tc.err}, nil, nil, "us-east-1", quiet(), Options{})
			id, err := m.UpdateInstance(context.Background(), "op-7", "111122223333", "us-east-1", map[string]string{"TenantId": "a"})
			if id != tc.wantID || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("got (%q, %v), want (%q, %v)", id, err, tc.wantID, tc.wantErr)
			}
		})
	}
}

func TestWait(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "Throttling"}
	cases := []struct {
		name       string
		ops        []cfntypes.StackSetOperationStatus
		errs       []error
		results    []cfntypes.StackSetOperationResultSummary
		wantStatus string
		wantErr    *OperationError
		wantSeen   []string
	}{
		{
			name:       "running then succeeded",
			ops:        []cfntypes.StackSetOperationStatus{"QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"},
			wantStatus: "SUCCEEDED", wantSeen: []string{"QUEUED", "RUNNING", "SUCCEEDED"},
		},
		{
			name: "throttled polls are waited out",
			ops:  []cfntypes.StackSetOperationStatus{"RUNNING", "RUNNING", "SUCCEEDED"},
			errs: []error{nil, throttled}, wantStatus: "SUCCEEDED", wantSeen: []string{"RUNNING", "SUCCEEDED"},
		},
		{
			name: "failed with reasons per account",
			ops:  []cfntypes.StackSetOperationStatus{"RUNNING", "FAILED"},
			results: []cfntypes.StackSetOperationResultSummary{
				{Account: aws.String("111"), Region: aws.String("us-east-1"), Status: "SUCCEEDED"},
				{Account: aws.String("222"), Region: aws.String("us-east-1"), Status: "FAILED", StatusReason: aws.String("Table already exists")},
				{Account: aws.String("333"), Region: aws.String("us-east-1"), Status: "CANCELLED",
					AccountGateResult: &cfntypes.AccountGateResult{Status: "FAILED", StatusReason: aws.String("gate said no")}},
			},
			wantStatus: "FAILED", wantSeen: []string{"RUNNING", "FAILED"},
			wantErr: &OperationError{ID: "op-1", Status: "FAILED", Accounts: map[string]string{
				"222": "us-east-1: Table already exists", "333": "us-east-1: account gate: gate said no",
			}},
		},
		{
			name: "stopped", ops: []cfntypes.StackSetOperationStatus{"STOPPED"},
			wantStatus: "STOPPED", wantSeen: []string{"STOPPED"},
			wantErr: &OperationError{ID: "op-1", Status: "STOPPED", Accounts: map[string]string{}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCFN{ops: tc.ops, opErrs: tc.errs, results: tc.results}
			var seen []string
			m := New(fake, nil, nil, "us-east-1", quiet(), Options{
				PollMin: time.Millisecond, PollMax: 4 * time.Millisecond,
				Progress: func(r Result) { seen = append(seen, r.Status) },
			})
			res, err := m.Wait(context.Background(), "op-1")
			if res.Status != tc.wantStatus {
				t.Errorf("status %q, want %q", res.Status, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantSeen, seen); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Errorf("error %v", err)
				}
				return
			}
			var oe *OperationError
			if !errors.As(err, &oe) {
				t.Fatalf("error %v, want *OperationError", err)
			}
			if diff := cmp.Diff(tc.wantErr, oe); diff != "" {
				t.Errorf("operation error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitCancel: a Wait between polls returns as soon as its context ends,
// however long the next poll would be.
func TestWaitCancel(t *testing.T) {
	fake := &fakeCFN{ops: []cfntypes.StackSetOperationStatus{"RUNNING"}, polled: make(chan struct{}, 1)}
	m := New(fake, nil, nil, "us-east-1", quiet(), Options{PollMin: time.Hour, PollMax: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Wait(ctx, "op-1")
		done <- err
	}()
	<-fake.polled
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v, want context.Canceled", err)
	}
}

func TestOperationID(t *testing.T) {
	long := strings.Repeat("t", 200)
	cases := []struct {
		name, tenant, step string
		attempt            int
		want               string
	}{
		{"plain", "acme", "deploy", 1, "silo-acme-deploy-1"},
		{"odd characters", "acme_co", "update v2.1", 3, "silo-acme-co-update-v2-1-3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := OperationID(tc.tenant, tc.step, tc.attempt); got != tc.want {
				t.Errorf("OperationID = %q, want %q", got, tc.want)
			}
		})
	}
	a, b := OperationID(long, "deploy", 1), OperationID(long, "deploy", 2)
	if len(a) != 128 || a == b {
		t.Errorf("long ids: %q (%d), %q", a, len(a), b)
	}
	if first, again := OperationID("acme", "deploy", 1), OperationID("acme", "deploy", 1); first != again {
		t.Error("not deterministic")
	}
}

// fakeStacks is a member account's CloudFormation for ApplyUpdates: it
// implements every method of stacksAPI.
type fakeStacks struct {
	// describeErr answers DescribeStacks; otherwise the stack has params.
	describeErr error
	params      map[string]string
	// updateErr answers UpdateStack.
	updateErr error
	updates   int
}

func (f *fakeStacks) DescribeStacks(context.Context, *cloudformation.DescribeStacksInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	return &cloudformation.DescribeStacksOutput{Stacks: []cfntypes.Stack{{StackName: aws.String("StackSet:silo-tenant-app"), Parameters: parameters(f.params)}}}, nil
}

func (f *fakeStacks) DescribeStackEvents(context.Context, *cloudformation.DescribeStackEventsInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	return &cloudformation.DescribeStackEventsOutput{}, nil
}

func (f *fakeStacks) UpdateStack(context.Context, *cloudformation.UpdateStackInput, ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error) {
	f.updates++
	return &cloudformation.UpdateStackOutput{}, f.updateErr
}

// TestUpdateInstanceApplied checks how UpdateInstance reports what the
// manager's own update of the member stack (Options.ApplyUpdates) did: a
// stack that refuses the update fails the operation with the account's
// reason, as AWS reports an instance that failed; a missing stack leaves the
// operation's own result; throttling is an error for the caller to retry.
func TestUpdateInstanceApplied(t *testing.T) {
	const account = "111122223333"
	refused := &smithy.GenericAPIError{Code: "ValidationError", Message: "Template error: resource Fn does not support attribute type Arn"}
	cases := []struct {
		name      string
		stacks    *fakeStacks
		wantErr   bool
		wantWait  map[string]string // accounts of the *OperationError; nil: Wait succeeds
		wantCalls int
	}{
		{name: "applied", stacks: &fakeStacks{params: map[string]string{"Tier": "basic"}}, wantCalls: 1},
		{name: "refused by the stack", stacks: &fakeStacks{params: map[string]string{"Tier": "basic"}, updateErr: refused}, wantCalls: 1,
			wantWait: map[string]string{account: "us-east-1: apply the update to stack StackSet:silo-tenant-app in " + account + "/us-east-1: " + refused.Error()}},
		{name: "no member stack", stacks: &fakeStacks{describeErr: &smithy.GenericAPIError{Code: "ValidationError", Message: "Stack with id StackSet:silo-tenant-app does not exist"}}},
		{name: "throttled", stacks: &fakeStacks{params: map[string]string{"Tier": "basic"}, updateErr: &smithy.GenericAPIError{Code: "Throttling"}}, wantErr: true, wantCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeCFN{ops: []cfntypes.StackSetOperationStatus{"SUCCEEDED"}}
			m := New(fake, nil, func(string, string) stacksAPI { return tc.stacks }, "us-east-1", quiet(), Options{
				ApplyUpdates: true, PollMin: time.Millisecond, PollMax: time.Millisecond,
			})
			id, err := m.UpdateInstance(context.Background(), "op-1", account, "us-east-1", map[string]string{"Tier": "enterprise"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("UpdateInstance: %v, want error %v", err, tc.wantErr)
			}
			if tc.stacks.updates != tc.wantCalls {
				t.Errorf("%d UpdateStack calls, want %d", tc.stacks.updates, tc.wantCalls)
			}
			if tc.wantErr {
				return
			}
			_, err = m.Wait(context.Background(), id)
			var oe *OperationError
			switch {
			case tc.wantWait == nil && err != nil:
				t.Errorf("Wait: %v, want success", err)
			case tc.wantWait != nil && !errors.As(err, &oe):
				t.Errorf("Wait: %v, want an *OperationError", err)
			case tc.wantWait != nil:
				if diff := cmp.Diff(tc.wantWait, oe.Accounts); diff != "" {
					t.Errorf("failed accounts (-want +got):\n%s", diff)
				}
			}
		})
	}
}
