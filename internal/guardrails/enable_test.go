package guardrails

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
)

func TestEnableSCPs(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	org := organizations.NewFromConfig(cfg)
	// Seeding enables SCPs, as an operator would have; undo it to start
	// from a new organization.
	if _, err := org.DisablePolicyType(ctx, &organizations.DisablePolicyTypeInput{
		RootId: aws.String(o.RootID), PolicyType: orgtypes.PolicyTypeServiceControlPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		enabled, err := EnableSCPs(ctx, org)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if enabled != want {
			t.Errorf("run %d: enabled = %v, want %v", i+1, enabled, want)
		}
		_, status, err := scpStatus(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		if status != orgtypes.PolicyTypeStatusEnabled {
			t.Errorf("run %d: SCPs are %q on the root, want ENABLED", i+1, status)
		}
	}
}
