package console

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/silo-saas/silo/internal/browser"
	"github.com/silo-saas/silo/registry"
)

// TestConsoleInBrowser drives the console in a real chromium over a seeded
// fleet of 6,000 tenants: log in, read the overview's counts, search for a
// tenant, open its page and its health chart, show that a tenant named
// <script>alert(1)</script> is text, never code, read the previews
// page's pool counts, read a rollout's waves, gates and log, and read the
// isolation page: a failing report first, its evidence (markup from the
// audited account) shown as text, and a passing one.
func TestConsoleInBrowser(t *testing.T) {
	now := time.Now().UTC()
	tenants := fleetTenants(6000, now)
	evil := tenants[4]
	evil.Name = `<script>alert(1)</script>`
	target := tenants[4321]
	began := time.Now()
	f := newFixture(t, tenants, func(f *fixture, d *Deps, o *Options) {
		d.Pool, d.Rollouts = f.store, f.store
		d.Isolation = &fakeIsolation{reports: isolationReports(now)}
		o.PoolTarget = 4
	})
	// A small pool, before the console first reads the fleet: one lease
	// (to a repository named like markup), one quarantined, one free.
	accts := addPoolAccounts(t, f.store, 1, 3)
	leasePreview(t, f.store, accts[0], "pr-evil-1", evilRepo, 1, now.Add(time.Hour), func(n *registry.Tenant) {
		n.Endpoint = "https://pr-evil-1.preview.example.com/"
	})
	quarantine(t, f.store, accts[1], "reset failed", 3, "table orders-x")
	seedRollouts(t, f.store)
	t.Logf("seeded %d tenants and a pool in %v", len(tenants), time.Since(began))
	var rollups []registry.Rollup
	for h := range 36 {
		r := registry.Rollup{TenantID: target.ID, Hour: now.Truncate(time.Hour).Add(-time.Duration(h) * time.Hour), Checks: 60, P50MS: 40, P95MS: 90, MaxMS: 200}
		if h == 5 {
			r.Failures = 12
		}
		rollups = append(rollups, r)
	}
	if err := f.store.PutRollups(t.Context(), rollups); err != nil {
		t.Fatal(err)
	}
	// What the overview must say, counted from the seed and the pool's
	// vending records and preview.
	states := map[registry.State]int{}
	health := map[string]int{}
	for _, id := range []string{"pool-001", "pool-002", "pool-003", "pr-evil-1"} {
		states[mustGet(t, f.store, id).State]++
	}
	for _, tn := range tenants {
		states[tn.State]++
		if serving(tn.State) {
			h := "unknown"
			if tn.Health != nil && tn.Health.Status != registry.HealthUnknown {
				h = string(tn.Health.Status)
			}
			health[h]++
		}
	}

	srv := httptest.NewServer(f.c)
	defer srv.Close()
	ctx := browser.New(t)
	dialogs := browser.RecordDialogs(t, ctx)

	// Log in: the console sends a stranger to its login page first.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SetValue(chromedp.ID("token"), f.viewer),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("state-counts")),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	cell := func(sel string) int {
		t.Helper()
		s := text(chromedp.CSS(sel))
		var n int
		if _, err := fmt.Sscan(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), &n); err != nil {
			t.Fatalf("%s shows %q, not a count", sel, s)
		}
		return n
	}
	for _, st := range registry.States() {
		if got := cell(fmt.Sprintf(`td[data-state=%q]`, st)); got != states[st] {
			t.Errorf("overview: %s shows %d, want %d", st, got, states[st])
		}
	}
	for _, h := range []string{"up", "degraded", "down", "unknown"} {
		if got := cell(fmt.Sprintf(`td[data-health=%q]`, h)); got != health[h] {
			t.Errorf("overview: health %s shows %d, want %d", h, got, health[h])
		}
	}
	t.Logf("logged in and read the overview at %v", time.Since(began))
	browser.Screenshot(t, ctx, "overview")

	// Search finds one tenant by name; its page shows its chart.
	link := chromedp.CSS(fmt.Sprintf(`#tenants a[href="/tenants/%s"]`, target.ID))
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/tenants"),
		chromedp.WaitVisible(chromedp.ID("q")),
		chromedp.SendKeys(chromedp.ID("q"), target.Name+"\r"),
		chromedp.WaitVisible(link),
	); err != nil {
		t.Fatalf("search for %s: %v", target.Name, err)
	}
	if total := text(`#total`); !strings.Contains(total, "of 1 matching") {
		t.Errorf("search for %q: %q, want exactly one match", target.Name, total)
	}
	if err := chromedp.Do(ctx, chromedp.Click(link), chromedp.WaitVisible(chromedp.CSS(`figure.chart svg`))); err != nil {
		t.Fatalf("open %s's page: %v", target.ID, err)
	}
	if title, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("chart-title"))); err != nil || !strings.Contains(title, "Health") {
		t.Errorf("the chart's title is %q (%v)", title, err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart svg rect.up").length`))
	if err != nil {
		t.Fatal(err)
	}
	if bars < 36 {
		t.Errorf("chart has %d hourly bars with checks, want at least 36", bars)
	}
	t.Logf("searched and opened the tenant at %v", time.Since(began))
	browser.Screenshot(t, ctx, "tenant")

	// The <script> tenant: shown as text on its page and in a search, never run.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/tenants/"+evil.ID), chromedp.WaitVisible(chromedp.CSS(`h1`))); err != nil {
		t.Fatalf("open the <script> tenant: %v", err)
	}
	heading := text(`h1`)
	browser.Screenshot(t, ctx, "script-tenant")
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/tenants?q=script"), chromedp.WaitVisible(chromedp.ID("tenants"))); err != nil {
		t.Fatalf("search for the <script> tenant: %v", err)
	}
	listed := text(`#tenants`)
	if !strings.Contains(heading, evil.Name) || !strings.Contains(listed, evil.Name) {
		t.Errorf("the <script> name is not shown as text: heading %q, list %q", heading, listed)
	}

	// The previews page: the pool's counts, and the lease of the repository
	// named like markup shown as text.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/previews"), chromedp.WaitVisible(chromedp.ID("pool-counts"))); err != nil {
		t.Fatalf("open the previews page: %v", err)
	}
	for st, want := range map[string]int{"available": 1, "leased": 1, "resetting": 0, "quarantined": 1, "creating": 0} {
		if got := cell(fmt.Sprintf(`td[data-pool=%q]`, st)); got != want {
			t.Errorf("previews: %s shows %d, want %d", st, got, want)
		}
	}
	if leases := text(`#leases`); !strings.Contains(leases, evilRepo) || !strings.Contains(leases, "pr-evil-1.preview.example.com") {
		t.Errorf("the lease row shows %q", leases)
	}
	t.Logf("read the previews page at %v", time.Since(began))
	browser.Screenshot(t, ctx, "previews")

	// The rollouts page: the live rollout's waves and gates, its log, and
	// its markup-laden texts as text; then an older one from the list.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/rollouts"]`)), chromedp.WaitVisible(chromedp.ID("waves"))); err != nil {
		t.Fatalf("open the rollouts page: %v", err)
	}
	if got := text(`#rollout-release`); got != "rel-<b>new</b>" {
		t.Errorf("the release shows %q", got)
	}
	if waves := text(`#waves`); !strings.Contains(waves, "pass") || !strings.Contains(waves, "halt") || !strings.Contains(waves, "<em>w2</em>") {
		t.Errorf("the waves show %q", waves)
	}
	if notes := text(`#notes`); !strings.Contains(notes, "halt and roll back") {
		t.Errorf("the log shows %q", notes)
	}
	browser.Screenshot(t, ctx, "rollouts")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#rollouts a[href="/rollouts?id=ro-old"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#rollout[data-rollout="ro-old"]`)),
	); err != nil {
		t.Fatalf("open ro-old from the list: %v", err)
	}
	if got := text(`#rollout-state`); got != "completed" {
		t.Errorf("ro-old is %q", got)
	}
	t.Logf("read the rollouts page at %v", time.Since(began))

	// The isolation page: failing first, the failing evidence as text (no
	// element made of it), the passing tenant listed too.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/isolation"]`)), chromedp.WaitVisible(chromedp.ID("isolation-failures"))); err != nil {
		t.Fatalf("open the isolation page: %v", err)
	}
	order, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#isolation tbody tr")).map(r => r.dataset.tenant + " " + r.dataset.status)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"t-00002 fail", "t-00003 error", "t-00001 pass"}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("the isolation table's order is %q, want %q", order, want)
	}
	if got := text(`#isolation tr[data-tenant="t-00002"] td[data-check="resource-policies"]`); strings.TrimSpace(got) != "fail" {
		t.Errorf("t-00002's resource-policies cell shows %q", got)
	}
	if got := text(`#isolation tr[data-tenant="t-00001"] td[data-check="cross-tenant-probes"]`); strings.TrimSpace(got) != "pass" {
		t.Errorf("t-00001's cross-tenant-probes cell shows %q", got)
	}
	failures := text(`#iso-t-00002`)
	if !strings.Contains(failures, evilPrincipal) || !strings.Contains(failures, evilOutcome) || strings.Contains(failures, "PrincipalOrgID") {
		t.Errorf("t-00002's failures show %q", failures)
	}
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#isolation-failures script, #isolation-failures img").length`))
	if err != nil || injected != 0 {
		t.Errorf("the evidence made %d elements (%v)", injected, err)
	}
	browser.Screenshot(t, ctx, "isolation")
	t.Logf("read the isolation page at %v", time.Since(began))
	dialogs.AssertNone(t)
}
