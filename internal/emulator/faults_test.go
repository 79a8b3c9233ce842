package emulator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
)

// clientConfig is the management account's config with at most attempts
// attempts per call (0: awsx's default retryer).
func clientConfig(t *testing.T, org *Org, attempts int, counter *awsx.Counter) aws.Config {
	t.Helper()
	opts := org.Options()
	opts.MaxAttempts, opts.Counter = attempts, counter
	cfg, err := awsx.Load(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitUntil polls cond until it holds, failing the test after a while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func describeCreate(t *testing.T, org *organizations.Client, id string) orgtypes.CreateAccountStatus {
	t.Helper()
	out, err := org.DescribeCreateAccountStatus(t.Context(), &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.CreateAccountStatus
}

// waitCreated waits until the creation leaves IN_PROGRESS.
func waitCreated(t *testing.T, org *organizations.Client, id string) orgtypes.CreateAccountStatus {
	t.Helper()
	var st orgtypes.CreateAccountStatus
	waitUntil(t, "account creation "+id, func() bool {
		st = describeCreate(t, org, id)
		return st.State != orgtypes.CreateAccountStateInProgress
	})
	return st
}

func accountNames(t *testing.T, org *organizations.Client) []string {
	t.Helper()
	var names []string
	p := organizations.NewListAccountsPaginator(org, &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Accounts {
			names = append(names, aws.ToString(a.Name))
		}
	}
	sort.Strings(names)
	return names
}

func TestCreateAccountIsAsynchronous(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	emu.Proxy.Configure(Faults{CreateAccountDelay: 300 * time.Millisecond})
	org := organizations.NewFromConfig(clientConfig(t, o, 0, nil))

	out, err := org.CreateAccount(ctx, &organizations.CreateAccountInput{
		AccountName: aws.String("tenant-a"), Email: aws.String("a@tenants.example.com"),
		Tags: []orgtypes.Tag{{Key: aws.String("silo:tenant"), Value: aws.String("a")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := *out.CreateAccountStatus
	id := aws.ToString(st.Id)
	if st.State != orgtypes.CreateAccountStateInProgress || !strings.HasPrefix(id, "car-") || st.AccountId != nil || st.RequestedTimestamp == nil {
		t.Fatalf("CreateAccount answered %+v, want IN_PROGRESS with a car- id and no account", st)
	}
	if got := describeCreate(t, org, id).State; got != orgtypes.CreateAccountStateInProgress {
		t.Errorf("described at once: %s, want IN_PROGRESS", got)
	}
	if diff := cmp.Diff([]string{"master"}, accountNames(t, org)); diff != "" {
		t.Errorf("accounts while IN_PROGRESS (-want +got):\n%s", diff)
	}
	listed, err := org.ListCreateAccountStatus(ctx, &organizations.ListCreateAccountStatusInput{States: []orgtypes.CreateAccountState{orgtypes.CreateAccountStateInProgress}})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.CreateAccountStatuses) != 1 || aws.ToString(listed.CreateAccountStatuses[0].Id) != id {
		t.Errorf("in-progress list = %+v, want only %s", listed.CreateAccountStatuses, id)
	}

	done := waitCreated(t, org, id)
	if done.State != orgtypes.CreateAccountStateSucceeded || done.AccountId == nil || done.CompletedTimestamp == nil {
		t.Fatalf("finished as %+v, want SUCCEEDED with an account id", done)
	}
	acct := aws.ToString(done.AccountId)
	if _, err := org.DescribeAccount(ctx, &organizations.DescribeAccountInput{AccountId: aws.String(acct)}); err != nil {
		t.Errorf("describe the new account: %v", err)
	}
	tags, err := org.ListTagsForResource(ctx, &organizations.ListTagsForResourceInput{ResourceId: aws.String(acct)})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Value) != "a" {
		t.Errorf("tags of the new account = %+v, want silo:tenant=a", tags.Tags)
	}
	// Listed once, under the proxy's id (moto's own request is hidden).
	all, err := org.ListCreateAccountStatus(ctx, &organizations.ListCreateAccountStatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	// (moto also lists the management account's own creation.)
	var ids []string
	for _, s := range all.CreateAccountStatuses {
		if aws.ToString(s.AccountName) == "tenant-a" {
			ids = append(ids, aws.ToString(s.Id)+" "+string(s.State))
		}
	}
	if diff := cmp.Diff([]string{id + " SUCCEEDED"}, ids); diff != "" {
		t.Errorf("ListCreateAccountStatus (-want +got):\n%s", diff)
	}
}

func TestCreateAccountInProgressLimit(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	emu.Proxy.Configure(Faults{CreateAccountDelay: 400 * time.Millisecond, MaxCreateInProgress: 2})
	org := organizations.NewFromConfig(clientConfig(t, o, 0, nil))
	create := func(name string) (string, error) {
		out, err := org.CreateAccount(ctx, &organizations.CreateAccountInput{AccountName: aws.String(name), Email: aws.String(name + "@tenants.example.com")})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.CreateAccountStatus.Id), nil
	}
	var ids []string
	for _, name := range []string{"one", "two"} {
		id, err := create(name)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	_, err := create("three")
	var cv *orgtypes.ConstraintViolationException
	if !errors.As(err, &cv) || cv.Reason != orgtypes.ConstraintViolationExceptionReasonAccountCreationRateLimitExceeded {
		t.Fatalf("third concurrent creation: %v, want ConstraintViolationException ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED", err)
	}
	if !awsx.IsQuota(err) {
		t.Errorf("awsx classifies %v as %v, want quota", err, awsx.Classify(err))
	}
	for _, id := range ids {
		waitCreated(t, org, id)
	}
	// Capacity is back once the others finished.
	if _, err := create("three"); err != nil {
		t.Fatalf("after the others finished: %v", err)
	}
	st := emu.Proxy.Stats()
	if st.MaxCreateInProgress != 2 || st.CreateLimitViolations != 1 {
		t.Errorf("stats: max in progress %d, violations %d; want 2 and 1", st.MaxCreateInProgress, st.CreateLimitViolations)
	}
}

func TestCreateAccountFailures(t *testing.T) {
	o := emu.ResetT(t)
	emu.Proxy.Configure(Faults{
		CreateAccountDelay: 100 * time.Millisecond,
		CreateAccountFailure: func(email, name string) string {
			switch {
			case strings.HasPrefix(email, "taken@"):
				return "EMAIL_ALREADY_EXISTS"
			case name == "one-too-many":
				return "ACCOUNT_LIMIT_EXCEEDED"
			}
			return ""
		},
	})
	org := organizations.NewFromConfig(clientConfig(t, o, 0, nil))
	tests := []struct {
		name, email string
		want        orgtypes.CreateAccountState
		reason      orgtypes.CreateAccountFailureReason
	}{
		{"fine", "fine@tenants.example.com", orgtypes.CreateAccountStateSucceeded, ""},
		{"duplicate", "taken@tenants.example.com", orgtypes.CreateAccountStateFailed, orgtypes.CreateAccountFailureReasonEmailAlreadyExists},
		{"one-too-many", "many@tenants.example.com", orgtypes.CreateAccountStateFailed, orgtypes.CreateAccountFailureReasonAccountLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := org.CreateAccount(t.Context(), &organizations.CreateAccountInput{AccountName: aws.String(tt.name), Email: aws.String(tt.email)})
			if err != nil {
				t.Fatal(err)
			}
			st := waitCreated(t, org, aws.ToString(out.CreateAccountStatus.Id))
			if st.State != tt.want || st.FailureReason != tt.reason || (st.AccountId != nil) != (tt.want == orgtypes.CreateAccountStateSucceeded) {
				t.Errorf("ended %s %q account %v, want %s %q", st.State, st.FailureReason, aws.ToString(st.AccountId), tt.want, tt.reason)
			}
		})
	}
	// Failed creations leave no account behind.
	if diff := cmp.Diff([]string{"fine", "master"}, accountNames(t, org)); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}
	st := emu.Proxy.Stats()
	if diff := cmp.Diff(map[string]int64{"EMAIL_ALREADY_EXISTS": 1, "ACCOUNT_LIMIT_EXCEEDED": 1}, st.CreateFailures); diff != "" || st.CreateRequests != 3 {
		t.Errorf("stats: %d requests; failures by reason (-want +got):\n%s", st.CreateRequests, diff)
	}
}

func TestThrottlingUsesEachServicesError(t *testing.T) {
	o := emu.ResetT(t)
	emu.Proxy.Configure(Faults{Throttle: map[string]float64{"*": 1}})
	cfg := clientConfig(t, o, 1, nil)
	tests := []struct {
		name string
		call func(context.Context) error
		code string
	}{
		{"Organizations JSON", func(ctx context.Context) error {
			_, err := organizations.NewFromConfig(cfg).DescribeOrganization(ctx, &organizations.DescribeOrganizationInput{})
			return err
		}, "TooManyRequestsException"},
		{"STS query", func(ctx context.Context) error {
			_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}, "Throttling"},
		{"CloudFormation query", func(ctx context.Context) error {
			_, err := cloudformation.NewFromConfig(cfg).ListStackSets(ctx, &cloudformation.ListStackSetsInput{})
			return err
		}, "Throttling"},
		{"DynamoDB control plane", func(ctx context.Context) error {
			_, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		}, "ThrottlingException"},
		{"DynamoDB data plane", func(ctx context.Context) error {
			_, err := dynamodb.NewFromConfig(cfg).GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"),
				Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "x"}}})
			return err
		}, "ProvisionedThroughputExceededException"},
		{"S3 REST", func(ctx context.Context) error {
			_, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).ListBuckets(ctx, &s3.ListBucketsInput{})
			return err
		}, "SlowDown"},
		{"Route 53 REST-XML", func(ctx context.Context) error {
			_, err := route53.NewFromConfig(cfg).ListHostedZones(ctx, &route53.ListHostedZonesInput{})
			return err
		}, "Throttling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if got := awsx.ErrorCode(err); got != tt.code || !awsx.IsThrottled(err) {
				t.Errorf("err = %v (code %q, throttled %v), want %s", err, got, awsx.IsThrottled(err), tt.code)
			}
		})
	}
}

func TestThrottlingFraction(t *testing.T) {
	o := emu.ResetT(t)
	const key = "DynamoDB.ListTables"
	emu.Proxy.Configure(Faults{Throttle: map[string]float64{key: 0.3}, Seed: 7})

	// One attempt per call: the throttles surface, about 30% of them. A
	// client per call, because the adaptive retryer of one client would
	// slow its own sending down after the first throttles (as it should
	// against AWS) and make this test take minutes.
	cfg := clientConfig(t, o, 1, nil)
	const n = 200
	throttled := 0
	for range n {
		if _, err := dynamodb.NewFromConfig(cfg).ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
			if !awsx.IsThrottled(err) {
				t.Fatalf("unexpected error: %v", err)
			}
			throttled++
		}
	}
	if throttled < n*15/100 || throttled > n*45/100 {
		t.Errorf("%d of %d calls throttled, want about 30%%", throttled, n)
	}
	if got := emu.Proxy.Stats().Throttled[key]; got != int64(throttled) {
		t.Errorf("proxy counted %d throttles, clients saw %d", got, throttled)
	}

	// With silo's retryer they are invisible, at the cost of attempts (a
	// client per call again, to keep the adaptive limiter out of it).
	// Few calls: each throttle costs the retryer's backoff (about a second).
	emu.Proxy.Configure(Faults{Throttle: map[string]float64{key: 0.3}, Seed: 3})
	counter := awsx.NewCounter()
	cfg = clientConfig(t, o, 0, counter)
	for range 4 {
		if _, err := dynamodb.NewFromConfig(cfg).ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
			t.Fatalf("with retries: %v", err)
		}
	}
	snap := counter.Snapshot()
	if len(snap) != 1 || snap[0].Calls != 4 || snap[0].Attempts <= 4 {
		t.Errorf("counter = %+v, want 4 calls and some retried attempts", snap)
	}
}

func TestLatencyIsAdded(t *testing.T) {
	o := emu.ResetT(t)
	const key, delay = "STS.GetCallerIdentity", 150 * time.Millisecond
	emu.Proxy.Configure(Faults{Latency: map[string]time.Duration{key: delay}})
	client := sts.NewFromConfig(clientConfig(t, o, 0, nil))
	start := time.Now()
	for range 3 {
		if _, err := client.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatal(err)
		}
	}
	// Lower bounds only: the machine may be slow, never faster than the
	// injected latency.
	if elapsed := time.Since(start); elapsed < 3*delay {
		t.Errorf("3 calls took %v, less than the %v injected", elapsed, 3*delay)
	}
	st := emu.Proxy.Stats()
	if diff := cmp.Diff(map[string]time.Duration{key: 3 * delay}, st.Latency); diff != "" {
		t.Errorf("latency added (-want +got):\n%s", diff)
	}
}

// newMember creates a member account at once (no faults configured yet).
func newMember(t *testing.T, org *organizations.Client, name string) string {
	t.Helper()
	out, err := org.CreateAccount(t.Context(), &organizations.CreateAccountInput{AccountName: aws.String(name), Email: aws.String(name + "@tenants.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if out.CreateAccountStatus.State != orgtypes.CreateAccountStateSucceeded {
		t.Fatalf("create %s: %s", name, out.CreateAccountStatus.State)
	}
	return aws.ToString(out.CreateAccountStatus.AccountId)
}

func TestStackSetOperationsRunThenSucceedOrFail(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	mgmt := clientConfig(t, o, 0, nil)
	org := organizations.NewFromConfig(mgmt)
	good, other, bad := newMember(t, org, "good"), newMember(t, org, "other"), newMember(t, org, "bad")
	const reason = "Account bad should have been deleted"
	emu.Proxy.Configure(Faults{
		StackSetOperationDelay: 300 * time.Millisecond,
		StackSetFailure: func(account string) string {
			if account == bad {
				return reason
			}
			return ""
		},
	})

	cfn := cloudformation.NewFromConfig(mgmt)
	const set = "tenant-app"
	// An SSM parameter with an explicit name: moto derives unnamed
	// resources' names from the stack name, whose colon some reject.
	template := `{"Resources":{"P":{"Type":"AWS::SSM::Parameter","Properties":{"Name":"silo-version","Type":"String","Value":"1"}}}}`
	if _, err := cfn.CreateStackSet(ctx, &cloudformation.CreateStackSetInput{
		StackSetName: aws.String(set), TemplateBody: aws.String(template), PermissionModel: cftypes.PermissionModelsSelfManaged,
		AdministrationRoleARN: aws.String("arn:aws:iam::" + o.ManagementAccountID + ":role/AWSCloudFormationStackSetAdministrationRole"),
		ExecutionRoleName:     aws.String(awsx.MemberRole),
	}); err != nil {
		t.Fatal(err)
	}
	describe := func(op string) cftypes.StackSetOperationStatus {
		out, err := cfn.DescribeStackSetOperation(ctx, &cloudformation.DescribeStackSetOperationInput{StackSetName: aws.String(set), OperationId: aws.String(op)})
		if err != nil {
			t.Fatal(err)
		}
		return out.StackSetOperation.Status
	}
	run := func(accounts ...string) (string, cftypes.StackSetOperationStatus) {
		out, err := cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{
			StackSetName: aws.String(set), Accounts: accounts, Regions: []string{Region},
		})
		if err != nil {
			t.Fatal(err)
		}
		op := aws.ToString(out.OperationId)
		if got := describe(op); got != cftypes.StackSetOperationStatusRunning {
			t.Errorf("operation at once: %s, want RUNNING", got)
		}
		// AWS runs one operation per stack set at a time.
		_, err = cfn.CreateStackInstances(ctx, &cloudformation.CreateStackInstancesInput{StackSetName: aws.String(set), Accounts: accounts, Regions: []string{Region}})
		if code := awsx.ErrorCode(err); code != "OperationInProgressException" {
			t.Errorf("second operation while one runs: %v, want OperationInProgressException", err)
		}
		var status cftypes.StackSetOperationStatus
		waitUntil(t, "operation "+op, func() bool {
			status = describe(op)
			return status != cftypes.StackSetOperationStatusRunning
		})
		return op, status
	}
	results := func(op string) map[string]string {
		out, err := cfn.ListStackSetOperationResults(ctx, &cloudformation.ListStackSetOperationResultsInput{StackSetName: aws.String(set), OperationId: aws.String(op)})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, s := range out.Summaries {
			got[aws.ToString(s.Account)] = strings.TrimSpace(string(s.Status) + " " + aws.ToString(s.StatusReason))
		}
		return got
	}

	op, status := run(good)
	if status != cftypes.StackSetOperationStatusSucceeded {
		t.Errorf("operation on %s ended %s, want SUCCEEDED", good, status)
	}
	if diff := cmp.Diff(map[string]string{good: "SUCCEEDED"}, results(op)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	op, status = run(other, bad)
	if status != cftypes.StackSetOperationStatusFailed {
		t.Errorf("operation with a failing account ended %s, want FAILED", status)
	}
	if diff := cmp.Diff(map[string]string{other: "SUCCEEDED", bad: "FAILED " + reason}, results(op)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	// Two operations ran (each after one refused), one account failed.
	if st := emu.Proxy.Stats(); st.StackSetOperations != 2 || st.StackSetConflicts != 2 || st.StackSetAccountFailures != 1 {
		t.Errorf("stats: %d operations, %d conflicts, %d account failures; want 2, 2, 1", st.StackSetOperations, st.StackSetConflicts, st.StackSetAccountFailures)
	}

	// The stacks exist where the instances succeeded, and only there.
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{})
	for acct, want := range map[string]int{good: 1, other: 1, bad: 0} {
		out, err := cloudformation.NewFromConfig(accounts.Config(acct)).DescribeStacks(ctx, &cloudformation.DescribeStacksInput{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Stacks) != want {
			t.Errorf("account %s has %d stacks, want %d", acct, len(out.Stacks), want)
		}
	}
}

func TestNewAccountRefusesAssumeRoleForAWhile(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	const window = 400 * time.Millisecond
	emu.Proxy.Configure(Faults{NewAccountUnusable: window})
	mgmt := clientConfig(t, o, 0, nil)
	acct := newMember(t, organizations.NewFromConfig(mgmt), "fresh")
	created := time.Now()
	client := sts.NewFromConfig(mgmt)
	assume := func() error {
		_, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String("arn:aws:iam::" + acct + ":role/" + awsx.MemberRole), RoleSessionName: aws.String("t"),
		})
		return err
	}
	if err := assume(); !awsx.IsAccessDenied(err) || awsx.ErrorCode(err) != "AccessDenied" {
		t.Fatalf("AssumeRole into a new account: %v, want AccessDenied", err)
	}
	// The management account itself is not new.
	if _, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + o.ManagementAccountID + ":role/admin"), RoleSessionName: aws.String("t"),
	}); err != nil {
		t.Errorf("AssumeRole in the management account: %v", err)
	}
	waitUntil(t, "the new account to become usable", func() bool { return assume() == nil })
	if since := time.Since(created); since < window {
		t.Errorf("usable after %v, before the %v window", since, window)
	}
	if n := emu.Proxy.Stats().AssumeRoleDenied; n < 1 {
		t.Errorf("AssumeRoleDenied = %d, want at least 1", n)
	}
}

func TestHookFailsTheNthCall(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode string
	}{
		{"answered 500", errors.New("crash here"), "InternalFailure"},
		{"connection dropped", ErrDropConnection, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := emu.ResetT(t)
			var seen []string
			emu.Proxy.SetHook(func(op awsx.Op, n int64) error {
				seen = append(seen, fmt.Sprintf("%d %s", n, op))
				if n == 3 {
					return tt.err
				}
				return nil
			})
			client := sts.NewFromConfig(clientConfig(t, o, 1, nil))
			var failed []int
			for i := 1; i <= 5; i++ {
				_, err := client.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
				if err != nil {
					failed = append(failed, i)
					if got := awsx.ErrorCode(err); got != tt.wantCode {
						t.Errorf("call %d: code %q (%v), want %q", i, got, err, tt.wantCode)
					}
				}
			}
			if diff := cmp.Diff([]int{3}, failed); diff != "" {
				t.Errorf("failed calls (-want +got):\n%s", diff)
			}
			if seen[0] != "1 STS.GetCallerIdentity" || len(seen) != 5 {
				t.Errorf("hook saw %v", seen)
			}
			if st := emu.Proxy.Stats(); st.HookFailures != 1 || st.Calls["STS.GetCallerIdentity"] != 5 {
				t.Errorf("stats: %d hook failures, %d calls; want 1 and 5", st.HookFailures, st.Calls["STS.GetCallerIdentity"])
			}
		})
	}
}

func TestResetClearsFaults(t *testing.T) {
	o := emu.ResetT(t)
	emu.Proxy.Configure(Faults{
		Throttle:           map[string]float64{"*": 1},
		CreateAccountDelay: time.Hour, // pending when Reset comes: Reset must not wait for it
	})
	emu.Proxy.SetHook(func(awsx.Op, int64) error { return errors.New("always") })
	emu.Proxy.SetHook(nil)
	org := organizations.NewFromConfig(clientConfig(t, o, 1, nil))
	if _, err := org.CreateAccount(t.Context(), &organizations.CreateAccountInput{AccountName: aws.String("x"), Email: aws.String("x@example.com")}); !awsx.IsThrottled(err) {
		t.Fatalf("before reset: %v, want throttled", err)
	}
	emu.Proxy.Configure(Faults{CreateAccountDelay: time.Hour})
	if _, err := org.CreateAccount(t.Context(), &organizations.CreateAccountInput{AccountName: aws.String("x"), Email: aws.String("x@example.com")}); err != nil {
		t.Fatal(err)
	}
	emu.Proxy.SetHook(func(awsx.Op, int64) error { return errors.New("always") })

	o = emu.ResetT(t)
	if st := emu.Proxy.Stats(); st.Total() != 0 || st.MaxCreateInProgress != 0 {
		t.Errorf("stats after reset: %+v, want zero", st)
	}
	org = organizations.NewFromConfig(clientConfig(t, o, 1, nil))
	out, err := org.CreateAccount(t.Context(), &organizations.CreateAccountInput{AccountName: aws.String("y"), Email: aws.String("y@example.com")})
	if err != nil {
		t.Fatalf("after reset: %v", err)
	}
	if out.CreateAccountStatus.State != orgtypes.CreateAccountStateSucceeded {
		t.Errorf("after reset CreateAccount is %s, want moto's immediate SUCCEEDED", out.CreateAccountStatus.State)
	}
	if got := emu.Proxy.Stats().Calls; !cmp.Equal(got, map[string]int64{"Organizations.CreateAccount": 1}) {
		t.Errorf("calls after reset = %v", got)
	}
}

// TestRoute53ThroughProxy: Route 53 (REST-XML) is forwarded as it came and
// named like the SDK's operations; its throttles and injected failures come
// in Route 53's XML error shape, so the SDK parses their codes and retries.
func TestRoute53ThroughProxy(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	r53 := route53.NewFromConfig(clientConfig(t, o, 0, nil))
	zone, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("tenants.example.internal"), CallerReference: aws.String("ref-1")})
	if err != nil {
		t.Fatal(err)
	}
	zoneID := aws.ToString(zone.HostedZone.Id)
	rr := &r53types.ResourceRecordSet{Name: aws.String("acme.tenants.example.internal"), Type: r53types.RRTypeA, TTL: aws.Int64(60),
		ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("127.0.0.1")}}}
	change := func(action r53types.ChangeAction) error {
		_, err := r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
			ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{Action: action, ResourceRecordSet: rr}}}})
		return err
	}
	list := func() []string {
		out, err := r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range out.ResourceRecordSets {
			if s.Type == r53types.RRTypeA {
				got = append(got, aws.ToString(s.Name)+" "+aws.ToString(s.ResourceRecords[0].Value))
			}
		}
		return got
	}

	// Every change call throttled half the time: silo's retryer rides it out.
	emu.Proxy.Configure(Faults{Throttle: map[string]float64{"Route 53.ChangeResourceRecordSets": 0.5}, Seed: 11})
	for range 3 {
		if err := change(r53types.ChangeActionUpsert); err != nil {
			t.Fatalf("upsert under throttling: %v", err)
		}
	}
	st := emu.Proxy.Stats()
	if st.Throttled["Route 53.ChangeResourceRecordSets"] == 0 || st.Calls["Route 53.ListResourceRecordSets"] != 0 {
		t.Errorf("stats %+v: want some ChangeResourceRecordSets throttled (and the seed to throttle at least one)", st)
	}
	emu.Proxy.Configure(Faults{})
	if diff := cmp.Diff([]string{"acme.tenants.example.internal. 127.0.0.1"}, list()); diff != "" {
		t.Errorf("records after upsert (-want +got):\n%s", diff)
	}
	if got := emu.Proxy.Stats().Calls["Route 53.ListResourceRecordSets"]; got != 1 {
		t.Errorf("ListResourceRecordSets counted %d times, want 1", got)
	}

	// An injected failure is a 500 in the XML shape: code InternalFailure.
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.String() == "Route 53.ChangeResourceRecordSets" {
			return errors.New("crash here")
		}
		return nil
	})
	one := route53.NewFromConfig(clientConfig(t, o, 1, nil))
	_, err = one.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
		ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{Action: r53types.ChangeActionDelete, ResourceRecordSet: rr}}}})
	if got := awsx.ErrorCode(err); got != "InternalFailure" {
		t.Errorf("injected failure: %v (code %q), want InternalFailure", err, got)
	}
	emu.Proxy.SetHook(nil)

	// DELETE with the exact record removes it; a second DELETE is refused
	// in a way awsx recognises as "already gone".
	if err := change(r53types.ChangeActionDelete); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("records after delete: %v", got)
	}
	if err := change(r53types.ChangeActionDelete); err != nil && !awsx.IsRecordSetGone(err) {
		t.Errorf("second delete: %v (code %q), want success or a record-gone error", err, awsx.ErrorCode(err))
	}
}
