package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/registry"
)

const evilRepo = `<script>alert(1)</script>/x`

// addPoolAccounts makes n pool accounts the way the platform does: a
// pool-kind vending record walked to PREPARING with its account, then
// handed to the pool.
func addPoolAccounts(t testing.TB, s *registry.Store, first, n int) []*registry.PoolAccount {
	t.Helper()
	var out []*registry.PoolAccount
	for i := first; i < first+n; i++ {
		tn := poolTenant(t, s, i, registry.StatePreparing)
		a, _, err := s.AddPoolAccount(t.Context(), tn, "test")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// poolTenant creates pool-kind tenant i and walks it to state to (at most
// PREPARING), with its account from CREATING_ACCOUNT on.
func poolTenant(t testing.TB, s *registry.Store, i int, to registry.State) *registry.Tenant {
	t.Helper()
	ctx := t.Context()
	tn, _, err := s.Create(ctx, registry.Spec{ID: fmt.Sprintf("pool-%03d", i), Name: fmt.Sprintf("Pool %d", i), Email: "pool@example.com",
		Tier: registry.TierBasic, Region: "us-east-1", Kind: registry.KindPool}, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []registry.State{registry.StateCreatingAccount, registry.StatePreparing} {
		if tn.State == to {
			break
		}
		tn, err = s.Transition(ctx, tn, st, registry.Change{Actor: "test", Mutate: func(n *registry.Tenant) {
			n.AccountID = fmt.Sprintf("%012d", 300000000000+i)
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return tn
}

// requestPreview creates a preview tenant waiting in REQUESTED for repo#pr.
func requestPreview(t testing.TB, s *registry.Store, id, repo string, pr int) *registry.Tenant {
	t.Helper()
	ctx := t.Context()
	tn, _, err := s.Create(ctx, registry.Spec{ID: id, Name: "Preview " + id, Email: "ci@example.com",
		Tier: registry.TierBasic, Region: "us-east-1", Kind: registry.KindPreview}, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	tn, err = s.Update(ctx, tn, registry.Change{Actor: "test", Mutate: func(n *registry.Tenant) {
		n.Attributes = map[string]string{attrRepo: repo, attrPR: strconv.Itoa(pr)}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// leasePreview requests a preview, leases it a, and records what the
// reconciler would: endpoint, build and health.
func leasePreview(t testing.TB, s *registry.Store, a *registry.PoolAccount, id, repo string, pr int, expires time.Time, mutate func(*registry.Tenant)) *registry.PoolAccount {
	t.Helper()
	tn := requestPreview(t, s, id, repo, pr)
	a, tn, err := s.LeaseAccount(t.Context(), a, tn, registry.Lease{Repo: repo, PR: pr, By: "operator:ci", ExpiresAt: expires}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(t.Context(), tn, registry.Change{Actor: "test", Mutate: mutate}); err != nil {
		t.Fatal(err)
	}
	return a
}

func quarantine(t testing.TB, s *registry.Store, a *registry.PoolAccount, reason string, attempts int, leftovers ...string) *registry.PoolAccount {
	t.Helper()
	a, err := s.MovePoolAccount(t.Context(), a, registry.PoolQuarantined, func(n *registry.PoolAccount) {
		n.Reason, n.ResetAttempts, n.Leftovers = reason, attempts, leftovers
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPreviewsPage(t *testing.T) {
	f := newFixture(t, fleetTenants(20, time.Now()), func(f *fixture, d *Deps, o *Options) {
		d.Pool = f.store
		o.PoolTarget = 8
	})
	s := f.store
	ctx := t.Context()
	now := time.Now().UTC()

	accts := addPoolAccounts(t, s, 1, 5)
	poolTenant(t, s, 6, registry.StateRequested)
	poolTenant(t, s, 7, registry.StateCreatingAccount)
	up := 0.99
	leasePreview(t, s, accts[0], "pr-web-42", "acme/web", 42, now.Add(2*time.Hour), func(n *registry.Tenant) {
		n.Endpoint = "https://pr-web-42.preview.example.com/"
		n.AppVersion, n.TargetVersion = "build-0123456789abcdef", "build-0123456789abcdef"
		n.Health = &registry.Health{Status: registry.HealthUp, Since: now, CheckedAt: now, Uptime24h: &up}
	})
	leasePreview(t, s, accts[1], "pr-evil-1", evilRepo, 1, now.Add(-time.Minute), func(n *registry.Tenant) {
		n.Endpoint = "javascript:alert(1)"
	})
	requestPreview(t, s, "pr-web-43", "acme/web", 43)
	requestPreview(t, s, "pr-web-44", "acme/web", 44)
	quarantine(t, s, accts[2], "reset failed 3 times: <b>stuck</b>", 3, "table orders-x", "bucket <img src=x onerror=alert(2)>")
	r := quarantine(t, s, accts[3], "to be reset", 0)
	if _, err := s.MovePoolAccount(ctx, r, registry.PoolResetting, func(n *registry.PoolAccount) { n.ResetAttempts = 1 }); err != nil {
		t.Fatal(err)
	}

	body := f.mustGet(t, "/previews")
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`data-pool="([a-z]+)">([0-9,]+)<`).FindAllStringSubmatch(body, -1) {
		got[m[1]] = atoi(t, m[2])
	}
	want := map[string]int{"available": 1, "leased": 2, "resetting": 1, "quarantined": 1, "creating": 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pool counts (-want +got):\n%s", diff)
	}
	for _, w := range []string{`id="pool-size">5<`, `id="pool-target">target 8<`, `id="waiting-count">2<`} {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %s", w)
		}
	}

	leases := regexp.MustCompile(`(?s)<table class="list" id="leases">.*?</table>`).FindString(body)
	rows := regexp.MustCompile(`(?s)<tr>.*?</tr>`).FindAllString(leases, -1)
	if len(rows) != 3 { // the header and two leases
		t.Fatalf("leases table has %d rows, want a header and 2:\n%s", len(rows), leases)
	}
	// The expired lease ends first, so it comes first.
	evil, web := rows[1], rows[2]
	for _, w := range []string{
		"<td>acme/web</td>", `href="https://github.com/acme/web/pull/42"`, `href="/tenants/pr-web-42">pr-web-42<`,
		"<code>300000000001</code>", `href="https://pr-web-42.preview.example.com/"`,
		`title="build-0123456789abcdef">build-012345…<`, `badge h-up`,
	} {
		if !strings.Contains(web, w) {
			t.Errorf("lease row lacks %s:\n%s", w, web)
		}
	}
	if !regexp.MustCompile(`>(1h 59m|2h 0m)</time>`).MatchString(web) || strings.Contains(web, "expired") {
		t.Errorf("lease row's TTL is not about 2h:\n%s", web)
	}
	if !strings.Contains(evil, `class="expired"`) || !strings.Contains(evil, ">expired<") {
		t.Errorf("the past lease is not shown expired:\n%s", evil)
	}
	// User-provided text is escaped and never becomes a link.
	if !strings.Contains(evil, "&lt;script&gt;alert(1)&lt;/script&gt;/x") || strings.Contains(evil, "github.com") || strings.Contains(evil, `href="javascript:`) {
		t.Errorf("evil lease row:\n%s", evil)
	}
	for _, bad := range []string{"<script>alert(1)", "<img src=x", "<b>stuck", `href="javascript:`} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains raw %q", bad)
		}
	}

	waiting := regexp.MustCompile(`(?s)<table class="list" id="waiting">.*?</table>`).FindString(body)
	ids := regexp.MustCompile(`href="/tenants/([a-z0-9-]+)"`).FindAllStringSubmatch(waiting, -1)
	if len(ids) != 2 || ids[0][1] != "pr-web-43" || ids[1][1] != "pr-web-44" || !strings.Contains(waiting, `href="https://github.com/acme/web/pull/43"`) {
		t.Errorf("waiting requests, oldest first, want pr-web-43 and pr-web-44:\n%s", waiting)
	}

	quar := regexp.MustCompile(`(?s)<table class="list" id="quarantined">.*?</table>`).FindString(body)
	for _, w := range []string{"<code>300000000003</code>", "reset failed 3 times: &lt;b&gt;stuck&lt;/b&gt;", `<td class="num">3</td>`,
		"<li><code>table orders-x</code></li>", "<li><code>bucket &lt;img src=x onerror=alert(2)&gt;</code></li>"} {
		if !strings.Contains(quar, w) {
			t.Errorf("quarantined table lacks %s:\n%s", w, quar)
		}
	}
	resetting := regexp.MustCompile(`(?s)<table class="list" id="resetting">.*?</table>`).FindString(body)
	if !strings.Contains(resetting, "<code>300000000004</code>") || !strings.Contains(resetting, `<td class="num">1</td>`) {
		t.Errorf("resetting table:\n%s", resetting)
	}

	p := do(t, f.c, "GET", "/previews", f.viewer, nil, map[string]string{partialHeader: "1"})
	if p.status != 200 || strings.Contains(p.body, "<html") || !strings.Contains(p.body, `id="pool-counts"`) {
		t.Errorf("partial: %d\n%.300s", p.status, p.body)
	}
}

// failingPool is a pool that cannot be read.
type failingPool struct{}

func (failingPool) ListPoolAll(context.Context) ([]*registry.PoolAccount, error) {
	return nil, errors.New("AccessDeniedException: not allowed")
}

// TestPreviewsWithoutPool renders from a fixed fleet: with no pool the page
// says so; with a pool that fails it still shows what the fleet knows.
func TestPreviewsWithoutPool(t *testing.T) {
	now := time.Now().UTC()
	mk := func(id string, kind registry.Kind, st registry.State, created time.Time, attrs map[string]string) *registry.Tenant {
		return &registry.Tenant{Spec: registry.Spec{ID: id, Name: id, Email: "ci@example.com", Tier: registry.TierBasic, Region: "us-east-1", Kind: kind},
			State: st, Attributes: attrs, CreatedAt: created, UpdatedAt: now}
	}
	fleet := []*registry.Tenant{
		mk("pr-b-2", registry.KindPreview, registry.StateRequested, now.Add(-time.Minute), map[string]string{attrRepo: "acme/b", attrPR: "2"}),
		mk("pr-a-1", registry.KindPreview, registry.StateRequested, now.Add(-5*time.Minute), map[string]string{attrRepo: "acme/a", attrPR: "1"}),
		// Reopened: waiting since its request, not its creation.
		mk("pr-c-3", registry.KindPreview, registry.StateRequested, now.Add(-72*time.Hour),
			map[string]string{attrRepo: "acme/c", attrPR: "3", registry.AttrLastAccount: "300000000001", "requested_at": now.Format(time.RFC3339Nano)}),
		mk("pool-001", registry.KindPool, registry.StatePreparing, now, nil),
		mk("pool-002", registry.KindPool, registry.StateClosed, now, nil),
	}
	for _, tc := range []struct {
		name string
		pool poolSource
		says string
	}{
		{"not configured", nil, `id="pool-unconfigured"`},
		{"unreadable", failingPool{}, `id="pool-error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			c, err := NewFromTenants(slices.Clone(fleet), Deps{Verifier: fakeVerifier{}, Pool: tc.pool,
				Log: slog.New(slog.NewTextHandler(logs, nil))}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := do(t, c, "GET", "/previews", "ok", nil, nil)
			if r.status != http.StatusOK || !strings.Contains(r.body, tc.says) || strings.Contains(r.body, "AccessDenied") {
				t.Fatalf("%d, want 200 saying %s:\n%s", r.status, tc.says, r.body)
			}
			waiting := regexp.MustCompile(`(?s)<table class="list" id="waiting">.*?</table>`).FindString(r.body)
			var ids []string
			for _, m := range regexp.MustCompile(`href="/tenants/([a-z0-9-]+)"`).FindAllStringSubmatch(waiting, -1) {
				ids = append(ids, m[1])
			}
			if diff := cmp.Diff([]string{"pr-a-1", "pr-b-2", "pr-c-3"}, ids); diff != "" {
				t.Errorf("waiting (-want +got):\n%s", diff)
			}
			if !strings.Contains(r.body, `data-pool="creating">1<`) {
				t.Errorf("creating count missing")
			}
			if tc.pool != nil && !strings.Contains(logs.String(), "list pool accounts") {
				t.Errorf("pool error not logged: %s", logs.String())
			}
		})
	}
}
