package console

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/registry"
)

// seedRollouts records two rollouts the way the engine leaves them: ro-old
// completed, then ro-live rolling back after its second wave's gate halted.
// Every text an operator or a tenant can influence carries markup.
func seedRollouts(t testing.TB, s *registry.Store) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC()
	old, err := s.CreateRollout(ctx, &registry.Rollout{ID: "ro-old", Release: "rel-0000000000000000aaaa", Plan: "100%", MaxFailures: 0,
		Bake: time.Minute, GateTimeout: time.Minute, CreatedBy: "operator:ann",
		Waves: []registry.Wave{{Name: "wave-1", Tenants: 1, Phase: registry.WavePending, MaxConcurrency: 25}}},
		[]registry.RolloutTenant{{RolloutID: "ro-old", TenantID: "t-00001", Tier: registry.TierBasic, From: "rel-prev", Status: registry.RTPending}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRollout(ctx, old, func(n *registry.Rollout) {
		n.State = registry.RolloutCompleted
		n.Waves[0].Phase = registry.WavePassed
		n.Waves[0].Gate = &registry.Gate{Pass: true, Healthy: 1, Why: "wave wave-1 gate: 1 of 1 up; go on", At: now}
		n.Notes = append(n.Notes, registry.Note{At: now, Text: "completed: 1 tenants on rel-0000000000000000aaaa"})
	}); err != nil {
		t.Fatal(err)
	}

	live, err := s.CreateRollout(ctx, &registry.Rollout{ID: "ro-live", Release: "rel-<b>new</b>", Plan: "canary:2,<i>100%</i>", MaxFailures: 1,
		Bake: 90 * time.Second, GateTimeout: 5 * time.Minute, CreatedBy: "operator:<bob>", Skipped: map[string]int{"pinned": 2, "already on the release": 1},
		Waves: []registry.Wave{{Name: "canary", Tenants: 2, Phase: registry.WavePending}, {Name: "<em>w2</em>", Tenants: 3, Phase: registry.WavePending}}},
		[]registry.RolloutTenant{
			{RolloutID: "ro-live", TenantID: "t-00002", Tier: registry.TierBasic, Wave: 0, From: "rel-0000000000000000aaaa", Status: registry.RTPending},
			{RolloutID: "ro-live", TenantID: "t-00001", Tier: registry.TierBasic, Wave: 0, From: "rel-0000000000000000aaaa", Status: registry.RTPending},
		})
	if err != nil {
		t.Fatal(err)
	}
	checked := now.Add(-30 * time.Second)
	err = s.PutRolloutTenants(ctx, []registry.RolloutTenant{
		{RolloutID: "ro-live", TenantID: "t-00002", Tier: registry.TierBasic, Wave: 0, From: "rel-0000000000000000aaaa", Status: registry.RTRolledBack,
			Health: &registry.Health{Status: registry.HealthUp, CheckedAt: checked}},
		{RolloutID: "ro-live", TenantID: "t-00001", Tier: registry.TierBasic, Wave: 0, From: "rel-0000000000000000aaaa", Status: registry.RTRollingBack,
			Health: &registry.Health{Status: registry.HealthUp, CheckedAt: checked}},
		{RolloutID: "ro-live", TenantID: "t-00005", Tier: registry.TierStandard, Wave: 1, From: "rel-0000000000000000aaaa", Status: registry.RTUnhealthy,
			Reason: "down: <img src=x onerror=alert(2)>", Health: &registry.Health{Status: registry.HealthDown, Detail: "body <script>alert(3)</script>", CheckedAt: checked}},
		{RolloutID: "ro-live", TenantID: "t-00004", Tier: registry.TierStandard, Wave: 1, From: "", Status: registry.RTFailed, Reason: "update failed: stack rolled back"},
		{RolloutID: "ro-live", TenantID: "<b>odd</b>", Tier: registry.TierEnterprise, Wave: 1, From: "rel-0000000000000000aaaa", Status: registry.RTUnhealthy,
			Reason: "no probe after its update within 5m0s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRollout(ctx, live, func(n *registry.Rollout) {
		n.State, n.Reason, n.Current = registry.RolloutRollingBack, "wave <em>w2</em> gate: 3 failures > 1 allowed: halt and roll back", 1
		n.Waves[0].Phase = registry.WavePassed
		n.Waves[0].Gate = &registry.Gate{Pass: true, Healthy: 2, MaxFailures: 1, Why: "wave canary gate: 2 of 2 updated tenants up; 0 failures ≤ 1 allowed: go on", At: now}
		n.Waves[1].Phase = registry.WaveHalted
		n.Waves[1].Gate = &registry.Gate{Unhealthy: 1, NoProbe: 1, DeployFailed: 1, MaxFailures: 1,
			Why: "wave <em>w2</em> gate: 1 unhealthy (down: <img src=x>), 3 failures > 1 allowed: halt and roll back", At: now}
		n.Notes = append(n.Notes,
			registry.Note{At: now.Add(-2 * time.Minute), Text: "wave canary: updating 2 tenants"},
			registry.Note{At: now.Add(-time.Minute), Text: n.Waves[0].Gate.Why},
			registry.Note{At: now, Text: n.Waves[1].Gate.Why})
	}); err != nil {
		t.Fatal(err)
	}
}

// section returns the first element of body with the id, up to its
// closing tag.
func section(t *testing.T, body, tag, id string) string {
	t.Helper()
	s := regexp.MustCompile(`(?s)<` + tag + `[^>]* id="` + id + `".*?</` + tag + `>`).FindString(body)
	if s == "" {
		t.Fatalf("no <%s id=%q> in:\n%s", tag, id, body)
	}
	return s
}

func rowsOf(table string) []string {
	return regexp.MustCompile(`(?s)<tr[ >].*?</tr>`).FindAllString(table, -1)
}

func TestRolloutsPage(t *testing.T) {
	f := newFixture(t, fleetTenants(10, time.Now()), func(f *fixture, d *Deps, o *Options) { d.Rollouts = f.store })
	seedRollouts(t, f.store)

	// Without an id: the live rollout, though the list has both.
	body := f.mustGet(t, "/rollouts")
	if !strings.Contains(body, `data-rollout="ro-live"`) {
		t.Fatalf("the live rollout is not the one shown:\n%s", body)
	}
	list := rowsOf(section(t, body, "table", "rollouts"))
	if len(list) != 3 || !strings.Contains(list[1], `href="/rollouts?id=ro-live"`) || !strings.Contains(list[1], `class="selected"`) ||
		!strings.Contains(list[2], `href="/rollouts?id=ro-old"`) || !strings.Contains(list[2], "completed") {
		t.Errorf("list, newest first with the live one selected:\n%s", strings.Join(list, "\n"))
	}
	if !strings.Contains(list[1], "2/2 &lt;em&gt;w2&lt;/em&gt;") || !strings.Contains(list[1], `<td class="num">5</td>`) {
		t.Errorf("the live row's position and size:\n%s", list[1])
	}

	for _, w := range []string{
		`id="rollout-state">rolling_back<`,
		`id="rollout-reason">wave &lt;em&gt;w2&lt;/em&gt; gate: 3 failures &gt; 1 allowed: halt and roll back<`,
		`id="rollout-release">rel-&lt;b&gt;new&lt;/b&gt;<`,
		`<code>canary:2,&lt;i&gt;100%&lt;/i&gt;</code>`,
		`1m30s, 5m0s`,
		`id="rollout-skipped">1 already on the release, 2 pinned<`,
		`by operator:&lt;bob&gt;`,
		`5: 2 unhealthy, 1 failed, 1 rolling_back, 1 rolled_back`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("the rollout lacks %s", w)
		}
	}

	waves := rowsOf(section(t, body, "table", "waves"))
	if len(waves) != 3 {
		t.Fatalf("waves table has %d rows, want a header and 2", len(waves))
	}
	canary, w2 := waves[1], waves[2]
	for _, w := range []string{`data-wave="canary"`, "wp-passed", `<td class="num">2</td><td class="num">0</td><td class="num">0</td><td class="num">0</td>`,
		`gate-pass">pass<`, "0 failures, 1 allowed", "2 of 2 updated tenants up"} {
		if !strings.Contains(canary, w) {
			t.Errorf("canary row lacks %s:\n%s", w, canary)
		}
	}
	for _, w := range []string{`data-wave="&lt;em&gt;w2&lt;/em&gt;"`, `class="current"`, "wp-halted", `<td class="num">0</td><td class="num">1</td><td class="num">1</td><td class="num">1</td>`,
		`gate-halt">halt<`, "3 failures, 1 allowed", "1 unhealthy (down: &lt;img src=x&gt;)"} {
		if !strings.Contains(w2, w) {
			t.Errorf("second wave's row lacks %s:\n%s", w, w2)
		}
	}

	notes := regexp.MustCompile(`(?s)<li><time[^>]*>[^<]*</time> (.*?)</li>`).FindAllStringSubmatch(section(t, body, "ol", "notes"), -1)
	var texts []string
	for _, n := range notes {
		texts = append(texts, n[1])
	}
	want := []string{
		"wave canary: updating 2 tenants",
		"wave canary gate: 2 of 2 updated tenants up; 0 failures ≤ 1 allowed: go on",
		"wave &lt;em&gt;w2&lt;/em&gt; gate: 1 unhealthy (down: &lt;img src=x&gt;), 3 failures &gt; 1 allowed: halt and roll back",
	}
	if diff := cmp.Diff(want, texts); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}

	// Tenants by wave, then id; links only for valid ids.
	tenants := rowsOf(section(t, body, "table", "rollout-tenants"))[1:]
	var order []string
	for _, r := range tenants {
		order = append(order, regexp.MustCompile(`data-tenant="([^"]*)"`).FindStringSubmatch(r)[1])
	}
	if diff := cmp.Diff([]string{"t-00001", "t-00002", "&lt;b&gt;odd&lt;/b&gt;", "t-00004", "t-00005"}, order); diff != "" {
		t.Errorf("tenant order (-want +got):\n%s", diff)
	}
	for i, w := range [][]string{
		{`href="/tenants/t-00001">t-00001<`, "<td>canary</td>", `title="rel-0000000000000000aaaa">rel-00000000…<`, "rt-rolling_back", `h-up">up<`, "probed"},
		{`href="/tenants/t-00002">t-00002<`, "rt-rolled_back"},
		{"<td>&lt;b&gt;odd&lt;/b&gt;</td>", "<td>enterprise</td>", "no probe after its update within 5m0s"},
		{"rt-failed", "update failed: stack rolled back", "<td>—</td>"},
		{"<td>standard</td>", "<td>&lt;em&gt;w2&lt;/em&gt;</td>", "rt-unhealthy", "down: &lt;img src=x onerror=alert(2)&gt;", `h-down">down<`, "body &lt;script&gt;alert(3)&lt;/script&gt;"},
	} {
		for _, s := range w {
			if !strings.Contains(tenants[i], s) {
				t.Errorf("tenant row %d lacks %s:\n%s", i, s, tenants[i])
			}
		}
	}
	if strings.Contains(tenants[2], "href=") {
		t.Errorf("an invalid tenant id became a link:\n%s", tenants[2])
	}
	for _, bad := range []string{"<b>", "<i>", "<em>", "<img", "<script>alert", "<bob>"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains raw %q", bad)
		}
	}

	// An older rollout by id.
	body = f.mustGet(t, "/rollouts?id=ro-old")
	if !strings.Contains(body, `data-rollout="ro-old"`) || !strings.Contains(body, `id="rollout-state">completed<`) ||
		strings.Contains(body, `id="rollout-reason"`) || !strings.Contains(body, "completed: 1 tenants on rel-0000000000000000aaaa") {
		t.Errorf("ro-old:\n%s", body)
	}
	if strings.Contains(section(t, body, "table", "waves"), `class="current"`) {
		t.Errorf("an ended rollout has a current wave")
	}

	for _, tc := range []struct {
		target string
		status int
		says   string
	}{
		{"/rollouts?id=ro-nope", http.StatusNotFound, "There is no rollout"},
		{"/rollouts?id=NOT_AN_ID", http.StatusBadRequest, "is not a rollout id"},
		{"/rollouts?id=%3Cscript%3E", http.StatusBadRequest, "&lt;script&gt;"},
		{"/rollouts?page=2", http.StatusBadRequest, "unknown parameter"},
		{"/rollouts?id=ro-old&id=ro-live", http.StatusBadRequest, "given 2 times"},
	} {
		r := f.get(t, tc.target)
		if r.status != tc.status || !strings.Contains(r.body, tc.says) || strings.Contains(r.body, "<script>") {
			t.Errorf("GET %s: %d, want %d saying %q:\n%s", tc.target, r.status, tc.status, tc.says, r.body)
		}
	}

	p := do(t, f.c, "GET", "/rollouts?id=ro-live", f.viewer, nil, map[string]string{partialHeader: "1"})
	if p.status != 200 || strings.Contains(p.body, "<html") || !strings.Contains(p.body, `id="waves"`) {
		t.Errorf("partial: %d\n%.300s", p.status, p.body)
	}
}

func TestRolloutsPageEmpty(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire bool
		says string
	}{
		{"not configured", false, `id="rollouts-unconfigured"`},
		{"no rollout yet", true, `id="rollouts-none"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil, func(f *fixture, d *Deps, o *Options) {
				if tc.wire {
					d.Rollouts = f.store
				}
			})
			body := f.mustGet(t, "/rollouts")
			if !strings.Contains(body, tc.says) || strings.Contains(body, `id="rollout"`) || strings.Contains(body, `id="rollouts"`) {
				t.Errorf("want only %s:\n%s", tc.says, body)
			}
		})
	}
}
