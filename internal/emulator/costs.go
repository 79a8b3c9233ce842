package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"
)

// SetCosts makes the management account's next Cost Explorer
// GetCostAndUsage answer with one month-to-date amount (USD) per linked
// account, grouped by LINKED_ACCOUNT as silo asks for it.
//
// moto does not track cost. It answers from a queue of results set through
// its control API: the first GetCostAndUsage with a request body it has not
// seen takes the next queued result, and the same body gets the same result
// from then on. So a caller that caches costs sees these amounts on its next
// fetch with a new period; call SetCosts once per distinct request. The
// control API is moto's own (not AWS's), so this goes to moto directly, not
// through the proxy.
func (o *Org) SetCosts(ctx context.Context, costs map[string]float64) error {
	if o.emu == nil {
		return errors.New("set costs: this Org was not seeded by an Emulator")
	}
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	type amount struct{ Amount, Unit string }
	type group struct {
		Keys    []string
		Metrics map[string]amount
	}
	groups := []group{}
	for _, acct := range slices.Sorted(maps.Keys(costs)) {
		groups = append(groups, group{Keys: []string{acct}, Metrics: map[string]amount{
			"UnblendedCost": {Amount: strconv.FormatFloat(costs[acct], 'f', -1, 64), Unit: "USD"},
		}})
	}
	body, err := json.Marshal(map[string]any{
		"account_id": o.ManagementAccountID,
		"results": []any{map[string]any{
			"ResultsByTime": []any{map[string]any{
				"TimePeriod": map[string]string{"Start": start.Format(time.DateOnly), "End": now.AddDate(0, 0, 1).Format(time.DateOnly)},
				"Total":      map[string]any{},
				"Groups":     groups,
				"Estimated":  true,
			}},
			"DimensionValueAttributes": []any{},
			"GroupDefinitions":         []any{map[string]string{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}},
		}},
	})
	if err != nil {
		return err
	}
	return o.emu.post(ctx, "/moto-api/static/ce/cost-and-usage-results", "application/json", string(body))
}
