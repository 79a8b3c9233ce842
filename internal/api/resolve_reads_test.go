package api

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/registry"
)

// resolveCases makes a tenant of each kind GET /v1/resolve?tenant= tells
// apart by nothing but a 200: a serving one, ones that exist but do not
// serve, a serving preview (which nobody may resolve), an unknown id and
// malformed ones. It returns the ids by case name, and the serving one's.
func resolveCases(t testing.TB, f *fixture) (map[string]string, string) {
	active := f.signup(t, "rr-active", "Serving Co").TenantID
	suspended := f.signup(t, "rr-suspended", "Suspended Co").TenantID
	vending := f.signup(t, "rr-vending", "Vending Co").TenantID
	f.walk(t, active, toActive...)
	f.walk(t, suspended, append(toActive, registry.StateSuspended)...)
	f.walk(t, vending, registry.StateCreatingAccount)
	preview, err := f.store.CreateWith(t.Context(), registry.Spec{ID: "pr7-web-3f9a1c", Name: "web PR 7", Email: "ci@acme.example",
		Tier: registry.TierBasic, Region: "us-east-1", Kind: registry.KindPreview}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.walk(t, preview.ID, toActive...)
	return map[string]string{
		"exists, suspended":        suspended,
		"exists, being vended":     vending,
		"serving preview":          preview.ID,
		"unknown id":               "ghost-co-x1y2z3",
		"malformed id":             "NOT_AN_ID",
		"empty id":                 "",
		"long id":                  strings.Repeat("z", 300),
		"the placeholder's own id": placeholderID,
	}, active
}

// TestResolveReadsAlike: GET /v1/resolve?tenant= makes the same AWS calls
// (counted by the emulator's proxy) for every id, whether a tenant exists,
// serves, may be resolved, or not, and answers every one that does not
// resolve with the same 404.
func TestResolveReadsAlike(t *testing.T) {
	f := newFixture(t, Options{})
	ids, active := resolveCases(t, f)
	calls := func(id string) (map[string]int64, resp) {
		before := emu.Proxy.Stats().Calls
		r := f.do(t, req{method: "GET", path: "/v1/resolve?tenant=" + url.QueryEscape(id)})
		after := emu.Proxy.Stats().Calls
		d := map[string]int64{}
		for op, n := range after {
			if n != before[op] {
				d[op] = n - before[op]
			}
		}
		return d, r
	}
	want, ok := calls(active)
	if ok.status != http.StatusOK {
		t.Fatalf("the serving tenant: %d %s", ok.status, ok.body)
	}
	if diff := cmp.Diff(map[string]int64{"DynamoDB.Query": 1}, want); diff != "" {
		t.Errorf("calls to resolve a serving tenant (-want +got):\n%s", diff)
	}
	var first string
	for _, name := range slices.Sorted(maps.Keys(ids)) {
		t.Run(name, func(t *testing.T) {
			got, r := calls(ids[name])
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AWS calls differ from a serving tenant's (-serving +this):\n%s", diff)
			}
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d %s, want 404", r.status, r.body)
			}
			if first == "" {
				first = string(r.body)
			} else if string(r.body) != first {
				t.Errorf("404 body %s differs from %s", r.body, first)
			}
		})
	}
}

// BenchmarkResolve times GET /v1/resolve?tenant= in process against the
// emulator for each kind of id, and prints a table of the medians: what a
// client timing the 404s could compare.
func BenchmarkResolve(b *testing.B) {
	f := newFixture(b, Options{ResolveRate: rate.Inf})
	ids, active := resolveCases(b, f)
	ids["serving (200)"] = active
	names := slices.Sorted(maps.Keys(ids))
	const rounds = 200
	samples := map[string][]time.Duration{}
	for range b.N {
		// Interleaved, so that drift in the emulator's speed hits every
		// case alike.
		for range rounds {
			for _, name := range names {
				start := time.Now()
				f.do(b, req{method: "GET", path: "/v1/resolve?tenant=" + url.QueryEscape(ids[name])})
				samples[name] = append(samples[name], time.Since(start))
			}
		}
	}
	b.StopTimer()
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-26s %8s %10s %10s %10s\n", "id", "requests", "p25", "median", "p75")
	for _, name := range names {
		s := samples[name]
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		fmt.Fprintf(&out, "%-26s %8d %10s %10s %10s\n", name, len(s),
			s[len(s)/4].Round(time.Microsecond), s[len(s)/2].Round(time.Microsecond), s[len(s)*3/4].Round(time.Microsecond))
	}
	b.Log(out.String())
}
