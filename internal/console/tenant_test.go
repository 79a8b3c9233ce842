package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"

	"github.com/silo-saas/silo/registry"
)

func TestTenantPage(t *testing.T) {
	now := time.Now().UTC()
	ts := fleetTenants(10, now)
	evil := ts[1]
	evil.Name = `<script>alert(1)</script>`
	evil.Endpoint = `javascript:alert(1)`
	evil.Reason = `<img src=x onerror=alert(2)>`
	good := ts[4] // ACTIVE, up
	good.Endpoint = "https://t-00004.apps.example.com/"
	good.TargetVersion = "1.0.9"
	f := newFixture(t, ts, nil)
	ctx := t.Context()
	// 30 hours of roll-ups with a bad hour, and a gap.
	var rollups []registry.Rollup
	for h := range 30 {
		if h == 10 {
			continue
		}
		r := registry.Rollup{TenantID: good.ID, Hour: now.Truncate(time.Hour).Add(-time.Duration(h) * time.Hour), Checks: 60, P50MS: 40, P95MS: int64(80 + h), MaxMS: 300}
		if h == 3 {
			r.Failures, r.P95MS = 30, 2500
		}
		rollups = append(rollups, r)
	}
	if err := f.store.PutRollups(ctx, rollups); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Transition(ctx, mustGet(t, f.store, good.ID), registry.StateUpdating, registry.Change{Actor: "operator:olga", Reason: "release 1.0.9"}); err != nil {
		t.Fatal(err)
	}

	body := f.mustGet(t, "/tenants/"+good.ID)
	for _, want := range []string{
		"<svg", "<title id=\"chart-title\">Health per hour", "class=\"p95\"", "30 of 60 checks up (50.0%)", "no checks",
		`href="https://t-00004.apps.example.com/"`, "Tenant 00004", "ops00004@example.com", good.AccountID, "us-east-1",
		"standard", "1.0.9", "(update pending)", "operator:olga", "release 1.0.9", "ACTIVE → UPDATING",
		`id="ou">—<`, "cost unavailable",
		// 29 hours of 60 checks, one hour with 30 failures.
		fmt.Sprintf(`id="uptime-24h">%.2f%%<`, float64(23*60+30)/float64(24*60)*100),
		fmt.Sprintf(`id="uptime-30d">%.2f%%<`, float64(29*60-30)/float64(29*60)*100),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("detail page lacks %q", want)
		}
	}

	// Tenant-supplied text is text, never markup or a link.
	body = f.mustGet(t, "/tenants/"+evil.ID)
	for _, bad := range []string{"<script>alert(1)</script>", "<img src=x", `href="javascript:`} {
		if strings.Contains(body, bad) {
			t.Errorf("detail page contains %q", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(body, "No health checks recorded") || strings.Contains(body, "<svg") {
		t.Errorf("escaped name or empty chart state missing")
	}
	for _, p := range []string{"/tenants?q=script", "/"} {
		if b := f.mustGet(t, p); strings.Contains(b, "<script>alert(1)</script>") {
			t.Errorf("%s contains the raw script", p)
		}
	}
}

func mustGet(t *testing.T, s *registry.Store, id string) *registry.Tenant {
	t.Helper()
	tn, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestCostsAndOU goes the real way: Cost Explorer's GetCostAndUsage and
// Organizations' ListParents/DescribeOrganizationalUnit against the emulator.
func TestCostsAndOU(t *testing.T) {
	now := time.Now().UTC()
	ctx := t.Context()
	var acctA, acctB string
	ts := fleetTenants(10, now)
	a, b := ts[1], ts[2] // ACTIVE
	f := newFixture(t, nil, func(f *fixture, d *Deps, o *Options) {
		cfg, err := f.org.Config(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		org := organizations.NewFromConfig(cfg)
		if acctA, err = f.org.NewAccount(ctx, "tenant-a"); err != nil {
			t.Fatal(err)
		}
		if acctB, err = f.org.NewAccount(ctx, "tenant-b"); err != nil {
			t.Fatal(err)
		}
		if _, err := org.MoveAccount(ctx, &organizations.MoveAccountInput{AccountId: aws.String(acctA),
			SourceParentId: aws.String(f.org.RootID), DestinationParentId: aws.String(f.org.OUs["Tenants/Production"])}); err != nil {
			t.Fatal(err)
		}
		a.AccountID, b.AccountID = acctA, acctB
		if err := f.store.ImportTenants(ctx, ts); err != nil {
			t.Fatal(err)
		}
		if err := f.org.SetCosts(ctx, map[string]float64{acctA: 12.34, acctB: 1000.5, f.org.ManagementAccountID: 99}); err != nil {
			t.Fatal(err)
		}
		d.Costs = NewCostExplorer(cfg, time.Hour)
		d.OUs = NewOULookup(org)
	})

	body := f.mustGet(t, "/")
	if !strings.Contains(body, `id="fleet-cost">$1,012.84<`) {
		t.Errorf("fleet cost total missing (the management account's 99 is not a tenant's):\n%s", body)
	}
	body = f.mustGet(t, "/tenants/"+a.ID)
	for _, want := range []string{`id="cost">$12.34 `, `id="ou">Tenants/Production<`} {
		if !strings.Contains(body, want) {
			t.Errorf("tenant A lacks %q", want)
		}
	}
	body = f.mustGet(t, "/tenants/"+b.ID)
	for _, want := range []string{`id="cost">$1,000.50 `, `id="ou">(root)<`} {
		if !strings.Contains(body, want) {
			t.Errorf("tenant B lacks %q", want)
		}
	}
	// A tenant whose account has no cost line this month costs nothing.
	if body := f.mustGet(t, "/tenants/"+ts[4].ID); !strings.Contains(body, `id="cost">$0.00 `) {
		t.Errorf("tenant without costs: %s", body)
	}
	// The report is cached: the fleet total and three tenant pages asked
	// Cost Explorer once.
	if n := f.emuCalls("GetCostAndUsage"); n != 1 {
		t.Errorf("GetCostAndUsage called %d times, want 1", n)
	}
}

func (f *fixture) emuCalls(op string) int {
	n := 0
	for k, v := range emu.Proxy.Stats().Calls {
		if strings.HasSuffix(k, op) {
			n += int(v)
		}
	}
	return n
}

// failingCosts is a cost source that always fails.
type failingCosts struct{}

func (failingCosts) MonthToDate(context.Context) (*CostReport, error) {
	return nil, errors.New("AccessDeniedException: not allowed")
}

func TestCostErrorIsNotAPageError(t *testing.T) {
	f := newFixture(t, fleetTenants(10, time.Now()), func(_ *fixture, d *Deps, _ *Options) { d.Costs = failingCosts{} })
	for _, p := range []string{"/", "/tenants/t-00004"} {
		r := f.get(t, p)
		if r.status != http.StatusOK || !strings.Contains(r.body, "cost unavailable") || strings.Contains(r.body, "AccessDenied") {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	if !strings.Contains(f.logs.String(), "cost unavailable") {
		t.Errorf("cost error not logged")
	}
}
