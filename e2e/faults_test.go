package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// awsLike is AWS's behaviour, scaled down in time: creation takes a while
// and at most 5 run at once, a fifth of all calls are throttled, a new
// account refuses AssumeRole for a moment, and StackSet operations run.
func awsLike() emulator.Faults {
	return emulator.Faults{
		CreateAccountDelay:     400 * time.Millisecond,
		MaxCreateInProgress:    5,
		Throttle:               map[string]float64{"*": 0.2},
		NewAccountUnusable:     time.Second,
		StackSetOperationDelay: 200 * time.Millisecond,
		Seed:                   7,
	}
}

// waitStates runs until every tenant is in a stable state or ctx ends.
func waitStates(ctx context.Context, t *testing.T, c *local.Control, ids []string) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := 0
		for _, id := range ids {
			tn, err := c.Registry.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch tn.State {
			case registry.StateActive, registry.StateFailed, registry.StateClosed:
			default:
				pending++
			}
		}
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d tenants still working: %v", pending, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestVendTwentyUnderFaults: 20 tenants reach ACTIVE through the runner
// while the emulator behaves like AWS, and the quota is never exceeded.
func TestVendTwentyUnderFaults(t *testing.T) {
	c := wire(t, fastRecovery)
	emu.Proxy.Configure(awsLike())
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("fleet-%02d", i))
	}
	signup(t, c, ids...)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	runner := vending.NewRunner(c.Reconciler, 32)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx, 500*time.Millisecond) }()
	waitStates(ctx, t, c, ids)
	stop()
	<-done

	stats := emu.Proxy.Stats()
	emu.Proxy.Configure(emulator.Faults{}) // the checks below run fault-free
	checkFleet(t, c, ids)
	if stats.CreateLimitViolations != 0 {
		t.Errorf("%d create-account requests beyond the in-progress limit", stats.CreateLimitViolations)
	}
	if stats.MaxCreateInProgress > 5 {
		t.Errorf("%d creations in progress at once, quota 5", stats.MaxCreateInProgress)
	}
	var throttled int64
	for _, n := range stats.Throttled {
		throttled += n
	}
	if throttled == 0 || stats.AssumeRoleDenied == 0 {
		t.Errorf("faults not exercised: throttled %d, assume-role denied %d", throttled, stats.AssumeRoleDenied)
	}
	t.Logf("calls %d, throttled %d, assume-role denied %d, peak creations %d", stats.Total(), throttled, stats.AssumeRoleDenied, stats.MaxCreateInProgress)
}

// TestCreateFailureThenRetry: AWS fails a creation with a reason; the
// tenant ends FAILED with it; once the cause is gone a retry reaches ACTIVE.
func TestCreateFailureThenRetry(t *testing.T) {
	c := wire(t, fastRecovery)
	f := awsLike()
	f.Throttle = nil
	f.CreateAccountFailure = func(email, name string) string {
		if strings.HasSuffix(name, "-unlucky") {
			return "EMAIL_ALREADY_EXISTS"
		}
		return ""
	}
	emu.Proxy.Configure(f)
	signup(t, c, "unlucky", "lucky")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	got := driveAll(ctx, t, c, []string{"unlucky", "lucky"})
	if tn := got["unlucky"]; tn == nil || tn.State != registry.StateFailed || !strings.Contains(tn.Reason, "EMAIL_ALREADY_EXISTS") || tn.FailedFrom != registry.StateCreatingAccount {
		t.Fatalf("unlucky = %+v, want FAILED with EMAIL_ALREADY_EXISTS from CREATING_ACCOUNT", tn)
	}
	if tn := got["lucky"]; tn == nil || tn.State != registry.StateActive {
		t.Fatalf("lucky = %+v, want ACTIVE", tn)
	}
	events, err := c.Registry.Events(ctx, "unlucky")
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1]; last.To != registry.StateFailed || !strings.Contains(last.Reason, "EMAIL_ALREADY_EXISTS") {
		t.Errorf("last event %+v does not record the failure", last)
	}

	f.CreateAccountFailure = nil // the operator fixed the cause
	emu.Proxy.Configure(f)
	if _, err := c.Reconciler.Retry(ctx, "unlucky", "operator:ann", "email freed"); err != nil {
		t.Fatal(err)
	}
	tn, err := c.Reconciler.Drive(ctx, "unlucky")
	if err != nil {
		t.Fatal(err)
	}
	if tn.State != registry.StateActive {
		t.Fatalf("after retry: %s (%s)", tn.State, tn.Reason)
	}
	emu.Proxy.Configure(emulator.Faults{})
	checkFleet(t, c, []string{"unlucky", "lucky"})
}

// TestStackInstanceFailure: a StackSet operation that fails for the
// tenant's account ends the tenant FAILED with AWS's reason. The proxy
// fails the account before any stack is made there, so the reason is the
// operation's, and says that no member stack could be read.
func TestStackInstanceFailure(t *testing.T) {
	c := wire(t, fastRecovery)
	signup(t, c, "broken")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	emu.Proxy.Configure(emulator.Faults{
		StackSetOperationDelay: 100 * time.Millisecond,
		StackSetFailure:        func(string) string { return "Resource handler returned message: quota exceeded" },
	})
	tn, err := c.Reconciler.Drive(ctx, "broken")
	if err != nil {
		t.Fatal(err)
	}
	if tn.State != registry.StateFailed || !strings.Contains(tn.Reason, "quota exceeded") || tn.FailedFrom != registry.StateDeploying {
		t.Fatalf("tenant = %s from %s (%s), want FAILED from DEPLOYING with the reason", tn.State, tn.FailedFrom, tn.Reason)
	}
	if !strings.HasSuffix(tn.Reason, "(no member stack to read)") {
		t.Errorf("reason %q does not say the member stack could not be read", tn.Reason)
	}
	emu.Proxy.Configure(emulator.Faults{})
	if _, err := c.Reconciler.Retry(ctx, "broken", "operator:ann", "quota raised"); err != nil {
		t.Fatal(err)
	}
	if tn, err = c.Reconciler.Drive(ctx, "broken"); err != nil || tn.State != registry.StateActive {
		t.Fatalf("after retry: %+v %v", tn, err)
	}
	checkFleet(t, c, []string{"broken"})
}
