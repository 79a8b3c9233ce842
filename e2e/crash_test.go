package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go/middleware"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// crasher stops a reconciler at its Nth AWS call (registry calls
// included): before the call is sent, or after AWS has acted on it but
// before the reconciler sees the answer, the worst moment to die.
type crasher struct {
	calls  atomic.Int64
	at     int64
	after  bool
	cancel context.CancelFunc
}

var errCrash = errors.New("crashed")

func (c *crasher) add(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("e2e.Crash",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			n := c.calls.Add(1)
			if c.at > 0 && n == c.at && !c.after {
				c.cancel()
				return middleware.FinalizeOutput{}, middleware.Metadata{}, errCrash
			}
			out, md, err := next.HandleFinalize(ctx, in)
			if c.at > 0 && n == c.at && c.after {
				c.cancel()
				return middleware.FinalizeOutput{}, middleware.Metadata{}, errCrash
			}
			return out, md, err
		}), middleware.After)
}

// fastRecovery makes a dead reconciler's claim expire quickly.
var fastRecovery = local.ControlOptions{ClaimTTL: 300 * time.Millisecond}

// TestCrashAtEveryCall kills the reconciler at each AWS call of a vend in
// turn, before and after the call, then lets a fresh reconciler finish:
// every run must end with the tenant ACTIVE on exactly one account and no
// orphan account in the organization.
func TestCrashAtEveryCall(t *testing.T) {
	// A clean run first, to count the calls of one vend.
	base := wire(t, fastRecovery)
	signup(t, base, "probe")
	counter := &crasher{}
	o := fastRecovery
	o.APIOptions = append(o.APIOptions, counter.add)
	counted, err := local.Wire(t.Context(), base.Org, o, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	counter.calls.Store(0)
	if _, err := counted.Reconciler.Drive(t.Context(), "probe"); err != nil {
		t.Fatal(err)
	}
	total := counter.calls.Load()
	t.Logf("one vend makes %d AWS calls (registry included)", total)
	if total < 10 {
		t.Fatalf("only %d calls counted; the crasher is not wired in", total)
	}

	for _, after := range []bool{false, true} {
		for n := int64(1); n <= total; n++ {
			name := fmt.Sprintf("call%02d/before", n)
			if after {
				name = fmt.Sprintf("call%02d/after", n)
			}
			t.Run(name, func(t *testing.T) {
				c := wire(t, fastRecovery)
				signup(t, c, "crashy")
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				crashCtx, crash := context.WithCancel(ctx)
				cr := &crasher{after: after, cancel: crash}
				o := fastRecovery
				o.APIOptions = append(o.APIOptions, cr.add)
				doomed, err := local.Wire(ctx, c.Org, o, testLog(t))
				if err != nil {
					t.Fatal(err)
				}
				// Armed only now: the crash is in the reconciler's work.
				cr.calls.Store(0)
				cr.at = n
				_, err = doomed.Reconciler.Drive(crashCtx, "crashy")
				if cr.calls.Load() >= n && err == nil {
					// The crash hit the last call after its effect: the
					// tenant may be done; the fresh run must agree.
					t.Logf("crash at the final call")
				}
				// A fresh reconciler, as after a restart, finishes the job.
				fresh, err := local.Wire(ctx, c.Org, fastRecovery, testLog(t))
				if err != nil {
					t.Fatal(err)
				}
				tn, err := fresh.Reconciler.Drive(ctx, "crashy")
				if err != nil {
					t.Fatalf("fresh reconciler: %v", err)
				}
				if tn.State != registry.StateActive {
					t.Fatalf("tenant ended %s (%s)", tn.State, tn.Reason)
				}
				checkFleet(t, c, []string{"crashy"})
			})
		}
	}
}

// TestTwoReconcilersAtOnce runs two reconcilers over the same tenants at
// the same time: no tenant gets two accounts and no update is lost.
func TestTwoReconcilersAtOnce(t *testing.T) {
	c := wire(t, fastRecovery)
	ids := []string{"duo-1", "duo-2", "duo-3", "duo-4", "duo-5", "duo-6"}
	signup(t, c, ids...)
	other, err := local.Wire(t.Context(), c.Org, fastRecovery, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveTogether(ctx, t, []*local.Control{c, other}, ids)
	checkFleet(t, c, ids)
	// No lost update: every version of every tenant has exactly one audit
	// event or none, and versions have no gaps in the events that exist.
	for _, id := range ids {
		events, err := c.Registry.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for _, e := range events {
			if seen[e.Seq] {
				t.Errorf("tenant %s: two audit events for version %d", id, e.Seq)
			}
			seen[e.Seq] = true
		}
	}
}

// TestClaimsOutlivedByQuotaWaits: two reconcilers, a quota of one creation
// at a time and claims that expire long before a tenant's turn comes. A
// reconciler must renew its claim after waiting, so a takeover never makes
// a second account.
func TestClaimsOutlivedByQuotaWaits(t *testing.T) {
	o := local.ControlOptions{ClaimTTL: 200 * time.Millisecond, Quotas: vendingQuota(1)}
	c := wire(t, o)
	// Each reconciler has its own quota of one; the proxy refuses nothing,
	// so a stale claim would turn into a second CreateAccount.
	emu.Proxy.Configure(emulator.Faults{CreateAccountDelay: 400 * time.Millisecond})
	defer emu.Proxy.Configure(emulator.Faults{})
	ids := []string{"q-1", "q-2", "q-3", "q-4"}
	signup(t, c, ids...)
	other, err := local.Wire(t.Context(), c.Org, o, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveTogether(ctx, t, []*local.Control{c, other}, ids)
	emu.Proxy.Configure(emulator.Faults{})
	checkFleet(t, c, ids)
}

func vendingQuota(n int) vending.Quotas {
	return vending.Quotas{MaxCreateInProgress: n, CreateRate: 1000, CreateBurst: n}
}

// driveTogether drives every tenant from every control plane at once.
func driveTogether(ctx context.Context, t *testing.T, controls []*local.Control, ids []string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, rc := range controls {
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := rc.Reconciler.Drive(ctx, id); err != nil {
					t.Errorf("drive %s: %v", id, err)
				}
			}()
		}
	}
	wg.Wait()
}
