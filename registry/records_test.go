package registry

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFleetReports stores reports of one kind on a few tenants (one twice)
// and reads the latest of each back, per tenant and for the whole fleet in
// one query; another kind's reports stay apart.
func TestFleetReports(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	type body struct {
		Status string `json:"status"`
		N      int    `json:"n"`
	}
	for i, id := range []string{"gamma", "alpha", "beta"} {
		if err := f.store.PutFleetReport(ctx, id, "isolation", body{Status: "pass", N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.PutFleetReport(ctx, "alpha", "isolation", body{Status: "fail", N: 9}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.PutFleetReport(ctx, "alpha", "other", body{Status: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.PutReport(ctx, "delta", "isolation", body{Status: "not in the fleet copy"}); err != nil {
		t.Fatal(err)
	}

	var own body
	if err := f.store.Report(ctx, "alpha", "isolation", &own); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(body{Status: "fail", N: 9}, own); diff != "" {
		t.Errorf("Report(alpha) (-want +got):\n%s", diff)
	}

	f.counter.Reset()
	got, err := f.store.FleetReports(ctx, "isolation")
	if err != nil {
		t.Fatal(err)
	}
	if q, all := f.counter.Calls("DynamoDB", "Query"), f.counter.Total(); q != 1 || all != 1 {
		t.Errorf("FleetReports made %d calls (%d queries), want one query", all, q)
	}
	var ids []string
	var bodies []body
	for _, r := range got {
		var b body
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatal(err)
		}
		if r.CreatedAt.IsZero() {
			t.Errorf("report of %s has no time", r.TenantID)
		}
		ids, bodies = append(ids, r.TenantID), append(bodies, b)
	}
	if diff := cmp.Diff([]string{"alpha", "beta", "gamma"}, ids); diff != "" {
		t.Errorf("tenants (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]body{{"fail", 9}, {"pass", 2}, {"pass", 0}}, bodies); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}

	none, err := f.store.FleetReports(ctx, "never")
	if err != nil || len(none) != 0 {
		t.Errorf("FleetReports(never) = %v, %v; want none", none, err)
	}
	if err := f.store.Report(ctx, "beta", "other", &own); !errors.Is(err, ErrNotFound) {
		t.Errorf("Report(beta, other): %v, want ErrNotFound", err)
	}
	for _, c := range []struct{ id, kind string }{{"Bad Id", "isolation"}, {"alpha", ""}} {
		if err := f.store.PutFleetReport(ctx, c.id, c.kind, body{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutFleetReport(%q, %q): %v, want ErrInvalid", c.id, c.kind, err)
		}
	}
}
