package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// wire resets the emulator and wires a control plane onto it.
func wire(t *testing.T, o local.ControlOptions) *local.Control {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	c, err := local.Wire(ctx, org, o, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func signup(t *testing.T, c *local.Control, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, _, err := c.Registry.Create(t.Context(), registry.Spec{
			ID: id, Name: "Tenant " + id, Email: "owner@" + id + ".example", Tier: registry.TierStandard, Region: "us-east-1",
		}, "signup-"+id, "test")
		if err != nil {
			t.Fatal(err)
		}
	}
}

// driveAll drives every tenant concurrently with one reconciler.
func driveAll(ctx context.Context, t *testing.T, c *local.Control, ids []string) map[string]*registry.Tenant {
	t.Helper()
	var mu sync.Mutex
	out := map[string]*registry.Tenant{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn, err := c.Reconciler.Drive(ctx, id)
			if err != nil {
				t.Errorf("drive %s: %v", id, err)
				return
			}
			mu.Lock()
			out[id] = tn
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// checkFleet verifies the invariants every vending test ends with: each
// ACTIVE tenant has exactly one account, in Tenants/Production, tagged for
// it, with its stack's table in that account only; and no account of the
// organization is unknown to the registry (no orphans).
func checkFleet(t *testing.T, c *local.Control, ids []string) {
	t.Helper()
	ctx := t.Context()
	orgc := organizations.NewFromConfig(c.Config)
	byName := map[string][]string{}
	var accounts []string
	p := organizations.NewListAccountsPaginator(orgc, &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Accounts {
			if aws.ToString(a.Id) == c.Org.ManagementAccountID {
				continue
			}
			byName[aws.ToString(a.Name)] = append(byName[aws.ToString(a.Name)], aws.ToString(a.Id))
			accounts = append(accounts, aws.ToString(a.Id))
		}
	}
	owned := map[string]string{}
	for _, id := range ids {
		tn, err := c.Registry.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tn.State != registry.StateActive {
			t.Errorf("tenant %s is %s (%s), want ACTIVE", id, tn.State, tn.Reason)
			continue
		}
		if got := byName[c.Vending.AccountName(id)]; len(got) != 1 || got[0] != tn.AccountID {
			t.Errorf("tenant %s: accounts named for it %v, registry says %s (all: %v)", id, got, tn.AccountID, byName)
		}
		owned[tn.AccountID] = id
		parents, err := orgc.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(tn.AccountID)})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(parents.Parents[0].Id); got != c.Org.OUs[emulator.OUProduction] {
			t.Errorf("tenant %s: account in %s, want Tenants/Production", id, got)
		}
		tables, err := dynamodb.NewFromConfig(c.Accounts.Config(tn.AccountID)).ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"silo-" + id + "-data"}; !slices.Equal(tables.TableNames, want) {
			t.Errorf("tenant %s: tables in its account %v, want %v", id, tables.TableNames, want)
		}
		if tn.Endpoint == "" || tn.AppVersion != c.Release.ID {
			t.Errorf("tenant %s: endpoint %q version %q", id, tn.Endpoint, tn.AppVersion)
		}
	}
	for _, a := range accounts {
		if _, ok := owned[a]; !ok {
			t.Errorf("orphan account %s: in the organization, owned by no tenant", a)
		}
	}
}

func TestVendHappyPath(t *testing.T) {
	c := wire(t, local.ControlOptions{})
	ids := []string{"alpha", "bravo", "charlie"}
	signup(t, c, ids...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveAll(ctx, t, c, ids)
	checkFleet(t, c, ids)

	events, err := c.Registry.Events(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, e := range events {
		if e.To != "" {
			path = append(path, string(e.To))
		}
	}
	want := []string{"REQUESTED", "CREATING_ACCOUNT", "PREPARING", "DEPLOYING", "ACTIVE"}
	if !slices.Equal(path, want) {
		t.Errorf("alpha's path %v, want %v", path, want)
	}
}

var _ = fmt.Sprint
var _ = awsx.IsNotFound
