package guardrails

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/emulator"
)

// TestResolveOUs walks the seeded organization (Tenants/Production,
// Tenants/Preview, Suspended, Pool) by name.
func TestResolveOUs(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	org := organizations.NewFromConfig(cfg)

	paths := []string{emulator.OUProduction, emulator.OUPreview, emulator.OUTenants, emulator.OUSuspended, emulator.OUPool}
	got, err := ResolveOUs(ctx, org, paths)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o.OUs, got); diff != "" {
		t.Errorf("OU ids (-seeded +resolved):\n%s", diff)
	}
	if got, err := ResolveOUs(ctx, org, nil); err != nil || len(got) != 0 {
		t.Errorf("no paths: %v %v", got, err)
	}

	for _, tc := range []struct{ name, path, say string }{
		{"a missing leaf", "Tenants/Staging", `Tenants has no OU named "Staging"`},
		{"a missing top", "Customers/Production", `the root has no OU named "Customers"`},
		{"names are exact", "tenants/production", `the root has no OU named "tenants"`},
		{"an empty part", "Tenants//Production", "empty part"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ResolveOUs(ctx, org, []string{emulator.OUProduction, tc.path})
			if !errors.Is(err, ErrNoSuchOU) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %v, want ErrNoSuchOU naming %s and saying %s", err, tc.path, tc.say)
			}
		})
	}
}
