package registry

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestHealthRoundTripRollupsAndUptime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.store
	tn, _, err := s.Create(ctx, spec("acme"), "", "signup")
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	up := 0.995
	tn, err = s.Update(ctx, tn, Change{Actor: "prober", Type: "health_changed", Mutate: func(n *Tenant) {
		n.Health = &Health{Status: HealthDown, Class: "timeout", Detail: "no answer in 5s", Since: since, CheckedAt: since, LatencyMS: 5000, Uptime24h: &up}
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Health == nil || got.Health.Status != HealthDown || got.Health.Class != "timeout" || !got.Health.Since.Equal(since) || *got.Health.Uptime24h != up {
		t.Fatalf("health after round trip = %+v", got.Health)
	}
	if s := got.Health.Summary(); s != "down (timeout) since 2026-11-22T09:00:00Z, 99.50% over 24h" {
		t.Errorf("summary = %q", s)
	}
	// A later write that does not touch health keeps it.
	if _, err := s.Update(ctx, tn, Change{Mutate: func(n *Tenant) { n.AppVersion = "v2" }}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "acme"); got.Health == nil || got.Health.Class != "timeout" {
		t.Fatalf("health lost by an unrelated update: %+v", got.Health)
	}

	// 30 rollups over 60 hours, every other hour; a replaced hour keeps one item.
	var rs []Rollup
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		rs = append(rs, Rollup{TenantID: "acme", Hour: base.Add(time.Duration(2*i) * time.Hour), Checks: 60, Failures: i % 2, P50MS: 40, P95MS: 90, MaxMS: 120})
	}
	if err := s.PutRollups(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rs[29].Failures = 60
	if err := s.PutRollups(ctx, rs[29:]); err != nil {
		t.Fatal(err)
	}
	all, err := s.Rollups(ctx, "acme", base)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 30 || !all[0].Hour.Equal(base) || all[29].Failures != 60 || all[3].P95MS != 90 {
		t.Fatalf("rollups = %d, first %+v, last %+v", len(all), all[0], all[len(all)-1])
	}
	recent, err := s.Rollups(ctx, "acme", base.Add(50*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 5 { // hours 50, 52, 54, 56, 58
		t.Fatalf("rollups since hour 50 = %d, want 5", len(recent))
	}
	u, ok := Uptime(recent, base.Add(50*time.Hour))
	// failures: hour 50 (i=25) 1, 52 (26) 0, 54 (27) 1, 56 (28) 0, 58 (29) 60
	if want := float64(300-62) / 300; !ok || u != want {
		t.Errorf("uptime = %v %v, want %v", u, ok, want)
	}
	if _, ok := Uptime(nil, base); ok {
		t.Error("uptime of no checks reported as known")
	}
	// The events are untouched by roll-ups.
	events, err := s.Events(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1]; last.Type != "health_changed" || last.Actor != "prober" {
		t.Errorf("last event = %+v", last)
	}
}

func TestImportTenants(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var ts []*Tenant
	for i := range 60 {
		ts = append(ts, &Tenant{Spec: spec(fmt.Sprintf("t%03d", i)), State: StateActive, AccountID: fmt.Sprintf("%012d", 100000000000+i)})
	}
	if err := f.store.ImportTenants(ctx, ts); err != nil {
		t.Fatal(err)
	}
	page, err := f.store.List(ctx, StateActive, ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Tenants) != 60 || page.Tenants[0].Version != 1 {
		t.Fatalf("listed %d tenants after import", len(page.Tenants))
	}
	if got, err := f.store.GetByAccount(ctx, "100000000007"); err != nil || got.ID != "t007" {
		t.Fatalf("by account: %v %v", got, err)
	}
	bad := []*Tenant{{Spec: spec("ok1"), State: StateActive}, {Spec: Spec{ID: "Bad ID"}, State: StateActive}}
	if err := f.store.ImportTenants(ctx, bad); err == nil {
		t.Fatal("import of an invalid tenant succeeded")
	}
	if _, err := f.store.Get(ctx, "ok1"); err == nil {
		t.Error("a refused import wrote part of the batch")
	}
}
