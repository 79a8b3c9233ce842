package console

import (
	"fmt"
	"html"
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

// TestFleetPages seeds a few thousand tenants once and checks the overview
// and the tenant list against what the seed says they must show.
func TestFleetPages(t *testing.T) {
	now := time.Now().UTC()
	seed := fleetTenants(2500, now)
	f := newFixture(t, seed, nil)

	t.Run("overview counts", func(t *testing.T) {
		body := f.mustGet(t, "/")
		states := map[string]int{}
		health := map[string]int{"up": 0, "degraded": 0, "down": 0, "unknown": 0}
		var sum float64
		var n int
		for _, tn := range seed {
			states[string(tn.State)]++
			if serving(tn.State) {
				health[healthOf(tn)]++
				if tn.Health != nil && tn.Health.Uptime24h != nil {
					sum += *tn.Health.Uptime24h
					n++
				}
			}
		}
		got := map[string]int{}
		for _, m := range regexp.MustCompile(`data-state="([A-Z_]+)">([0-9,]+)<`).FindAllStringSubmatch(body, -1) {
			got[m[1]] = atoi(t, m[2])
		}
		for _, st := range registry.States() {
			if _, ok := states[string(st)]; !ok {
				states[string(st)] = 0
			}
		}
		if diff := cmp.Diff(states, got); diff != "" {
			t.Errorf("state counts (-want +got):\n%s", diff)
		}
		gotH := map[string]int{}
		for _, m := range regexp.MustCompile(`data-health="([a-z]+)">([0-9,]+)<`).FindAllStringSubmatch(body, -1) {
			gotH[m[1]] = atoi(t, m[2])
		}
		if diff := cmp.Diff(health, gotH); diff != "" {
			t.Errorf("health counts (-want +got):\n%s", diff)
		}
		if want := fmt.Sprintf(`id="fleet-uptime">%.2f%%<`, sum/float64(n)*100); !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
		// Failing: down first, longest failing (smallest since, here the
		// largest index) first; then degraded.
		var down, degraded []string
		for _, tn := range slices.Backward(seed) {
			if !serving(tn.State) {
				continue
			}
			switch healthOf(tn) {
			case "down":
				down = append(down, tn.ID)
			case "degraded":
				degraded = append(degraded, tn.ID)
			}
		}
		failing := regexp.MustCompile(`(?s)<table class="list" id="failing">.*?</table>`).FindString(body)
		ids := regexp.MustCompile(`href="/tenants/([a-z0-9-]+)"`).FindAllStringSubmatch(failing, -1)
		want := append(down, degraded...)[:maxFailing]
		var gotIDs []string
		for _, m := range ids {
			gotIDs = append(gotIDs, m[1])
		}
		if diff := cmp.Diff(want, gotIDs); diff != "" {
			t.Errorf("failing tenants (-want +got):\n%s", diff)
		}
		if !strings.Contains(failing, "status 503") || !strings.Contains(failing, "<td>status</td>") {
			t.Errorf("failing table lacks class and detail")
		}
		if !strings.Contains(body, `id="fleet-cost">—<`) {
			t.Errorf("no cost source should show a dash")
		}
	})

	match := func(pred func(*registry.Tenant) bool) []*registry.Tenant {
		var out []*registry.Tenant
		for _, tn := range seed {
			if pred(tn) {
				out = append(out, tn)
			}
		}
		return out
	}
	ids := func(ts []*registry.Tenant) []string {
		var out []string
		for _, tn := range ts {
			out = append(out, tn.ID)
		}
		return out
	}
	page := func(ts []*registry.Tenant, p, per int) []*registry.Tenant {
		from := min((p-1)*per, len(ts))
		return ts[from:min(from+per, len(ts))]
	}

	t.Run("list", func(t *testing.T) {
		active := match(func(tn *registry.Tenant) bool { return tn.State == registry.StateActive })
		downEnterprise := match(func(tn *registry.Tenant) bool {
			return healthOf(tn) == "down" && tn.Tier == registry.TierEnterprise
		})
		byUpdatedDesc := slices.Clone(seed)
		slices.SortStableFunc(byUpdatedDesc, func(a, b *registry.Tenant) int { return b.UpdatedAt.Compare(a.UpdatedAt) })
		v2 := match(func(tn *registry.Tenant) bool { return tn.AppVersion == "1.0.2" && tn.State == registry.StateActive })
		tests := []struct {
			name  string
			query string
			want  []*registry.Tenant
			total int
		}{
			{"default first page", "", page(seed, 1, 50), len(seed)},
			{"state, page 3 of 20", "state=ACTIVE&per=20&page=3", page(active, 3, 20), len(active)},
			{"health and tier", "health=down&tier=enterprise&per=500", page(downEnterprise, 1, 500), len(downEnterprise)},
			{"search by name, any case", "q=TENANT%2000123", match(func(tn *registry.Tenant) bool { return tn.ID == "t-00123" }), 1},
			{"search by email", "q=ops0042", match(func(tn *registry.Tenant) bool { return strings.HasPrefix(tn.Email, "ops0042") }), 10},
			{"search by account", "q=200000000777", match(func(tn *registry.Tenant) bool { return tn.AccountID == "200000000777" }), 1},
			{"sort by updated, newest first", "sort=updated&order=desc&per=10", page(byUpdatedDesc, 1, 10), len(seed)},
			{"version and state", "version=1.0.2&state=ACTIVE&page=2&per=10", page(v2, 2, 10), len(v2)},
			{"past the last page", "state=CLOSED&page=99", nil, len(match(func(tn *registry.Tenant) bool { return tn.State == registry.StateClosed }))},
			{"empty filters from the form", "q=&state=&health=&tier=&version=", page(seed, 1, 50), len(seed)},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				body := f.mustGet(t, "/tenants?"+tc.query)
				if diff := cmp.Diff(ids(tc.want), tenantIDsIn(body)); diff != "" {
					t.Errorf("tenants (-want +got):\n%s", diff)
				}
				if tc.total > 0 && !strings.Contains(body, fmt.Sprintf("of %s matching tenants", groupDigits(strconv.Itoa(tc.total)))) {
					t.Errorf("total %d not shown:\n%s", tc.total, regexp.MustCompile(`<p class="total".*`).FindString(body))
				}
			})
		}
	})

	t.Run("page links keep the filters", func(t *testing.T) {
		body := html.UnescapeString(f.mustGet(t, "/tenants?state=ACTIVE&tier=basic&sort=name&order=desc&per=10&page=2"))
		for _, want := range []string{
			`rel="prev" href="/tenants?order=desc&per=10&sort=name&state=ACTIVE&tier=basic"`,
			`rel="next" href="/tenants?order=desc&page=3&per=10&sort=name&state=ACTIVE&tier=basic"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s", want)
			}
		}
	})

	t.Run("partial refresh", func(t *testing.T) {
		for _, p := range []string{"/", "/tenants?state=FAILED", "/tenants/t-00003"} {
			r := do(t, f.c, "GET", p, f.viewer, nil, map[string]string{partialHeader: "1"})
			if r.status != 200 || strings.Contains(r.body, "<html") || strings.Contains(r.body, "<nav>") || !strings.Contains(r.body, "<h1>") {
				t.Errorf("partial %s: %d\n%.300s", p, r.status, r.body)
			}
			if !strings.Contains(r.header.Get("Vary"), partialHeader) {
				t.Errorf("partial %s: Vary %q", p, r.header.Get("Vary"))
			}
		}
		full := f.mustGet(t, "/")
		if !strings.Contains(full, `<main id="content" data-refresh="15">`) {
			t.Errorf("full page lacks the refresh interval")
		}
	})

	t.Run("bad input is a 400", func(t *testing.T) {
		tests := []struct{ name, path, says string }{
			{"unknown parameter", "/tenants?foo=1", `unknown parameter &#34;foo&#34;`},
			{"unknown state", "/tenants?state=RUNNING", `state &#34;RUNNING&#34; is not a tenant state`},
			{"lower-case state", "/tenants?state=active", "is not a tenant state"},
			{"unknown health", "/tenants?health=sick", "is not one of up, degraded, down, unknown"},
			{"unknown tier", "/tenants?tier=gold", "is not one of basic, standard, enterprise"},
			{"page not a number", "/tenants?page=abc", "is not a page number"},
			{"page zero", "/tenants?page=0", "is not a page number"},
			{"page negative", "/tenants?page=-1", "is not a page number"},
			{"huge page", "/tenants?page=99999999999999999999", "is not a page number"},
			{"per too big", "/tenants?per=100000", "is not a page size from 10 to 500"},
			{"per too small", "/tenants?per=1", "is not a page size"},
			{"sort unknown", "/tenants?sort=foo", "is not one of id, name"},
			{"order unknown", "/tenants?order=up", "is not asc or desc"},
			{"repeated parameter", "/tenants?state=ACTIVE&state=FAILED", "is given 2 times"},
			{"query too long", "/tenants?q=" + strings.Repeat("a", 300), "at most 200 characters"},
			{"control character", "/tenants?q=a%00b", "printable text"},
			{"overview takes nothing", "/?page=2", "unknown parameter"},
			{"detail takes nothing", "/tenants/t-00001?x=1", "unknown parameter"},
			{"invalid tenant id", "/tenants/UPPER", "tenant id"},
			{"tenant id too long", "/tenants/" + strings.Repeat("a", 41), "tenant id"},
			{"tenant id with a dot", "/tenants/a.b.c", "tenant id"},
			{"login with junk", "/login?reason=pwned", "unknown reason"},
			{"previews with junk", "/previews?x", "unknown parameter"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := f.get(t, tc.path)
				if r.status != http.StatusBadRequest || !strings.Contains(r.body, tc.says) {
					t.Errorf("GET %s = %d, want 400 saying %q:\n%s", tc.path, r.status, tc.says, r.body)
				}
				if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Errorf("content type %q", r.header.Get("Content-Type"))
				}
			})
		}
	})

	t.Run("no garbage gives a 5xx", func(t *testing.T) {
		for _, p := range []string{"/tenants?q=%ff%fe", "/tenants/%2e%2e", "/tenants/a%2Fb", "/tenants?sort=&order=&page=&per=",
			"/tenants?q=<script>", "/static/../console.go", "/static/nope.js", "/tenants/t-00001/extra", "/nowhere",
			"/tenants?per=10&page=2147483648", "/tenants?%zz=1"} {
			if r := f.get(t, p); r.status >= 500 {
				t.Errorf("GET %s = %d", p, r.status)
			}
		}
		if strings.Contains(f.logs.String(), "panic") {
			t.Errorf("a request panicked:\n%s", f.logs.String())
		}
	})

	t.Run("unknown tenant is a 404", func(t *testing.T) {
		r := f.get(t, "/tenants/no-such-tenant")
		if r.status != http.StatusNotFound || !strings.Contains(r.body, "There is no tenant") {
			t.Errorf("%d\n%s", r.status, r.body)
		}
		if r := f.get(t, "/nowhere"); r.status != http.StatusNotFound {
			t.Errorf("unknown page: %d", r.status)
		}
	})

	t.Run("security headers", func(t *testing.T) {
		r := f.get(t, "/")
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP %q", csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("nosniff missing")
		}
		if strings.Contains(r.body, "<script>") || strings.Contains(r.body, " style=") {
			t.Errorf("inline script or style in the page")
		}
		s := f.get(t, "/static/console.css?v="+f.c.assetVersion)
		if s.status != 200 || !strings.Contains(s.header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(s.header.Get("Content-Type"), "text/css") {
			t.Errorf("static: %d %q %q", s.status, s.header.Get("Cache-Control"), s.header.Get("Content-Type"))
		}
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
