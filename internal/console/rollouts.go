package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/silo-saas/silo/registry"
)

// rolloutSource reads rollouts; *registry.Store satisfies it.
type rolloutSource interface {
	ListRollouts(ctx context.Context, limit int) ([]*registry.Rollout, error)
	GetRollout(ctx context.Context, id string) (*registry.Rollout, error)
	RolloutTenants(ctx context.Context, id string) ([]registry.RolloutTenant, error)
}

var _ rolloutSource = (*registry.Store)(nil)

// rolloutsListed is how many of the latest rollouts the page lists.
const rolloutsListed = 20

type rolloutsData struct {
	// Configured is false when the console has no rollouts to read.
	Configured bool
	Rollouts   []rolloutRow
	// Selected is the rollout shown in full: the one asked for, else the
	// live one, else the latest; nil when there is none.
	Selected *rolloutDetail
	// ReadAt is when the rollouts were read.
	ReadAt time.Time
}

// rolloutRow is one line of the list of rollouts.
type rolloutRow struct {
	R *registry.Rollout
	// Wave is "2/4 wave-2": where it is, or where it stopped.
	Wave     string
	Tenants  int
	Selected bool
}

// rolloutDetail is the selected rollout, its waves and its tenants.
type rolloutDetail struct {
	R       *registry.Rollout
	Waves   []waveRow
	Skipped []skipCount
	Tenants []rolloutTenantRow
	// Counts are the tenants by status, in the order of the statuses.
	Counts []statusCount
}

type waveRow struct {
	registry.Wave
	Number  int
	Current bool
	// Decision is "pass" or "halt" once the gate decided.
	Decision string
}

type skipCount struct {
	Reason string
	Count  int
}

type statusCount struct {
	Status registry.RolloutTenantStatus
	Count  int
}

type rolloutTenantRow struct {
	registry.RolloutTenant
	WaveName string
	// Linked is whether the tenant id is valid, worth a link to its page.
	Linked bool
}

func (c *Console) rollouts(w http.ResponseWriter, r *http.Request, v *view) error {
	q, problems := params(r, "id")
	id := q.Get("id")
	if id != "" && registry.ValidateRolloutID(id) != nil {
		problems = append(problems, fmt.Sprintf("id %s is not a rollout id", quote(id)))
	}
	if len(problems) > 0 {
		return errBadRequest(problems...)
	}
	d := &rolloutsData{Configured: c.d.Rollouts != nil, ReadAt: c.o.Now()}
	v.Title, v.Page, v.Nav, v.Data = "Rollouts", "rollouts", "rollouts", d
	if c.d.Rollouts == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	list, err := c.d.Rollouts.ListRollouts(ctx, rolloutsListed)
	if err != nil {
		return fmt.Errorf("list rollouts: %w", err)
	}
	var sel *registry.Rollout
	switch {
	case id != "":
		if i := slices.IndexFunc(list, func(ro *registry.Rollout) bool { return ro.ID == id }); i >= 0 {
			sel = list[i]
		} else if sel, err = c.d.Rollouts.GetRollout(ctx, id); errors.Is(err, registry.ErrNotFound) {
			return errNotFound("There is no rollout " + quote(id) + ".")
		} else if err != nil {
			return fmt.Errorf("get rollout %s: %w", id, err)
		}
	case len(list) > 0:
		// The live one (there is at most one), else the latest.
		sel = list[0]
		if i := slices.IndexFunc(list, func(ro *registry.Rollout) bool { return !ro.State.Final() }); i >= 0 {
			sel = list[i]
		}
	}
	for _, ro := range list {
		d.Rollouts = append(d.Rollouts, rolloutRow{R: ro, Wave: wavePosition(ro), Tenants: ro.Tenants(), Selected: sel != nil && ro.ID == sel.ID})
	}
	if sel == nil {
		return nil
	}
	tenants, err := c.d.Rollouts.RolloutTenants(ctx, sel.ID)
	if err != nil {
		return fmt.Errorf("list tenants of rollout %s: %w", sel.ID, err)
	}
	d.Selected = detailOf(sel, tenants)
	return nil
}

func wavePosition(r *registry.Rollout) string {
	if len(r.Waves) == 0 {
		return "—"
	}
	i := min(max(r.Current, 0), len(r.Waves)-1)
	return fmt.Sprintf("%d/%d %s", i+1, len(r.Waves), r.Waves[i].Name)
}

func detailOf(r *registry.Rollout, tenants []registry.RolloutTenant) *rolloutDetail {
	d := &rolloutDetail{R: r}
	for i, w := range r.Waves {
		row := waveRow{Wave: w, Number: i + 1, Current: i == r.Current && !r.State.Final()}
		if w.Gate != nil {
			row.Decision = "halt"
			if w.Gate.Pass {
				row.Decision = "pass"
			}
		}
		d.Waves = append(d.Waves, row)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Skipped)) {
		d.Skipped = append(d.Skipped, skipCount{k, r.Skipped[k]})
	}
	counts := map[registry.RolloutTenantStatus]int{}
	for _, t := range tenants {
		row := rolloutTenantRow{RolloutTenant: t, WaveName: fmt.Sprint(t.Wave), Linked: registry.ValidateID(t.TenantID) == nil}
		if t.Wave >= 0 && t.Wave < len(r.Waves) {
			row.WaveName = r.Waves[t.Wave].Name
		}
		d.Tenants = append(d.Tenants, row)
		counts[t.Status]++
	}
	// By wave, then by id: the order the rollout reached them in.
	slices.SortFunc(d.Tenants, func(a, b rolloutTenantRow) int {
		return cmp.Or(cmp.Compare(a.Wave, b.Wave), strings.Compare(a.TenantID, b.TenantID))
	})
	for _, s := range []registry.RolloutTenantStatus{registry.RTPending, registry.RTUpdating, registry.RTUpdated, registry.RTHealthy,
		registry.RTUnhealthy, registry.RTFailed, registry.RTSkipped, registry.RTRollingBack, registry.RTRolledBack} {
		if counts[s] > 0 {
			d.Counts = append(d.Counts, statusCount{s, counts[s]})
		}
	}
	return d
}
