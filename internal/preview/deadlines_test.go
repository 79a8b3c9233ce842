package preview_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// The preview and pool states have deadlines too: a pool account's
// vending record, a preview, and the pool's own resetting state. Each is
// held past a short deadline by the fault proxy, fails (or is quarantined)
// with the reason, and is taken out.

// shortDeadlines are a few seconds (a whole vend takes under one here);
// the faults hold for holdFor, well past them.
func shortDeadlines() vending.Deadlines {
	s := vending.StateDeadlines{Requested: 3 * time.Second, CreatingAccount: 3 * time.Second, Preparing: 3 * time.Second,
		Deploying: 3 * time.Second, Updating: 3 * time.Second, Decommissioning: 30 * time.Second}
	return vending.Deadlines{Tenant: s, Preview: s, Pool: s, PoolResetting: 3 * time.Second, QuotaNote: 2 * time.Second}
}

const holdFor = 8 * time.Second

// poolRecord returns the one pool-kind vending record in state st.
func (e *env) poolRecord(t *testing.T, st registry.State) *registry.Tenant {
	t.Helper()
	page, err := e.c.Registry.List(t.Context(), st, registry.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range page.Tenants {
		if tn.Kind == registry.KindPool {
			return tn
		}
	}
	return nil
}

// TestPoolAccountCreationPastDeadline: the creation of a pool account that
// stays IN_PROGRESS past the deadline fails its vending record with the
// request's state, and the pool does not make a second account meanwhile;
// retried once the request has succeeded, the record adopts the account
// and hands it to the pool.
func TestPoolAccountCreationPastDeadline(t *testing.T) {
	e := startWith(t, preview.Config{PoolSize: 1}, local.ControlOptions{Deadlines: shortDeadlines()}, func() {
		emu.Proxy.Configure(emulator.Faults{CreateAccountDelay: holdFor})
	})
	var failed *registry.Tenant
	eventually(t, time.Minute, "the pool account's record FAILED", func() (bool, error) {
		failed = e.poolRecord(t, registry.StateFailed)
		return failed != nil, nil
	})
	if failed.FailedFrom != registry.StateCreatingAccount || !strings.Contains(failed.Reason, "no progress in CREATING_ACCOUNT for") ||
		!strings.Contains(failed.Reason, "is IN_PROGRESS") {
		t.Errorf("pool record failed from %s: %q", failed.FailedFrom, failed.Reason)
	}
	emu.Proxy.Configure(emulator.Faults{})
	// The request succeeds at its own time; then a retry adopts it.
	name := e.c.Vending.AccountName(failed.ID)
	orgc := organizations.NewFromConfig(e.c.Config)
	eventually(t, 2*holdFor, "the request's account exists", func() (bool, error) {
		out, err := orgc.ListAccounts(t.Context(), &organizations.ListAccountsInput{})
		if err != nil {
			return false, err
		}
		for _, a := range out.Accounts {
			if aws.ToString(a.Name) == name {
				return true, nil
			}
		}
		return false, nil
	})
	if _, err := vending.Retry(t.Context(), e.c.Registry, failed.ID, "operator:ann", "the creation finished"); err != nil {
		t.Fatal(err)
	}
	e.runner.Kick(failed.ID)
	e.waitPool(t, registry.PoolAvailable, 1)
	if n := emu.Proxy.Stats().CreateRequests; n != 1 {
		t.Errorf("%d create-account requests for a pool of one", n)
	}
	closed, err := e.c.Registry.Get(t.Context(), failed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if closed.State != registry.StateClosed {
		t.Errorf("pool record %s is %s, want CLOSED (handed to the pool)", closed.ID, closed.State)
	}
}

// TestPreviewPastDeadlines: a preview whose deploy stays RUNNING past the
// preview DEPLOYING deadline fails with the operation's status; released,
// its account goes back for a reset, and a reset that keeps erroring
// before it can count an attempt is quarantined at the pool's resetting
// deadline with the error; cleared once the fault is gone, the account is
// reset and available again.
func TestPreviewPastDeadlines(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 1}, local.ControlOptions{Deadlines: shortDeadlines()})
	e.waitPool(t, registry.PoolAvailable, 1)
	emu.Proxy.Configure(emulator.Faults{StackSetOperationDelay: holdFor})
	p, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/slow", PR: 7, Artifact: build(t, "slow"), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	p = e.waitPhase(t, p.ID, preview.PhaseFailed, time.Minute)
	if !strings.Contains(p.Reason, "no progress in DEPLOYING for") || !strings.Contains(p.Reason, "is RUNNING") {
		t.Errorf("preview failed with %q", p.Reason)
	}
	failed, err := e.c.Registry.Get(t.Context(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if failed.FailedFrom != registry.StateDeploying {
		t.Errorf("preview failed from %s, want DEPLOYING", failed.FailedFrom)
	}
	account := failed.AccountID
	emu.Proxy.Configure(emulator.Faults{})

	// The reset cannot even look for the stack instance.
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.String() == "CloudFormation.ListStackInstances" {
			return errHook
		}
		return nil
	})
	t.Cleanup(func() { emu.Proxy.SetHook(nil) })
	if _, err := e.m.Down(t.Context(), p.ID, "test", "PR closed"); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, p.ID, preview.PhaseReleased, time.Minute)
	var q *registry.PoolAccount
	eventually(t, time.Minute, "the account quarantined", func() (bool, error) {
		q, err = e.c.Registry.GetPoolAccount(t.Context(), account)
		return err == nil && q.State == registry.PoolQuarantined, err
	})
	if !strings.Contains(q.Reason, "no progress in resetting for") || !strings.Contains(q.Reason, "ListStackInstances") {
		t.Errorf("quarantined with %q", q.Reason)
	}

	// An operator clears it once the fault is gone: the reset runs again.
	emu.Proxy.SetHook(nil)
	if _, err := e.c.Registry.MovePoolAccount(t.Context(), q, registry.PoolResetting, func(n *registry.PoolAccount) { n.Reason = "" }); err != nil {
		t.Fatal(err)
	}
	e.m.Wake()
	eventually(t, time.Minute, "the account available again", func() (bool, error) {
		a, err := e.c.Registry.GetPoolAccount(t.Context(), account)
		return err == nil && a.State == registry.PoolAvailable, err
	})
}

var errHook = hookError("injected: the call fails")

type hookError string

func (e hookError) Error() string { return string(e) }
