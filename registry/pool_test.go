package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// poolAccount walks a pool-kind record to PREPARING with an account and
// hands it to the pool.
func (f *fixture) poolAccount(t *testing.T, id, account string) *PoolAccount {
	t.Helper()
	ctx := context.Background()
	tn, err := f.store.CreateWith(ctx, Spec{ID: id, Name: "pool", Email: "pool@example.com", Tier: TierStandard, Region: "us-east-1", Kind: KindPool}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = f.store.Transition(ctx, tn, StateCreatingAccount, Change{}); err != nil {
		t.Fatal(err)
	}
	if tn, err = f.store.Transition(ctx, tn, StatePreparing, Change{Mutate: func(n *Tenant) { n.AccountID = account }}); err != nil {
		t.Fatal(err)
	}
	a, closed, err := f.store.AddPoolAccount(ctx, tn, "test")
	if err != nil {
		t.Fatal(err)
	}
	if closed.State != StateClosed || a.State != PoolAvailable {
		t.Fatalf("handover left the record %s and the account %s", closed.State, a.State)
	}
	return a
}

func (f *fixture) waitingPreview(t *testing.T, id string) *Tenant {
	t.Helper()
	tn, err := f.store.CreateWith(context.Background(), Spec{ID: id, Name: id, Email: "ci@example.com", Tier: TierStandard, Region: "us-east-1", Kind: KindPreview}, "test",
		func(n *Tenant) { n.Attributes = map[string]string{"repo": "acme/web"} })
	if err != nil {
		t.Fatal(err)
	}
	if tn.Attributes["repo"] != "acme/web" {
		t.Fatalf("CreateWith lost the attributes: %+v", tn.Attributes)
	}
	return tn
}

// TestLeaseIsExclusive: eight previews race for one account; exactly one
// wins, the others get ErrConflict, and the registry agrees on the holder.
func TestLeaseIsExclusive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.poolAccount(t, "pool-one", "111111111111")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 8 {
		tn := f.waitingPreview(t, fmt.Sprintf("pr%d-web-abc123", i))
		wg.Go(func() {
			_, got, err := f.store.LeaseAccount(ctx, a, tn, Lease{Repo: "acme/web", PR: i, ExpiresAt: time.Now().Add(time.Hour)}, "test")
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, got.ID)
				mu.Unlock()
			case !errors.Is(err, ErrConflict):
				t.Errorf("lease for %s: %v, want ErrConflict", tn.ID, err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d leases of one account: %v", len(winners), winners)
	}
	stored, err := f.store.GetPoolAccount(ctx, a.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := f.store.Get(ctx, winners[0])
	if err != nil {
		t.Fatal(err)
	}
	if stored.State != PoolLeased || stored.Lease.Tenant != winners[0] || holder.AccountID != a.AccountID || holder.State != StateCreatingAccount {
		t.Errorf("account %+v, holder %s in %s with %s", stored, holder.ID, holder.State, holder.AccountID)
	}
	if leased, err := f.store.ListPool(ctx, PoolLeased); err != nil || len(leased) != 1 {
		t.Errorf("ListPool(leased) = %d, %v", len(leased), err)
	}

	// Giving it back: the preview closes, the account resets, and the
	// preview can be reopened for its PR.
	holder, err = f.store.Transition(ctx, holder, StateDecommissioning, Change{Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	back, closed, err := f.store.ReturnLease(ctx, holder, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.State != PoolResetting || closed.State != StateClosed || closed.AccountID != "" || closed.Attributes[AttrLastAccount] != a.AccountID {
		t.Errorf("after return: account %s, preview %s holding %q (last %q)", back.State, closed.State, closed.AccountID, closed.Attributes[AttrLastAccount])
	}
	if _, err := f.store.MovePoolAccount(ctx, back, PoolLeased, nil); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("resetting → leased: %v, want ErrInvalidTransition", err)
	}
	reopened, err := f.store.ReopenPreview(ctx, closed, Change{Actor: "test"})
	if err != nil || reopened.State != StateRequested || reopened.ClosedAt != nil {
		t.Errorf("reopen: %+v %v", reopened, err)
	}
	customer, _, err := f.store.Create(ctx, Spec{ID: "acme", Name: "Acme", Email: "ops@acme.example", Tier: TierBasic, Region: "us-east-1"}, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.ReopenPreview(ctx, customer, Change{}); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("reopening a customer tenant: %v, want ErrInvalidTransition", err)
	}
}
