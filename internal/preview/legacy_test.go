package preview_test

import (
	"errors"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// TestUpFindsALegacyPreview: a preview made before ids had a length
// budget lives under a longer id than PreviewID now gives. While it lives,
// up for its PR finds it (no second preview, no second account); once it
// is released, the PR starts afresh under the id within the budget.
func TestUpFindsALegacyPreview(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 0}, local.ControlOptions{})
	ctx := t.Context()
	const repo = "acme/a-very-long-repository-name"
	legacyOf := func(pr int) (legacy, id string) {
		t.Helper()
		legacy = preview.LegacyPreviewID(repo, pr)
		id, err := preview.PreviewID(repo, pr)
		if err != nil || legacy == "" || len(legacy) <= registry.MaxNewIDLen || len(id) > registry.MaxNewIDLen {
			t.Fatalf("PR %d: legacy id %q, id %q (%v): want a legacy id over the budget", pr, legacy, id, err)
		}
		return legacy, id
	}
	living, livingNew := legacyOf(12345)
	released, releasedNew := legacyOf(12346)
	// As they were stored then (Create refuses such ids now). The living
	// one waits for an account; with no pool its wait may expire to
	// FAILED before up comes, which is as living as waiting.
	old := func(id string, st registry.State) *registry.Tenant {
		return &registry.Tenant{Spec: registry.Spec{ID: id, Name: "preview of " + repo, Email: "previews@silo.local",
			Tier: registry.TierStandard, Region: e.org.Region, Kind: registry.KindPreview}, State: st}
	}
	if err := e.c.Registry.ImportTenants(ctx, []*registry.Tenant{old(living, registry.StateRequested), old(released, registry.StateClosed)}); err != nil {
		t.Fatal(err)
	}

	p, err := e.m.Up(ctx, preview.UpRequest{Repo: repo, PR: 12345, Artifact: build(t, "legacy"), Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != living {
		t.Errorf("up for the PR of a living legacy preview answered %s, want %s", p.ID, living)
	}
	if _, err := e.c.Registry.Get(ctx, livingNew); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a second preview %s was made beside %s: %v", livingNew, living, err)
	}

	p, err = e.m.Up(ctx, preview.UpRequest{Repo: repo, PR: 12346, Artifact: build(t, "fresh"), Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != releasedNew {
		t.Errorf("up for the PR of a released legacy preview answered %s, want the new id %s", p.ID, releasedNew)
	}
	if old, err := e.c.Registry.Get(ctx, released); err != nil || old.State != registry.StateClosed {
		t.Errorf("the released legacy preview: %+v, %v; want it left CLOSED", old, err)
	}
}
