package rollout

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/silo-saas/silo/registry"
)

func TestParsePlan(t *testing.T) {
	got, err := ParsePlan("canary:3@1, 10%, 50%@20/2 ,100%@100/5")
	if err != nil {
		t.Fatal(err)
	}
	want := []WaveSpec{
		{Name: "canary", Count: 3, Concurrency: 1, Tolerance: -1},
		{Name: "wave-2", Percent: 10, Tolerance: -1},
		{Name: "wave-3", Percent: 50, Concurrency: 20, Tolerance: 2},
		{Name: "wave-4", Percent: 100, Concurrency: 100, Tolerance: 5},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for plan, why := range map[string]string{
		"":                   "is required",
		"canary:3":           "must end with a 100% wave",
		"0,100%":             "a size is a number",
		"10%,150%":           "at most 100",
		"x:1,x:100%":         "names must differ",
		"1@101,100%":         "1 to 100",
		"1@5/-1,100%":        "0 or more",
		"a b:1,100%":         "letters, digits",
		"canary:three,100%":  "a size is a number",
		"canary:3,10%,nope%": "a percentage",
	} {
		_, err := ParsePlan(plan)
		if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParsePlan(%q) = %v; want an ErrInvalid saying %q", plan, err, why)
		}
	}
}

// TestAssign: waves are cumulative shares of the fleet, canaries first,
// enterprise tenants last, empty waves dropped.
func TestAssign(t *testing.T) {
	var ts []*registry.Tenant
	for i := range 20 {
		tn := &registry.Tenant{Spec: registry.Spec{ID: fmt.Sprintf("t%02d", i), Tier: registry.TierStandard}}
		switch {
		case i < 4:
			tn.Tier = registry.TierEnterprise
		case i == 7 || i == 9:
			tn.Attributes = map[string]string{"ring": "canary"}
		case i == 12:
			tn.Tier = registry.TierBasic
		}
		ts = append(ts, tn)
	}
	specs, err := ParsePlan("canary:3,10%,50%,100%")
	if err != nil {
		t.Fatal(err)
	}
	ordered := order("ro-1", ts, Selection{CanaryTag: "ring=canary", CanaryTier: registry.TierBasic, EnterpriseLast: true})
	names, waves, _ := assign(specs, ordered)
	var sizes []string
	for i, w := range waves {
		sizes = append(sizes, fmt.Sprintf("%s:%d", names[i], len(w)))
	}
	// 10% of 20 is 2, already reached by the canary of 3: that wave is dropped.
	if got := strings.Join(sizes, ","); got != "canary:3,wave-3:7,wave-4:10" {
		t.Fatalf("waves %s", got)
	}
	canary := map[string]bool{}
	for _, tn := range waves[0] {
		canary[tn.ID] = true
	}
	if !canary["t07"] || !canary["t09"] || !canary["t12"] {
		t.Errorf("canary wave %v: want the two tagged tenants and the basic one", canary)
	}
	for _, w := range waves[:2] {
		for _, tn := range w {
			if tn.Tier == registry.TierEnterprise {
				t.Errorf("enterprise tenant %s before the last wave", tn.ID)
			}
		}
	}
	// Another rollout spreads differently, but takes the same canaries.
	other := order("ro-2", ts, Selection{CanaryTag: "ring=canary", CanaryTier: registry.TierBasic, EnterpriseLast: true})
	if fmt.Sprint(other[:3]) == fmt.Sprint(ordered[:3]) && fmt.Sprint(other[3:16]) == fmt.Sprint(ordered[3:16]) {
		t.Error("two rollouts order the fleet identically")
	}
}
