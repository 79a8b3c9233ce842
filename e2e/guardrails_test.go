package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/guardrails"
)

// TestGuardrailsApply runs `silo guardrails apply` as an operator would
// against the management account: credentials and endpoint only through the
// SDK's standard chain. On a new organization (SCPs not enabled) it enables
// them, creates every guardrail and attaches each exactly to its OUs; a
// second run changes nothing; bad regions are usage errors that touch
// nothing, and a missing OU fails naming it.
func TestGuardrailsApply(t *testing.T) {
	bin := buildSilo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	orgc := organizations.NewFromConfig(cfg)
	// Seeding enables SCPs; a new organization has them off.
	if _, err := orgc.DisablePolicyType(ctx, &organizations.DisablePolicyTypeInput{
		RootId: aws.String(org.RootID), PolicyType: orgtypes.PolicyTypeServiceControlPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	env := chainEnv(t, org)
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"guardrails", "apply"}, args...)...)
		cmd.Env = env
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		code = exitCode(cmd.Run())
		return out.String(), errb.String(), code
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no regions", nil, "--allowed-regions is required"},
		{"unknown region", []string{"--allowed-regions", "us-east-1,mars-1"}, `unknown region "mars-1"`},
		{"empty region", []string{"--allowed-regions", "us-east-1,,eu-west-1"}, "empty region"},
	} {
		out, stderr, code := run(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q, want exit 2 and %q\n%s", c.name, code, stderr, c.want, out)
		}
	}
	if got := scpIDs(ctx, t, orgc); len(got) != 1 { // FullAWSAccess
		t.Fatalf("usage errors left SCPs behind: %v", got)
	}

	regions := []string{"us-east-1", "eu-west-1"}
	want, err := guardrails.Policies(guardrails.Options{AllowedRegions: regions})
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run("--allowed-regions", strings.Join(regions, ","), "--json")
	if code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, stderr)
	}
	var first struct {
		Account     string              `json:"account"`
		EnabledSCPs bool                `json:"enabledSCPs"`
		Policies    []guardrails.Result `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatalf("first apply printed no JSON: %v\n%s", err, out)
	}
	if first.Account != org.ManagementAccountID || !first.EnabledSCPs {
		t.Errorf("first apply: account %s, enabledSCPs %v; want %s, true", first.Account, first.EnabledSCPs, org.ManagementAccountID)
	}
	for _, r := range first.Policies {
		if r.Change != guardrails.Created || !slices.Equal(r.Attached, r.Targets) {
			t.Errorf("first apply: %s %s, attached to %v of %v; want created and attached to all", r.Name, r.Change, r.Attached, r.Targets)
		}
	}
	if root := rootSCPStatus(ctx, t, orgc); root != orgtypes.PolicyTypeStatusEnabled {
		t.Errorf("SCPs on the root: %q, want ENABLED", root)
	}
	ids := checkGuardrails(ctx, t, orgc, org, want)
	printed := map[string]string{}
	for _, r := range first.Policies {
		printed[r.Name] = r.ID
	}
	for _, p := range want {
		if printed[p.Name] != ids[p.Name] {
			t.Errorf("first apply printed id %q for %s, the organization has %q", printed[p.Name], p.Name, ids[p.Name])
		}
	}

	// Again, with the regions in another order: the same policies.
	out, stderr, code = run("--allowed-regions", "eu-west-1,us-east-1")
	if code != 0 {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, stderr)
	}
	summary := fmt.Sprintf("%d guardrails in account %s for eu-west-1, us-east-1: 0 created, 0 updated, %d unchanged; 0 attachments made",
		len(want), org.ManagementAccountID, len(want))
	if !strings.Contains(out, summary) || strings.Contains(out, "enabled service control policies") {
		t.Errorf("second apply printed\n%s\nwant the line %q and no enabling", out, summary)
	}
	if diff := cmp.Diff(ids, checkGuardrails(ctx, t, orgc, org, want)); diff != "" {
		t.Errorf("policy ids changed on the second apply (-first +second):\n%s", diff)
	}

	// An organization without one of the OUs: exit 1 naming it.
	if _, err := orgc.DeleteOrganizationalUnit(ctx, &organizations.DeleteOrganizationalUnitInput{
		OrganizationalUnitId: aws.String(org.OUs[emulator.OUPreview]),
	}); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code = run("--allowed-regions", "us-east-1"); code != 1 || !strings.Contains(stderr, guardrails.OUPreview) {
		t.Errorf("missing OU: exit %d, stderr %q; want exit 1 naming %s\n%s", code, stderr, guardrails.OUPreview, out)
	}
}

// chainEnv is an environment in which the SDK's standard chain finds the
// seeded management account and nothing of the developer's own AWS setup.
func chainEnv(t *testing.T, org *emulator.Org) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, awsx.EndpointEnv+"=") {
			env = append(env, kv)
		}
	}
	none := filepath.Join(t.TempDir(), "none")
	return append(env,
		awsx.EndpointEnv+"="+org.Endpoint,
		"AWS_ACCESS_KEY_ID="+org.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+org.SecretAccessKey,
		"AWS_REGION="+org.Region,
		"AWS_CONFIG_FILE="+none,
		"AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// checkGuardrails checks that each policy of want exists once, with the
// content Policies gives, attached to exactly its target OUs, and returns
// their ids by name.
func checkGuardrails(ctx context.Context, t *testing.T, orgc *organizations.Client, org *emulator.Org, want []guardrails.Policy) map[string]string {
	t.Helper()
	ids := scpIDs(ctx, t, orgc)
	for _, p := range want {
		id, ok := ids[p.Name]
		if !ok {
			t.Errorf("no SCP named %s", p.Name)
			continue
		}
		d, err := orgc.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		content, _ := p.JSON()
		if got := aws.ToString(d.Policy.Content); got != content {
			t.Errorf("%s content = %s, want %s", p.Name, got, content)
		}
		var wantTargets, gotTargets []string
		for _, path := range p.Targets {
			wantTargets = append(wantTargets, org.OUs[path])
		}
		pages := organizations.NewListTargetsForPolicyPaginator(orgc, &organizations.ListTargetsForPolicyInput{PolicyId: aws.String(id)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range page.Targets {
				gotTargets = append(gotTargets, aws.ToString(tg.TargetId))
			}
		}
		slices.Sort(wantTargets)
		slices.Sort(gotTargets)
		if diff := cmp.Diff(wantTargets, gotTargets); diff != "" {
			t.Errorf("%s targets (-want +got):\n%s", p.Name, diff)
		}
	}
	return ids
}

// scpIDs returns the ids of the organization's SCPs by name, failing the
// test if a name is used twice.
func scpIDs(ctx context.Context, t *testing.T, orgc *organizations.Client) map[string]string {
	t.Helper()
	ids := map[string]string{}
	pages := organizations.NewListPoliciesPaginator(orgc, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Policies {
			name := aws.ToString(s.Name)
			if _, dup := ids[name]; dup {
				t.Errorf("two SCPs named %s", name)
			}
			ids[name] = aws.ToString(s.Id)
		}
	}
	return ids
}

func rootSCPStatus(ctx context.Context, t *testing.T, orgc *organizations.Client) orgtypes.PolicyTypeStatus {
	t.Helper()
	roots, err := orgc.ListRoots(ctx, &organizations.ListRootsInput{})
	if err != nil || len(roots.Roots) == 0 {
		t.Fatalf("list roots: %v", err)
	}
	for _, pt := range roots.Roots[0].PolicyTypes {
		if pt.Type == orgtypes.PolicyTypeServiceControlPolicy {
			return pt.Status
		}
	}
	return ""
}
