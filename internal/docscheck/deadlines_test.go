package docscheck

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

const operationsPage = "../../docs/operations.md"

// TestDeadlineTableMatchesDefaults: the state deadlines table of
// docs/operations.md gives the defaults vending.DefaultDeadlines has, for
// customer tenants, previews (in parentheses where they differ) and the
// pool's resetting state.
func TestDeadlineTableMatchesDefaults(t *testing.T) {
	b, err := os.ReadFile(operationsPage)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`[A-Z_]+`|pool account `resetting`) \\| ([0-9hm]+)(?: \\(([0-9hm]+)\\))? \\|")
	type defaults struct{ Tenant, Preview time.Duration }
	got := map[string]defaults{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		tenant, err := time.ParseDuration(m[2])
		if err != nil {
			t.Fatalf("row %q: %v", m[0], err)
		}
		preview := tenant
		if m[3] != "" {
			if preview, err = time.ParseDuration(m[3]); err != nil {
				t.Fatalf("row %q: %v", m[0], err)
			}
		}
		got[strings.ReplaceAll(m[1], "`", "")] = defaults{tenant, preview}
	}
	d := vending.DefaultDeadlines()
	want := map[string]defaults{"pool account resetting": {d.PoolResetting, d.PoolResetting}}
	for _, st := range []registry.State{registry.StateRequested, registry.StateCreatingAccount, registry.StatePreparing,
		registry.StateDeploying, registry.StateUpdating, registry.StateDecommissioning} {
		want[string(st)] = defaults{d.For(registry.KindTenant, st), d.For(registry.KindPreview, st)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s's deadline table vs vending.DefaultDeadlines (-code +docs):\n%s", operationsPage, diff)
	}
	for _, st := range []registry.State{registry.StateRequested, registry.StateCreatingAccount, registry.StatePreparing,
		registry.StateDeploying, registry.StateUpdating, registry.StateDecommissioning} {
		if d.For(registry.KindPool, st) != d.For(registry.KindTenant, st) {
			t.Errorf("the page says pool records have the tenant's deadlines; %s differs", st)
		}
	}
}
