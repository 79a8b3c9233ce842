package guardrails

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
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
	// top of it. Each OU gets exactly the policies that target it, and the
	// pool none of them.
	for _, path := range append(slices.Clone(TenantOUs), emulator.OUPool) {
		want := map[string]bool{"FullAWSAccess": true}
		for _, p := range ps {
			if slices.Contains(p.Targets, path) {
				want[p.Name] = true
			}
		}
		if diff := cmp.Diff(want, attachedNames(ctx, t, org, o.OUs[path])); diff != "" {
			t.Errorf("SCPs on %s (-want +got):\n%s", path, diff)
		}
	}
}

// attachedNames returns the names of the SCPs attached directly to target,
// failing the test if one is attached twice.
func attachedNames(ctx context.Context, t *testing.T, org *organizations.Client, target string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	p := organizations.NewListPoliciesForTargetPaginator(org, &organizations.ListPoliciesForTargetInput{
		TargetId: aws.String(target), Filter: orgtypes.PolicyTypeServiceControlPolicy,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Policies {
			name := aws.ToString(s.Name)
			if got[name] {
				t.Errorf("%s attached twice to %s", name, target)
			}
			got[name] = true
		}
	}
	return got
}

func TestApplySpendGuardOnPreviewOnly(t *testing.T) {
	ctx := context.Background()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	org := organizations.NewFromConfig(cfg)
	rec := &recordingOrg{org: org}
	a := New(rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ps, err := Policies(Options{AllowedRegions: []string{"eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := a.Apply(ctx, ps, o.OUs)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := ids[PreviewSpendGuard]
	if !ok {
		t.Fatalf("Apply returned no id for %s: %v", PreviewSpendGuard, ids)
	}
	onPreview := attachedNames(ctx, t, org, o.OUs[OUPreview])
	onProduction := attachedNames(ctx, t, org, o.OUs[OUProduction])
	if !onPreview[PreviewSpendGuard] {
		t.Errorf("%s not attached to %s: %v", PreviewSpendGuard, OUPreview, onPreview)
	}
	if onProduction[PreviewSpendGuard] {
		t.Errorf("%s attached to %s", PreviewSpendGuard, OUProduction)
	}
	// Preview accounts keep every guardrail production has.
	for name := range onProduction {
		if !onPreview[name] {
			t.Errorf("%s on %s but not on %s", name, OUProduction, OUPreview)
		}
	}
	d, err := org.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := spendGuard().JSON()
	if got := aws.ToString(d.Policy.Content); got != want {
		t.Errorf("stored content = %s, want %s", got, want)
	}

	// Applying again writes nothing and returns the same ids.
	if len(rec.writes) == 0 {
		t.Fatal("the first apply recorded no writes: the recorder is not in the path")
	}
	rec.writes = nil
	again, err := a.Apply(ctx, ps, o.OUs)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if diff := cmp.Diff(ids, again); diff != "" {
		t.Errorf("policy ids changed on re-apply (-first +second):\n%s", diff)
	}
	if len(rec.writes) != 0 {
		t.Errorf("second apply wrote %v, want nothing", rec.writes)
	}
	if diff := cmp.Diff(onPreview, attachedNames(ctx, t, org, o.OUs[OUPreview])); diff != "" {
		t.Errorf("SCPs on %s changed on re-apply (-first +second):\n%s", OUPreview, diff)
	}
	if diff := cmp.Diff(onProduction, attachedNames(ctx, t, org, o.OUs[OUProduction])); diff != "" {
		t.Errorf("SCPs on %s changed on re-apply (-first +second):\n%s", OUProduction, diff)
	}
}

// recordingOrg passes every call to the emulator and records the ones that
// change something, so a test can prove a re-apply is a no-op.
type recordingOrg struct {
	org    *organizations.Client
	writes []string
}

func (r *recordingOrg) ListPolicies(ctx context.Context, in *organizations.ListPoliciesInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesOutput, error) {
	return r.org.ListPolicies(ctx, in, opts...)
}

func (r *recordingOrg) DescribePolicy(ctx context.Context, in *organizations.DescribePolicyInput, opts ...func(*organizations.Options)) (*organizations.DescribePolicyOutput, error) {
	return r.org.DescribePolicy(ctx, in, opts...)
}

func (r *recordingOrg) ListPoliciesForTarget(ctx context.Context, in *organizations.ListPoliciesForTargetInput, opts ...func(*organizations.Options)) (*organizations.ListPoliciesForTargetOutput, error) {
	return r.org.ListPoliciesForTarget(ctx, in, opts...)
}

func (r *recordingOrg) CreatePolicy(ctx context.Context, in *organizations.CreatePolicyInput, opts ...func(*organizations.Options)) (*organizations.CreatePolicyOutput, error) {
	r.writes = append(r.writes, "CreatePolicy "+aws.ToString(in.Name))
	return r.org.CreatePolicy(ctx, in, opts...)
}

func (r *recordingOrg) UpdatePolicy(ctx context.Context, in *organizations.UpdatePolicyInput, opts ...func(*organizations.Options)) (*organizations.UpdatePolicyOutput, error) {
	r.writes = append(r.writes, "UpdatePolicy "+aws.ToString(in.PolicyId))
	return r.org.UpdatePolicy(ctx, in, opts...)
}

func (r *recordingOrg) AttachPolicy(ctx context.Context, in *organizations.AttachPolicyInput, opts ...func(*organizations.Options)) (*organizations.AttachPolicyOutput, error) {
	r.writes = append(r.writes, "AttachPolicy "+aws.ToString(in.PolicyId)+" "+aws.ToString(in.TargetId))
	return r.org.AttachPolicy(ctx, in, opts...)
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

// TestReconcileReportsChanges checks what Reconcile says it did: created
// and attached on the first run, nothing on a repeat, only the region
// guardrail updated when the regions change.
func TestReconcileReportsChanges(t *testing.T) {
	ctx := t.Context()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := New(organizations.NewFromConfig(cfg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	before, _ := Policies(Options{AllowedRegions: []string{"us-east-1"}})
	after, _ := Policies(Options{AllowedRegions: []string{"us-east-1", "eu-central-1"}})

	want := func(ps []Policy, ids map[string]string, change func(Policy) Change, attached func(Policy) []string) []Result {
		var out []Result
		for _, p := range ps {
			out = append(out, Result{Name: p.Name, ID: ids[p.Name], Change: change(p), Targets: p.Targets, Attached: attached(p)})
		}
		return out
	}
	none := func(Policy) []string { return []string{} }
	first, err := a.Reconcile(ctx, before, o.OUs)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range first {
		ids[r.Name] = r.ID
	}
	steps := []struct {
		name     string
		ps       []Policy
		got      []Result
		change   func(Policy) Change
		attached func(Policy) []string
	}{
		{"first run", before, first, func(Policy) Change { return Created }, func(p Policy) []string { return p.Targets }},
		{"repeat", before, nil, func(Policy) Change { return Unchanged }, none},
		{"new region", after, nil, func(p Policy) Change {
			if p.Name == "silo-allowed-regions" {
				return Updated
			}
			return Unchanged
		}, none},
	}
	for _, s := range steps {
		got := s.got
		if got == nil {
			if got, err = a.Reconcile(ctx, s.ps, o.OUs); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if diff := cmp.Diff(want(s.ps, ids, s.change, s.attached), got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}
