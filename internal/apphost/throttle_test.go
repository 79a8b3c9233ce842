package apphost_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/apphost"
	"github.com/silo-saas/silo/registry"
)

// TestTierThrottlesComeFromTheTemplate: the host's limits are the
// template's TierThrottle mapping, the one the stage's method settings
// use in AWS.
func TestTierThrottlesComeFromTheTemplate(t *testing.T) {
	got, err := apphost.TierThrottles()
	if err != nil {
		t.Fatal(err)
	}
	want := map[registry.Tier]apphost.Throttle{
		registry.TierBasic: {Rate: 10, Burst: 20}, registry.TierStandard: {Rate: 50, Burst: 100}, registry.TierEnterprise: {Rate: 200, Burst: 400},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("throttles (-want +got):\n%s", diff)
	}
}

// TestStageThrottleByTier sends the same load to a basic and an
// enterprise tenant with the clock stopped (no refill: the test counts
// tokens, not time). The basic tenant's stage answers 429 past its burst,
// as API Gateway does; the enterprise tenant's serves every request. One
// tenant's load never touches another's bucket.
func TestStageThrottleByTier(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newFixtureWith(t, hostOptions{now: func() time.Time { return now }})
	tenants := f.vendTiers(t, map[string]string{"small-co": "us-east-1", "big-co": "us-east-1"},
		map[string]registry.Tier{"small-co": registry.TierBasic, "big-co": registry.TierEnterprise})
	limits, err := apphost.TierThrottles()
	if err != nil {
		t.Fatal(err)
	}
	load := limits[registry.TierBasic].Burst + 10
	count := func(tn *registry.Tenant) (ok, throttled int) {
		for range load {
			r := do(t, http.MethodGet, tn.Endpoint+"/health", "", nil)
			switch r.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				if string(r.body) != `{"message":"Too Many Requests"}` {
					t.Errorf("429 body %s", r.body)
				}
				throttled++
			default:
				t.Fatalf("%s: %d %s", tn.ID, r.status, r.body)
			}
		}
		return ok, throttled
	}
	if ok, throttled := count(tenants["small-co"]); ok != limits[registry.TierBasic].Burst || throttled != load-ok {
		t.Errorf("basic tenant: %d served, %d throttled of %d; want its burst (%d) served", ok, throttled, load, limits[registry.TierBasic].Burst)
	}
	if ok, throttled := count(tenants["big-co"]); ok != load || throttled != 0 {
		t.Errorf("enterprise tenant: %d served, %d throttled of %d; want all served", ok, throttled, load)
	}
}
