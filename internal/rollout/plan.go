package rollout

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/silo-saas/silo/registry"
)

// MaxConcurrency is StackSets' limit on instances deploying at once in one
// stack set.
const MaxConcurrency = 100

// WaveSpec is one wave of a plan as written: "canary:3", "10%",
// "50%@20/2" (at most 20 accounts at once, 2 may fail).
type WaveSpec struct {
	Name string
	// Count is a number of tenants; Percent a share of the fleet the
	// rollout has reached by the end of the wave (cumulative). One is set.
	Count   int
	Percent float64
	// Concurrency and Tolerance override the rollout's StackSet operation
	// preferences for this wave; 0 and -1 mean "the rollout's".
	Concurrency int
	Tolerance   int
}

// ParsePlan reads a wave plan: comma-separated waves, each
// [name:]size[@concurrency[/tolerance]], where size is a number of tenants
// or a cumulative percentage of the fleet. The last wave must be 100%.
func ParsePlan(plan string) ([]WaveSpec, error) {
	plan = strings.TrimSpace(plan)
	if plan == "" {
		return nil, &registry.FieldError{Field: "plan", Problem: `is required, for example "canary:3,10%,50%,100%"`}
	}
	var out []WaveSpec
	names := map[string]bool{}
	for i, raw := range strings.Split(plan, ",") {
		w := WaveSpec{Tolerance: -1}
		s := strings.TrimSpace(raw)
		bad := func(why string) error {
			return &registry.FieldError{Field: "plan", Problem: fmt.Sprintf("wave %d %q: %s", i+1, s, why)}
		}
		if name, rest, ok := strings.Cut(s, ":"); ok {
			w.Name, s = strings.TrimSpace(name), rest
			if w.Name == "" || strings.ContainsAny(w.Name, " \t%@/") {
				return nil, bad("a wave name is letters, digits and dashes")
			}
		}
		size, prefs, _ := strings.Cut(s, "@")
		size = strings.TrimSpace(size)
		if p, ok := strings.CutSuffix(size, "%"); ok {
			f, err := strconv.ParseFloat(p, 64)
			if err != nil || f <= 0 || f > 100 || math.IsNaN(f) {
				return nil, bad("a percentage is more than 0 and at most 100")
			}
			w.Percent = f
		} else {
			n, err := strconv.Atoi(size)
			if err != nil || n < 1 {
				return nil, bad("a size is a number of tenants (at least 1) or a percentage of the fleet")
			}
			w.Count = n
		}
		if prefs != "" {
			c, t, hasT := strings.Cut(prefs, "/")
			n, err := strconv.Atoi(c)
			if err != nil || n < 1 || n > MaxConcurrency {
				return nil, bad(fmt.Sprintf("concurrency after @ is 1 to %d (StackSets' limit per stack set)", MaxConcurrency))
			}
			w.Concurrency = n
			if hasT {
				m, err := strconv.Atoi(t)
				if err != nil || m < 0 {
					return nil, bad("failure tolerance after / is 0 or more")
				}
				w.Tolerance = m
			}
		}
		if w.Name == "" {
			w.Name = fmt.Sprintf("wave-%d", i+1)
		}
		if names[w.Name] {
			return nil, bad("wave names must differ")
		}
		names[w.Name] = true
		out = append(out, w)
	}
	if last := out[len(out)-1]; last.Percent != 100 {
		return nil, &registry.FieldError{Field: "plan", Problem: fmt.Sprintf("must end with a 100%% wave, so that the rollout reaches every tenant; it ends with %q", strings.TrimSpace(plan[strings.LastIndex(plan, ",")+1:]))}
	}
	return out, nil
}

// Selection says which tenants go first and which last.
type Selection struct {
	// CanaryTag ("key=value") and CanaryTier pick the tenants the first
	// waves take first: tagged ones (by tenant attribute), then ones of
	// the tier, then the rest.
	CanaryTag  string
	CanaryTier registry.Tier
	// EnterpriseLast puts enterprise tenants at the end of the order, so
	// they are the last any rollout reaches.
	EnterpriseLast bool
}

// order sorts tenants into the order the waves take them: canaries, then
// the rest, enterprise last when asked; within each group a stable hash of
// the rollout and tenant ids spreads consecutive rollouts over different
// tenants.
func order(rolloutID string, tenants []*registry.Tenant, sel Selection) []*registry.Tenant {
	tagKey, tagValue, _ := strings.Cut(sel.CanaryTag, "=")
	rank := func(t *registry.Tenant) int {
		switch {
		case sel.EnterpriseLast && t.Tier == registry.TierEnterprise:
			return 3
		case tagKey != "" && t.Attributes[tagKey] == tagValue:
			return 0
		case sel.CanaryTier != "" && t.Tier == sel.CanaryTier:
			return 1
		}
		return 2
	}
	hash := func(t *registry.Tenant) uint64 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(rolloutID + "/" + t.ID))
		return h.Sum64()
	}
	out := slices.Clone(tenants)
	slices.SortStableFunc(out, func(a, b *registry.Tenant) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(hash(a), hash(b)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// assign cuts the ordered tenants into the plan's waves. Waves that would
// be empty (a 10% wave on a fleet of 5 after a canary of 1) are dropped.
func assign(specs []WaveSpec, ordered []*registry.Tenant) (names []string, waves [][]*registry.Tenant, specOf []WaveSpec) {
	n, reached := len(ordered), 0
	for _, w := range specs {
		target := reached + w.Count
		if w.Count == 0 {
			target = int(math.Ceil(w.Percent / 100 * float64(n)))
		}
		target = min(max(target, reached), n)
		if target == reached {
			continue
		}
		names = append(names, w.Name)
		waves = append(waves, ordered[reached:target])
		specOf = append(specOf, w)
		reached = target
	}
	return names, waves, specOf
}
