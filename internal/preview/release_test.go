package preview_test

import (
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/local"
)

// TestPublishReturnsTheStoredRelease: the release a publish answers with
// is the catalog's record, time included; the same build published again
// is the same release, first record kept.
func TestPublishReturnsTheStoredRelease(t *testing.T) {
	ctx := t.Context()
	c, err := local.Wire(ctx, emu.ResetT(t), local.ControlOptions{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rels := c.Releases()
	first, err := rels.Publish(ctx, build(t, "one"), "ci acme/web@1")
	if err != nil {
		t.Fatal(err)
	}
	if first.CreatedAt.IsZero() || first.Source != "ci acme/web@1" || first.Version == "" {
		t.Errorf("first publish: %+v", first)
	}
	again, err := rels.Publish(ctx, build(t, "one"), "ci acme/web@2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("the same build published again (-first +again):\n%s", diff)
	}
	stored, err := c.Registry.GetRelease(ctx, first.Version)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*stored, first); diff != "" {
		t.Errorf("answer and catalog differ (-catalog +answer):\n%s", diff)
	}
}
