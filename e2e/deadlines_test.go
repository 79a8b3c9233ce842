package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// Every working state has a deadline. These tests hold a tenant in each
// past a short one with the fault proxy, check that it ends FAILED with a
// reason naming the state and what AWS said, then take it out: retry to
// ACTIVE once the fault is gone, or decommission to CLOSED with no account
// left open in the organization.

// short are deadlines of a few seconds: the emulator's AWS is hundreds of
// times faster than AWS (a whole vend takes under a second here), and
// these tests are about what happens past them. The faults hold a tenant
// for holdFor, well past them.
func short(over func(*vending.StateDeadlines)) vending.Deadlines {
	d := vending.StateDeadlines{Requested: 3 * time.Second, CreatingAccount: 3 * time.Second, Preparing: 3 * time.Second,
		Deploying: 3 * time.Second, Updating: 3 * time.Second, Decommissioning: 30 * time.Second}
	if over != nil {
		over(&d)
	}
	return vending.Deadlines{Tenant: d, QuotaNote: 2 * time.Second}
}

// holdFor is how long a fault holds a tenant: past its deadline.
const holdFor = 8 * time.Second

// wireDeadlines wires a control plane with deadlines d and runs a runner
// on it (sweeping every 100ms) until the test ends.
func wireDeadlines(t *testing.T, d vending.Deadlines) (*local.Control, *vending.Runner) {
	t.Helper()
	o := fastRecovery
	o.Deadlines = d
	c := wire(t, o)
	runner := vending.NewRunner(c.Reconciler, 16)
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = runner.Run(ctx, 100*time.Millisecond) })
	t.Cleanup(func() { stop(); wg.Wait() })
	return c, runner
}

// waitState waits until the tenant is in state want (failing fast on
// another resting state) and returns it.
func waitState(t *testing.T, c *local.Control, id string, want registry.State, limit time.Duration) *registry.Tenant {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		tn, err := c.Registry.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tn.State == want {
			return tn
		}
		switch tn.State {
		case registry.StateActive, registry.StateFailed, registry.StateClosed:
			evs, _ := c.Registry.Events(ctx, id)
			for _, e := range evs {
				t.Logf("event %s %s %s->%s %s %v", e.Time.Format("15:04:05.000"), e.Type, e.From, e.To, e.Reason, e.Detail)
			}
			t.Fatalf("tenant %s is %s (%s), want %s", id, tn.State, tn.Reason, want)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tenant %s still %s after %s (last error %q), want %s", id, tn.State, limit, tn.LastError, want)
		case <-tick.C:
		}
	}
}

// waitFor waits until cond holds for the tenant and returns it.
func waitFor(t *testing.T, c *local.Control, id string, limit time.Duration, what string, cond func(*registry.Tenant) bool) *registry.Tenant {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	for {
		tn, err := c.Registry.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(tn) {
			return tn
		}
		if err := awsx.Sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatalf("tenant %s: not %s after %s: it is %s (%s, last error %q)", id, what, limit, tn.State, tn.Reason, tn.LastError)
		}
	}
}

// checkFailed checks a tenant that went past its deadline: FAILED from
// state, its reason naming the state and containing each of says, and the
// deadline_exceeded event recorded.
func checkFailed(t *testing.T, c *local.Control, tn *registry.Tenant, from registry.State, says ...string) {
	t.Helper()
	if tn.FailedFrom != from {
		t.Errorf("tenant %s failed from %s, want %s (%s)", tn.ID, tn.FailedFrom, from, tn.Reason)
	}
	for _, s := range append([]string{"no progress in " + string(from) + " for"}, says...) {
		if !strings.Contains(tn.Reason, s) {
			t.Errorf("tenant %s: reason %q does not say %q", tn.ID, tn.Reason, s)
		}
	}
	if tn.Operation != "" {
		t.Errorf("tenant %s FAILED still names operation %q", tn.ID, tn.Operation)
	}
	events, err := c.Registry.Events(t.Context(), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Type != "deadline_exceeded" || last.From != from || last.To != registry.StateFailed || last.Detail["state"] != string(from) {
		t.Errorf("tenant %s: last event %+v, want deadline_exceeded from %s", tn.ID, last, from)
	}
}

// retry retries a FAILED tenant as the API does (and kicks it).
func retry(t *testing.T, c *local.Control, u *vending.Runner, id string) {
	t.Helper()
	if _, err := c.Reconciler.Retry(t.Context(), id, "operator:ann", "the fault is gone"); err != nil {
		t.Fatal(err)
	}
	u.Kick(id)
}

// decommission decommissions a tenant as the API does (and kicks it).
func decommission(t *testing.T, c *local.Control, u *vending.Runner, id string) {
	t.Helper()
	tn, err := c.Registry.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.Transition(t.Context(), tn, registry.StateDecommissioning, registry.Change{
		Actor: "operator:ann", Reason: "stuck: take it out", Type: "decommission"}); err != nil {
		t.Fatal(err)
	}
	u.Kick(id)
}

// checkClosed checks a decommissioned tenant: CLOSED, its deletion report
// stored, and its account closed in the organization.
func checkClosed(t *testing.T, c *local.Control, tn *registry.Tenant, account string) {
	t.Helper()
	if tn.State != registry.StateClosed {
		t.Fatalf("tenant %s is %s (%s), want CLOSED", tn.ID, tn.State, tn.Reason)
	}
	if account == "" {
		return
	}
	var report vending.DeletionReport
	if err := c.Registry.Report(t.Context(), tn.ID, vending.ReportDeletion, &report); err != nil {
		t.Errorf("tenant %s: no deletion report: %v", tn.ID, err)
	} else if report.Account != account || len(report.Remaining) != 0 {
		t.Errorf("tenant %s: deletion report of %s, %d remaining", tn.ID, report.Account, len(report.Remaining))
	}
	desc, err := organizations.NewFromConfig(c.Config).DescribeAccount(t.Context(), &organizations.DescribeAccountInput{AccountId: aws.String(account)})
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.Account.Status; st != orgtypes.AccountStatusSuspended && st != orgtypes.AccountStatusPendingClosure {
		t.Errorf("tenant %s: account %s is %s, want closed", tn.ID, account, st)
	}
}

// noOrphans checks, through the emulator's Organizations API, that every
// account of the organization still open belongs to a tenant that is not
// closed: none was left behind by a failure or a decommission.
func noOrphans(t *testing.T, c *local.Control) {
	t.Helper()
	p := organizations.NewListAccountsPaginator(organizations.NewFromConfig(c.Config), &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Accounts {
			id := aws.ToString(a.Id)
			if id == c.Org.ManagementAccountID || a.Status != orgtypes.AccountStatusActive {
				continue
			}
			tn, err := c.Registry.GetByAccount(t.Context(), id)
			if err != nil {
				t.Errorf("orphan account %s (%s): %v", id, aws.ToString(a.Name), err)
				continue
			}
			if tn.State == registry.StateClosed {
				t.Errorf("account %s is open but its tenant %s is CLOSED", id, tn.ID)
			}
		}
	}
}

// TestDeadlineRequested: a tenant the reconciler cannot move on (its first
// step, publishing tenant.requested, hangs) is failed by the runner's
// sweep, which also stops the Drive stuck on it; retried once the fault is
// gone, it reaches ACTIVE.
func TestDeadlineRequested(t *testing.T) {
	c, u := wireDeadlines(t, short(nil))
	emu.Proxy.Configure(emulator.Faults{Latency: map[string]time.Duration{"EventBridge.PutEvents": holdFor}})
	signup(t, c, "unmoved")
	u.Kick("unmoved")
	tn := waitState(t, c, "unmoved", registry.StateFailed, 30*time.Second)
	checkFailed(t, c, tn, registry.StateRequested, "never moved it on")

	emu.Proxy.Configure(emulator.Faults{})
	retry(t, c, u, "unmoved")
	waitState(t, c, "unmoved", registry.StateActive, time.Minute)
	checkFleet(t, c, []string{"unmoved"})
}

// TestDeadlineCreatingAccount: account creations that stay IN_PROGRESS
// past the deadline fail their tenants with the request's state. Once the
// requests have succeeded, a retry adopts its account (no second one is
// made), and a decommission finds the other's and closes it.
func TestDeadlineCreatingAccount(t *testing.T) {
	c, u := wireDeadlines(t, short(nil))
	emu.Proxy.Configure(emulator.Faults{CreateAccountDelay: holdFor})
	signup(t, c, "slow-retry", "slow-decom")
	u.Kick("slow-retry")
	u.Kick("slow-decom")
	for _, id := range []string{"slow-retry", "slow-decom"} {
		tn := waitState(t, c, id, registry.StateFailed, 30*time.Second)
		checkFailed(t, c, tn, registry.StateCreatingAccount, "create-account request car-", "is IN_PROGRESS")
	}
	emu.Proxy.Configure(emulator.Faults{})

	// Decommissioned while its request is still in progress: the account
	// it makes is found, waited for and closed.
	decommission(t, c, u, "slow-decom")
	closed := waitState(t, c, "slow-decom", registry.StateClosed, time.Minute)
	events, err := c.Registry.Events(t.Context(), "slow-decom")
	if err != nil {
		t.Fatal(err)
	}
	account := ""
	for _, e := range events {
		if e.Type == "account_found" {
			account = e.Detail["account"]
		}
	}
	if account == "" {
		t.Fatalf("decommission recorded no account_found event: %+v", events)
	}
	checkClosed(t, c, closed, account)

	// Retried once its request has succeeded: adopted, not made twice.
	waitAccountNamed(t, c, c.Vending.AccountName("slow-retry"))
	retry(t, c, u, "slow-retry")
	waitState(t, c, "slow-retry", registry.StateActive, time.Minute)
	checkFleet(t, c, []string{"slow-retry"})
	noOrphans(t, c)
	if n := emu.Proxy.Stats().CreateRequests; n != 2 {
		t.Errorf("%d create-account requests for two tenants", n)
	}
}

// waitAccountNamed waits until the organization has an account named name.
func waitAccountNamed(t *testing.T, c *local.Control, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	orgc := organizations.NewFromConfig(c.Config)
	for {
		out, err := orgc.ListAccounts(ctx, &organizations.ListAccountsInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range out.Accounts {
			if aws.ToString(a.Name) == name {
				return
			}
		}
		if err := awsx.Sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatalf("no account named %s: %v", name, err)
		}
	}
}

// TestDeadlinePreparing: a new account that refuses AssumeRole longer
// than the PREPARING deadline fails its tenant with the readiness check's
// last error, AWS's AccessDenied; once the account is usable a retry
// reaches ACTIVE.
func TestDeadlinePreparing(t *testing.T) {
	c, u := wireDeadlines(t, short(nil))
	emu.Proxy.Configure(emulator.Faults{NewAccountUnusable: holdFor})
	signup(t, c, "unready")
	u.Kick("unready")
	tn := waitState(t, c, "unready", registry.StateFailed, 30*time.Second)
	checkFailed(t, c, tn, registry.StatePreparing, "account "+tn.AccountID, "last error: assume role in "+tn.AccountID, "AccessDenied")

	emu.Proxy.Configure(emulator.Faults{})
	retry(t, c, u, "unready")
	waitState(t, c, "unready", registry.StateActive, time.Minute)
	checkFleet(t, c, []string{"unready"})
}

// TestDeadlineStepErrors: a step that keeps failing (Organizations answers
// 500 to every ListParents) is recorded as the tenant's last error while
// the runner retries it, and the sweep fails it at the deadline quoting
// that error. Decommissioned (an account, still in the root, but no
// stack), it closes.
func TestDeadlineStepErrors(t *testing.T) {
	// The SDK retries each refused call for a few seconds before the step
	// sees the error: the deadline leaves room for a few of them.
	c, u := wireDeadlines(t, short(func(d *vending.StateDeadlines) { d.Preparing = sdkRetries }))
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.Service == "Organizations" && op.Operation == "ListParents" {
			return errInjected
		}
		return nil
	})
	signup(t, c, "parentless")
	u.Kick("parentless")
	// Before the deadline, the tenant shows what it is stuck on.
	waitFor(t, c, "parentless", 30*time.Second, "PREPARING with its last error", func(tn *registry.Tenant) bool {
		if tn.State == registry.StateFailed {
			t.Fatalf("tenant FAILED (%s) without its last error recorded first", tn.Reason)
		}
		return tn.State == registry.StatePreparing && strings.Contains(tn.LastError, "ListParents")
	})
	tn := waitState(t, c, "parentless", registry.StateFailed, 30*time.Second)
	checkFailed(t, c, tn, registry.StatePreparing, "last error: ", "ListParents", "InternalFailure")

	emu.Proxy.SetHook(nil)
	account := tn.AccountID
	decommission(t, c, u, "parentless")
	checkClosed(t, c, waitState(t, c, "parentless", registry.StateClosed, time.Minute), account)
	noOrphans(t, c)
}

// sdkRetries is longer than the SDK takes to give up on a call that
// keeps failing (8 attempts, backoff up to 500ms, on this slow machine).
const sdkRetries = 12 * time.Second

var errInjected = &injected{}

type injected struct{}

func (*injected) Error() string { return "injected failure" }

// TestDeadlineDeploying: StackSet operations that stay RUNNING past the
// DEPLOYING deadline fail their tenants with the operation's status. Once
// they have ended, one tenant is retried to ACTIVE (its instance, created
// meanwhile, is updated, not created twice) and the other, half deployed,
// is decommissioned to CLOSED.
func TestDeadlineDeploying(t *testing.T) {
	c, u := wireDeadlines(t, short(nil))
	emu.Proxy.Configure(emulator.Faults{StackSetOperationDelay: holdFor})
	signup(t, c, "deploy-retry", "deploy-decom")
	u.Kick("deploy-retry")
	first := waitState(t, c, "deploy-retry", registry.StateFailed, 30*time.Second)
	checkFailed(t, c, first, registry.StateDeploying, "stack set operation", "is RUNNING")
	// The second waits for the stack set (one operation at a time) under
	// a quota note, which does not count, then runs out of time on its own
	// operation.
	u.Kick("deploy-decom")
	second := waitState(t, c, "deploy-decom", registry.StateFailed, 30*time.Second)
	checkFailed(t, c, second, registry.StateDeploying, "stack set operation", "is RUNNING")
	emu.Proxy.Configure(emulator.Faults{})
	waitStackSetIdle(t, c, 2*holdFor)

	retry(t, c, u, "deploy-retry")
	waitState(t, c, "deploy-retry", registry.StateActive, time.Minute)
	decommission(t, c, u, "deploy-decom")
	checkClosed(t, c, waitState(t, c, "deploy-decom", registry.StateClosed, time.Minute), second.AccountID)
	checkFleet(t, c, []string{"deploy-retry"})
	noOrphans(t, c)
}

// waitStackSetIdle waits until no operation on the tenant stack set is
// RUNNING, as CloudFormation lists them (the proxy's delays outlive
// Configure).
func waitStackSetIdle(t *testing.T, c *local.Control, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cfn := cloudformation.NewFromConfig(c.Config)
	for {
		running := 0
		p := cloudformation.NewListStackSetOperationsPaginator(cfn, &cloudformation.ListStackSetOperationsInput{StackSetName: aws.String(c.StackSets.StackSetName())})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range page.Summaries {
				if op.Status == cfntypes.StackSetOperationStatusRunning {
					running++
				}
			}
		}
		if running == 0 {
			return
		}
		if err := awsx.Sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatalf("%d stack set operations still running: %v", running, err)
		}
	}
}

// newRelease publishes another build, for an update.
func newRelease(t *testing.T, c *local.Control) string {
	t.Helper()
	code, err := lambdazip.Pack([]byte("#!/bin/sh\necho v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := c.Releases().Publish(t.Context(), code, "test")
	if err != nil {
		t.Fatal(err)
	}
	return rel.Version
}

// TestDeadlineUpdating: an update whose operation stays RUNNING past the
// UPDATING deadline fails the tenant with its status; retried once the
// operation has ended, the tenant reaches ACTIVE on the new release.
func TestDeadlineUpdating(t *testing.T) {
	c, u := wireDeadlines(t, short(nil))
	signup(t, c, "updater")
	u.Kick("updater")
	tn := waitState(t, c, "updater", registry.StateActive, time.Minute)
	rel := newRelease(t, c)
	emu.Proxy.Configure(emulator.Faults{StackSetOperationDelay: holdFor})
	if _, err := c.Registry.Update(t.Context(), tn, registry.Change{Actor: "test", Type: "retargeted",
		Mutate: func(n *registry.Tenant) { n.TargetVersion = rel }}); err != nil {
		t.Fatal(err)
	}
	u.Kick("updater")
	// It is ACTIVE until the reconciler takes the new target up.
	failed := waitFor(t, c, "updater", 30*time.Second, "FAILED from UPDATING", func(tn *registry.Tenant) bool {
		if tn.State == registry.StateActive && tn.AppVersion == rel {
			t.Fatalf("updated to %s within the deadline: the fault did not hold it", rel)
		}
		return tn.State == registry.StateFailed
	})
	checkFailed(t, c, failed, registry.StateUpdating, "stack set operation", "is RUNNING")

	emu.Proxy.Configure(emulator.Faults{})
	waitStackSetIdle(t, c, 2*holdFor)
	retry(t, c, u, "updater")
	done := waitState(t, c, "updater", registry.StateActive, time.Minute)
	if done.AppVersion != rel {
		t.Errorf("after retry: on %s, want %s", done.AppVersion, rel)
	}
}

// TestDeadlineDecommissioning: a decommission whose instance removal
// CloudFormation keeps refusing fails the tenant at the deadline, naming
// the step and AWS's error; decommissioned again once the fault is gone,
// it resumes with a new removal and reaches CLOSED with its report.
func TestDeadlineDecommissioning(t *testing.T) {
	// Long enough for the cleaning that follows the removal, which makes
	// no checkpoint of its own.
	c, u := wireDeadlines(t, short(func(d *vending.StateDeadlines) { d.Decommissioning = sdkRetries }))
	signup(t, c, "leaver")
	u.Kick("leaver")
	tn := waitState(t, c, "leaver", registry.StateActive, time.Minute)
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.Service == "CloudFormation" && op.Operation == "DeleteStackInstances" {
			return errInjected
		}
		return nil
	})
	decommission(t, c, u, "leaver")
	failed := waitState(t, c, "leaver", registry.StateFailed, time.Minute)
	checkFailed(t, c, failed, registry.StateDecommissioning, "removing the stack instance from account "+tn.AccountID,
		"last error: ", "DeleteStackInstances", "InternalFailure")

	emu.Proxy.SetHook(nil)
	decommission(t, c, u, "leaver")
	checkClosed(t, c, waitState(t, c, "leaver", registry.StateClosed, time.Minute), tn.AccountID)
	noOrphans(t, c)
}

// TestQuotaWaitIsNotStuck: tenants queued behind the create-account quota
// wait longer than the CREATING_ACCOUNT deadline, visibly (a quota note),
// and still reach ACTIVE: a wait on a quota AWS enforces is bounded, not
// stuck.
func TestQuotaWaitIsNotStuck(t *testing.T) {
	o := fastRecovery
	o.Deadlines = short(nil)
	o.Deadlines.QuotaNote = time.Second
	o.Quotas = vending.Quotas{MaxCreateInProgress: 1}
	c := wire(t, o)
	// Each creation takes most of the deadline, so the third tenant waits
	// for a slot well past it.
	emu.Proxy.Configure(emulator.Faults{CreateAccountDelay: 2 * time.Second})
	ids := []string{"queued-a", "queued-b", "queued-c"}
	signup(t, c, ids...)
	runner := vending.NewRunner(c.Reconciler, 16)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = runner.Run(ctx, 100*time.Millisecond) })
	defer func() { stop(); wg.Wait() }()

	noted := map[string]string{}
	limit, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		active := 0
		for _, id := range ids {
			tn, err := c.Registry.Get(limit, id)
			if err != nil {
				t.Fatal(err)
			}
			if tn.Waiting != "" {
				noted[id] = tn.Waiting
			}
			switch tn.State {
			case registry.StateFailed:
				t.Fatalf("%s FAILED while queued behind the quota: %s", id, tn.Reason)
			case registry.StateActive:
				active++
			}
		}
		if active == len(ids) {
			break
		}
		if err := awsx.Sleep(limit, 20*time.Millisecond); err != nil {
			t.Fatalf("tenants not ACTIVE: %v", err)
		}
	}
	if len(noted) == 0 {
		t.Error("no tenant showed it was waiting for a create-account slot")
	}
	for id, w := range noted {
		if !strings.HasPrefix(w, "create-account slot") {
			t.Errorf("%s noted %q", id, w)
		}
	}
	t.Logf("quota notes seen: %v", noted)
	emu.Proxy.Configure(emulator.Faults{})
	checkFleet(t, c, ids)
}
