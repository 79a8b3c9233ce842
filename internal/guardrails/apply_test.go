package guardrails

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

func TestApplyAttachesToTenantOUs(t *testing.T) {
	ctx := context.Background()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	org := organizations.NewFromConfig(cfg)
	a := New(org, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ps, err := Policies(Options{AllowedRegions: []string{"us-east-1", "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Apply(ctx, ps, o.OUs)
	if err != nil {
		t.Fatal(err)
	}
	// A second run changes nothing and creates no duplicates.
	second, err := a.Apply(ctx, ps, o.OUs)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("policy ids changed on re-apply (-first +second):\n%s", diff)
	}

	// Organizations attaches FullAWSAccess to every new OU; SCPs deny on
	// top of it.
	want := map[string]bool{"FullAWSAccess": true}
	for _, p := range ps {
		want[p.Name] = true
	}
	for _, path := range TenantOUs {
		out, err := org.ListPoliciesForTarget(ctx, &organizations.ListPoliciesForTargetInput{
			TargetId: aws.String(o.OUs[path]), Filter: orgtypes.PolicyTypeServiceControlPolicy,
		})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, s := range out.Policies {
			if got[aws.ToString(s.Name)] {
				t.Errorf("%s: %s attached twice", path, aws.ToString(s.Name))
			}
			got[aws.ToString(s.Name)] = true
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("SCPs on %s (-want +got):\n%s", path, diff)
		}
	}
	// Guardrails stay off OUs they do not target.
	out, err := org.ListPoliciesForTarget(ctx, &organizations.ListPoliciesForTargetInput{
		TargetId: aws.String(o.OUs[emulator.OUPool]), Filter: orgtypes.PolicyTypeServiceControlPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.Policies {
		if name := aws.ToString(s.Name); want[name] && name != "FullAWSAccess" {
			t.Errorf("%s attached to %s", aws.ToString(s.Name), emulator.OUPool)
		}
	}
}

func TestApplyUpdatesChangedContent(t *testing.T) {
	ctx := context.Background()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	org := organizations.NewFromConfig(cfg)
	a := New(org, slog.New(slog.NewTextHandler(io.Discard, nil)))
	before, _ := Policies(Options{AllowedRegions: []string{"us-east-1"}})
	if _, err := a.Apply(ctx, before, o.OUs); err != nil {
		t.Fatal(err)
	}
	after, _ := Policies(Options{AllowedRegions: []string{"us-east-1", "eu-central-1"}})
	ids, err := a.Apply(ctx, after, o.OUs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range after {
		d, err := org.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: aws.String(ids[p.Name])})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := p.JSON()
		if got := aws.ToString(d.Policy.Content); got != want {
			t.Errorf("%s content = %s, want %s", p.Name, got, want)
		}
	}
	list, err := org.ListPolicies(ctx, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Policies); n != len(after)+1 { // + FullAWSAccess
		t.Errorf("%d SCPs, want %d (ours plus FullAWSAccess)", n, len(after)+1)
	}
}
