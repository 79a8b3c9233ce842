package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/browser"
	"github.com/silo-saas/silo/registry"
)

// deadlineNow is the clock of the deadline tests.
var deadlineNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// deadlineFleet is a few tenants around their states' deadlines (the
// defaults: 30m for DEPLOYING and UPDATING, 1h for DECOMMISSIONING): three
// past them, by 1h, 20m and 5m, and others that are not (in time, waiting
// on a quota, resting, a parked preview).
func deadlineFleet() []*registry.Tenant {
	ago := func(d time.Duration) time.Time { return deadlineNow.Add(-d) }
	until := deadlineNow.Add(time.Hour)
	mk := func(id string, kind registry.Kind, st registry.State, since, progress time.Duration, mutate func(*registry.Tenant)) *registry.Tenant {
		t := &registry.Tenant{
			Spec:  registry.Spec{ID: id, Name: "Tenant " + id, Email: id + "@example.com", Tier: registry.TierStandard, Region: "us-east-1", Kind: kind},
			State: st, StateSince: ago(since), ProgressAt: ago(progress), CreatedAt: ago(5 * time.Hour), UpdatedAt: ago(time.Minute),
		}
		if mutate != nil {
			mutate(t)
		}
		return t
	}
	return []*registry.Tenant{
		mk("late-deploy", registry.KindTenant, registry.StateDeploying, 2*time.Hour, 50*time.Minute, func(t *registry.Tenant) {
			t.AccountID, t.LastError = "210000000001", "read stack outputs: the stack has no ApiUrl output"
			at := deadlineNow.Add(-45 * time.Minute)
			t.LastErrorAt = &at
		}),
		mk("late-decom", registry.KindTenant, registry.StateDecommissioning, 3*time.Hour, 2*time.Hour, func(t *registry.Tenant) { t.AccountID = "210000000002" }),
		// Written before StateSince existed: judged from its last update.
		mk("late-old", registry.KindTenant, registry.StateUpdating, 0, 0, func(t *registry.Tenant) {
			t.AccountID, t.StateSince, t.ProgressAt, t.UpdatedAt = "210000000003", time.Time{}, time.Time{}, ago(35*time.Minute)
		}),
		mk("on-time", registry.KindTenant, registry.StateDeploying, 40*time.Minute, 5*time.Minute, func(t *registry.Tenant) { t.AccountID = "210000000004" }),
		mk("queued", registry.KindTenant, registry.StateCreatingAccount, 2*time.Hour, 2*time.Hour, func(t *registry.Tenant) {
			t.Waiting, t.WaitingUntil = "create-account slot: 5 of 5 requests in progress", &until
		}),
		mk("done", registry.KindTenant, registry.StateActive, 3*time.Hour, 3*time.Hour, func(t *registry.Tenant) { t.AccountID = "210000000005" }),
		mk("broken", registry.KindTenant, registry.StateFailed, 4*time.Hour, 4*time.Hour, func(t *registry.Tenant) {
			t.AccountID, t.Reason, t.FailedFrom = "210000000006", "no progress in PREPARING for 31m (deadline 30m0s): …", registry.StatePreparing
		}),
		mk("pr1-web-abcdef", registry.KindPreview, registry.StateRequested, 2*time.Hour, 2*time.Hour, nil),
	}
}

var overdueOrder = []string{"late-decom", "late-deploy", "late-old"}

func deadlineFixture(t *testing.T) *fixture {
	return newFixture(t, deadlineFleet(), func(_ *fixture, _ *Deps, o *Options) {
		o.Now = func() time.Time { return deadlineNow }
	})
}

// TestDeadlinePages: the overview counts and lists the tenants past their
// state's deadline, longest past first; the tenant list shows each
// tenant's time in its state, marks those past their deadline (or waiting
// on a quota), filters them (deadline=past) and sorts by time in state;
// a tenant's page says where it stands against its deadline and its last
// error.
func TestDeadlinePages(t *testing.T) {
	f := deadlineFixture(t)
	linked := regexp.MustCompile(`href="/tenants/([a-z0-9-]+)"`)
	ids := func(html string) []string {
		var out []string
		for _, m := range linked.FindAllStringSubmatch(html, -1) {
			out = append(out, m[1])
		}
		return out
	}

	t.Run("overview", func(t *testing.T) {
		body := f.mustGet(t, "/")
		if !regexp.MustCompile(`id="overdue-count"><a href="/tenants\?deadline=past">3</a>`).MatchString(body) {
			t.Errorf("overview does not count 3 tenants past their deadline:\n%s", body)
		}
		table := regexp.MustCompile(`(?s)<table class="list" id="overdue">.*?</table>`).FindString(body)
		if diff := cmp.Diff(overdueOrder, ids(table)); diff != "" {
			t.Errorf("tenants past their deadline, longest past first (-want +got):\n%s", diff)
		}
		for _, want := range []string{"read stack outputs: the stack has no ApiUrl output", `<span class="badge overdue">2h 0m</span>`, "<td>1h 0m</td>"} {
			if !strings.Contains(table, want) {
				t.Errorf("overdue table lacks %q:\n%s", want, table)
			}
		}
	})

	t.Run("list marks and filters", func(t *testing.T) {
		body := f.mustGet(t, "/tenants?deadline=past")
		table := regexp.MustCompile(`(?s)<table class="list" id="tenants">.*?</table>`).FindString(body)
		want := slices.Sorted(slices.Values(overdueOrder))
		if diff := cmp.Diff(want, ids(table)); diff != "" {
			t.Errorf("deadline=past lists (-want +got):\n%s", diff)
		}
		if n := strings.Count(table, ">past deadline</span>"); n != 3 {
			t.Errorf("%d rows marked past deadline, want 3", n)
		}
		all := f.mustGet(t, "/tenants")
		if n := strings.Count(all, ">past deadline</span>"); n != 3 {
			t.Errorf("the whole list marks %d rows past deadline, want 3", n)
		}
		if n := strings.Count(all, ">quota wait</span>"); n != 1 {
			t.Errorf("the whole list marks %d rows waiting on a quota, want 1", n)
		}
		row := regexp.MustCompile(`(?s)<a href="/tenants/late-deploy">.*?</tr>`).FindString(all)
		if !strings.Contains(row, `<td class="in-state"><time datetime="2030-06-01T10:00:00Z" title="since 2030-06-01 10:00:00Z">2h 0m</time>`) {
			t.Errorf("late-deploy's row does not show 2h in its state:\n%s", row)
		}
	})

	t.Run("sort by time in state", func(t *testing.T) {
		fleet := deadlineFleet()
		slices.SortStableFunc(fleet, func(a, b *registry.Tenant) int {
			if c := a.Since().Compare(b.Since()); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		var want []string
		for _, tn := range fleet {
			want = append(want, tn.ID)
		}
		body := f.mustGet(t, "/tenants?sort=since")
		if diff := cmp.Diff(want, ids(regexp.MustCompile(`(?s)<table class="list" id="tenants">.*?</table>`).FindString(body))); diff != "" {
			t.Errorf("sort=since (-want +got):\n%s", diff)
		}
	})

	t.Run("bad filter", func(t *testing.T) {
		r := f.get(t, "/tenants?deadline=soon")
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "deadline &#34;soon&#34; is not past") {
			t.Errorf("deadline=soon: %d\n%s", r.status, r.body)
		}
	})

	t.Run("tenant pages", func(t *testing.T) {
		for id, wants := range map[string][]string{
			"late-deploy": {`<dd id="in-state">since 2030-06-01 10:00:00Z (2h 0m)</dd>`, `<span class="badge overdue">past deadline</span> no progress for 50m, deadline 30m`,
				`<dd id="last-error">read stack outputs: the stack has no ApiUrl output <span class="muted">(first seen 45m ago)</span>`},
			"on-time": {`30m without progress; last progress 5m ago, due 2030-06-01 12:25:00Z`},
			"queued":  {`<span class="badge waiting">quota wait</span> not counted while it waits: create-account slot: 5 of 5 requests in progress`},
			"done":    {`<dd id="in-state">since 2030-06-01 09:00:00Z (3h 0m)</dd>`},
		} {
			body := f.mustGet(t, "/tenants/"+id)
			for _, w := range wants {
				if !strings.Contains(body, w) {
					t.Errorf("%s's page lacks %q", id, w)
				}
			}
			if id == "done" && strings.Contains(body, `id="deadline"`) {
				t.Errorf("an ACTIVE tenant's page shows a deadline")
			}
		}
	})
}

// TestDeadlinesInBrowser: in a real browser, the overview's count of
// tenants past their deadline leads to the list of exactly those, marked,
// and a tenant's page says it is past its deadline.
func TestDeadlinesInBrowser(t *testing.T) {
	f := deadlineFixture(t)
	srv := httptest.NewServer(f.c)
	defer srv.Close()
	ctx := browser.New(t)
	dialogs := browser.RecordDialogs(t, ctx)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SetValue(chromedp.ID("token"), f.viewer),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("overdue-count")),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	count, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("overdue-count")))
	if err != nil || strings.TrimSpace(count) != "3" {
		t.Errorf("overview counts %q past their deadline (%v), want 3", count, err)
	}
	browser.Screenshot(t, ctx, "deadlines-overview")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#overdue-count a`)),
		chromedp.WaitVisible(chromedp.ID("tenants")),
	); err != nil {
		t.Fatalf("follow the count: %v", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#tenants tbody tr")).map(r => r.cells[0].innerText + " " + (r.querySelector(".badge.overdue") ? "past" : "-"))`))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range slices.Sorted(slices.Values(overdueOrder)) {
		want = append(want, id+" past")
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("the list the count leads to (-want +got):\n%s", diff)
	}
	selected, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("f-deadline")))
	if err != nil || selected != "past" {
		t.Errorf("the deadline filter shows %q (%v), want past", selected, err)
	}
	browser.Screenshot(t, ctx, "deadlines-list")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#tenants a[href="/tenants/late-deploy"]`)),
		chromedp.WaitVisible(chromedp.ID("deadline")),
	); err != nil {
		t.Fatalf("open late-deploy: %v", err)
	}
	line, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("deadline")))
	if err != nil || !strings.Contains(line, "past deadline") || !strings.Contains(line, "no progress for 50m") {
		t.Errorf("late-deploy's deadline line reads %q (%v)", line, err)
	}
	lastErr, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("last-error")))
	if err != nil || !strings.Contains(lastErr, "the stack has no ApiUrl output") {
		t.Errorf("late-deploy's last error reads %q (%v)", lastErr, err)
	}
	browser.Screenshot(t, ctx, "deadlines-tenant")
	dialogs.AssertNone(t)
}
