package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/registry"
)

// outsider is an account outside the organization that a broken bucket
// policy opens a tenant's bucket to.
const outsider = "444455556666"

// allChecks are the checks of every isolation report, in order.
var allChecks = []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckKMSKeyPolicy,
	audit.CheckS3PublicAccess, audit.CheckAppRoleScope, audit.CheckCrossTenant}

// checkIsolationAudit runs the isolation audit through the CLI of a running
// silo local whose only ACTIVE tenant is first: it signs a second tenant
// up, finds both isolated, reads a stored report back (CLI, and the API
// as a viewer), then opens the second tenant's bucket to an outside
// account from outside silo, as a careless engineer would, and finds that
// tenant failing with the evidence, the event on its trail and at the top
// of the console's Isolation page, while first still passes. Last, a
// guardrail SCP detached from Tenants/Production fails first too.
func checkIsolationAudit(ctx context.Context, t *testing.T, bin string, info local.Info, cfg aws.Config, first *registry.Tenant) {
	t.Helper()
	auth := []string{"--api", info.API, "--token", info.AdminToken}
	var second api.TenantView
	runCLI(ctx, t, bin, &second, "signup", "--api", info.API, "--name", "Initrode", "--email", "ops@initrode.example",
		"--tier", "basic", "--region", info.Region, "--key", "e2e-initrode-"+api.NewIdempotencyKey(), "--wait", "--json")
	if second.State != registry.StateActive || second.AccountID == "" {
		t.Fatalf("silo signup --wait ended with %+v", second)
	}

	// A healthy fleet: exit 0, both tenants pass every check.
	var fleet audit.Fleet
	runCLI(ctx, t, bin, &fleet, append([]string{"audit", "isolation", "--json"}, auth...)...)
	if fleet.Passed != 2 || fleet.Failed != 0 || fleet.Errored != 0 || len(fleet.Reports) != 2 {
		t.Fatalf("audit of a healthy fleet: passed %d, failed %d, errored %d, %d reports; want 2 passed\n%s",
			fleet.Passed, fleet.Failed, fleet.Errored, len(fleet.Reports), reportsText(fleet.Reports))
	}
	accounts := map[string]string{first.ID: first.AccountID, second.ID: second.AccountID}
	for _, r := range fleet.Reports {
		if r.Status != audit.StatusPass || !slices.Equal(checkNames(r), allChecks) || slices.ContainsFunc(r.Checks, notPassed) {
			t.Errorf("healthy tenant %s: %s\n%s", r.TenantID, r.Status, reportsText([]audit.Report{r}))
		}
		// Two tenants probe each other.
		partner := first.ID
		if r.TenantID == first.ID {
			partner = second.ID
		}
		checkProbed(t, r, accounts[r.TenantID], accounts[partner], info.RegistryTable)
	}
	t.Logf("isolation audit of a healthy fleet of 2: %s", fleet.FinishedAt.Sub(fleet.StartedAt))
	healthy := fleet.Reports[slices.IndexFunc(fleet.Reports, func(r audit.Report) bool { return r.TenantID == second.ID })]

	// The stored report, as the CLI shows it and as a viewer reads it.
	var shown audit.Report
	runCLI(ctx, t, bin, &shown, append([]string{"audit", "show", second.ID, "--json"}, auth...)...)
	if d := cmp.Diff(healthy, shown); d != "" {
		t.Errorf("silo audit show differs from the run's report (-run +show):\n%s", d)
	}
	if info.ViewerToken == "" {
		t.Fatal("ready file lacks the viewer token")
	}
	viewer, err := api.NewClient(info.API, info.ViewerToken)
	if err != nil {
		t.Fatal(err)
	}
	read, err := viewer.IsolationReport(ctx, second.ID)
	if err != nil {
		t.Fatalf("GET /v1/tenants/%s/isolation as a viewer: %v", second.ID, err)
	}
	if d := cmp.Diff(healthy, *read); d != "" {
		t.Errorf("the viewer's report differs from the run's (-run +viewer):\n%s", d)
	}
	var apiErr *api.Error
	if _, err := viewer.AuditIsolation(ctx, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Errorf("a viewer runs the audit: %v, want 403", err)
	}

	// Break the second tenant from outside silo: with the emulator's
	// management credentials, into its account, a bucket policy that lets
	// an outside account read everything.
	member := awsx.NewAccounts(cfg, sts.NewFromConfig(cfg), awsx.AccountsOptions{}).Config(second.AccountID)
	s3c := s3.NewFromConfig(member, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := tenantBucket(ctx, t, s3c, second.ID)
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"PartnerRead","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}`, outsider, bucket)
	if _, err := s3c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policy)}); err != nil {
		t.Fatalf("open bucket %s: %v", bucket, err)
	}

	// The audit now exits 1, with the whole run still printed.
	cmd := exec.CommandContext(ctx, bin, append([]string{"audit", "isolation", "--json"}, auth...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if code := exitCode(err); code != 1 {
		t.Fatalf("audit of a broken tenant: exit %d, want 1\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "1 of 2 tenants did not pass") {
		t.Errorf("audit of a broken tenant says on stderr: %s", stderr.String())
	}
	fleet = audit.Fleet{}
	if err := json.Unmarshal(out, &fleet); err != nil {
		t.Fatalf("audit of a broken tenant printed no JSON: %v\n%s", err, out)
	}
	t.Logf("isolation audit with a broken tenant: %s", fleet.FinishedAt.Sub(fleet.StartedAt))
	if fleet.Passed != 1 || fleet.Failed != 1 || fleet.Errored != 0 {
		t.Errorf("audit of a broken tenant: passed %d, failed %d, errored %d; want 1 and 1\n%s",
			fleet.Passed, fleet.Failed, fleet.Errored, reportsText(fleet.Reports))
	}
	for _, r := range fleet.Reports {
		switch r.TenantID {
		case first.ID:
			if r.Status != audit.StatusPass || slices.ContainsFunc(r.Checks, notPassed) {
				t.Errorf("the intact tenant %s no longer passes:\n%s", r.TenantID, reportsText([]audit.Report{r}))
			}
		case second.ID:
			checkBroken(t, r, bucket)
		default:
			t.Errorf("report of an unexpected tenant %s", r.TenantID)
		}
	}

	// The violation is on the tenant's trail, by the operator who ran it.
	var events api.EventList
	runCLI(ctx, t, bin, &events, append([]string{"tenants", "events", second.ID, "--json"}, auth...)...)
	if !slices.ContainsFunc(events.Events, func(e registry.Event) bool {
		return e.Type == audit.EventViolation && e.Actor == "operator:local-admin" && strings.Contains(e.Reason, audit.CheckResourcePolicies)
	}) {
		t.Errorf("no %s event by the operator naming %s on %s: %+v", audit.EventViolation, audit.CheckResourcePolicies, second.ID, events.Events)
	}
	var firstEvents api.EventList
	runCLI(ctx, t, bin, &firstEvents, append([]string{"tenants", "events", first.ID, "--json"}, auth...)...)
	if slices.ContainsFunc(firstEvents.Events, func(e registry.Event) bool { return e.Type == audit.EventViolation }) {
		t.Errorf("the intact tenant %s has a violation event: %+v", first.ID, firstEvents.Events)
	}

	// IAM enforcement, on in the emulator while the probes ran, refused
	// none of the tenant apps' own calls: no health change blames a denial.
	for _, evs := range [][]registry.Event{events.Events, firstEvents.Events} {
		for _, e := range evs {
			if e.Type == probe.EventHealthChanged && strings.Contains(strings.ToLower(e.Detail["detail"]), "denied") {
				t.Errorf("tenant %s's health changed on a refusal during an audit: %+v", e.TenantID, e)
			}
		}
	}

	// The console's Isolation page: the failing tenant first, with the
	// evidence; the intact one after it, passing.
	get := loginConsole(ctx, t, info, info.ViewerToken)
	code, body := get("/isolation")
	rows := regexp.MustCompile(`<tr data-tenant="([^"]+)" data-status="([^"]+)">`).FindAllStringSubmatch(body, -1)
	want := [][]string{{second.ID, "fail"}, {first.ID, "pass"}}
	var got [][]string
	for _, m := range rows {
		got = append(got, m[1:])
	}
	if code != http.StatusOK || !cmp.Equal(got, want) {
		t.Errorf("console /isolation: %d, rows %v, want %v\n%s", code, got, want, body)
	}
	_, failures, found := strings.Cut(body, `id="isolation-failures"`)
	if !found || !strings.Contains(failures, `data-tenant="`+second.ID+`"`) || !strings.Contains(failures, "s3:GetBucketPolicy") ||
		!strings.Contains(failures, outsider) || strings.Contains(failures, `data-tenant="`+first.ID+`"`) {
		t.Errorf("console /isolation does not show the failing evidence of %s alone:\n%s", second.ID, body)
	}

	// A guardrail detached from Tenants/Production, as the console of
	// Organizations allows an administrator: the intact tenant fails too,
	// and the table a person reads says which SCP.
	orgc := organizations.NewFromConfig(cfg)
	scp := policyID(ctx, t, orgc, guardrailDetached)
	ou := info.OUs[guardrails.OUProduction]
	if _, err := orgc.DetachPolicy(ctx, &organizations.DetachPolicyInput{PolicyId: aws.String(scp), TargetId: aws.String(ou)}); err != nil {
		t.Fatalf("detach %s from %s: %v", guardrailDetached, ou, err)
	}
	out, err = exec.CommandContext(ctx, bin, append([]string{"audit", "isolation", "--tenant", first.ID}, auth...)...).CombinedOutput()
	text := string(out)
	if code := exitCode(err); code != 1 || !regexp.MustCompile(`(?m)^`+first.ID+`\s+\d{12}\s+FAIL\s+pass\s+FAIL\s+`).MatchString(text) ||
		!strings.Contains(text, first.ID+" guardrails: FAIL: "+guardrailDetached+": not attached") ||
		!strings.Contains(text, "audited 1 tenant ") || strings.Contains(text, second.ID) {
		t.Errorf("audit of %s without guardrail %s: exit %d, want 1 and the guardrail failing\n%s", first.ID, guardrailDetached, code, text)
	}
	if _, err := orgc.AttachPolicy(ctx, &organizations.AttachPolicyInput{PolicyId: aws.String(scp), TargetId: aws.String(ou)}); err != nil {
		t.Fatalf("attach %s to %s again: %v", guardrailDetached, ou, err)
	}
}

// guardrailDetached is the guardrail SCP a test detaches.
const guardrailDetached = "silo-deny-leave-organization"

// policyID finds an SCP by name.
func policyID(ctx context.Context, t *testing.T, orgc *organizations.Client, name string) string {
	t.Helper()
	p := organizations.NewListPoliciesPaginator(orgc, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, pol := range page.Policies {
			if aws.ToString(pol.Name) == name {
				return aws.ToString(pol.Id)
			}
		}
	}
	t.Fatalf("no SCP named %s", name)
	return ""
}

// checkBroken finds r failing on its resource policies alone, the evidence
// quoting the statement that opens the bucket to the outsider.
func checkBroken(t *testing.T, r audit.Report, bucket string) {
	t.Helper()
	if r.Status != audit.StatusFail {
		t.Errorf("broken tenant %s: %s, want fail\n%s", r.TenantID, r.Status, reportsText([]audit.Report{r}))
		return
	}
	for _, c := range r.Checks {
		if c.Name != audit.CheckResourcePolicies {
			if c.Status != audit.StatusPass {
				t.Errorf("broken tenant %s: %s is %s (%s), want only %s failing", r.TenantID, c.Name, c.Status, c.Summary, audit.CheckResourcePolicies)
			}
			continue
		}
		if c.Status != audit.StatusFail || !strings.Contains(c.Summary, bucket) || !strings.Contains(c.Summary, outsider) {
			t.Errorf("broken tenant %s: %s %s: %q, want a failure naming %s and %s", r.TenantID, c.Name, c.Status, c.Summary, bucket, outsider)
		}
		if !slices.ContainsFunc(c.Evidence, func(e audit.Evidence) bool {
			return e.Call == "s3:GetBucketPolicy" && !e.OK && strings.Contains(e.Target, bucket) &&
				strings.Contains(e.Outcome, "PartnerRead") && strings.Contains(e.Outcome, outsider)
		}) {
			t.Errorf("broken tenant %s: no evidence of statement PartnerRead: %+v", r.TenantID, c.Evidence)
		}
	}
}

// checkProbed finds in r's cross-tenant probes the positive controls on
// the tenant's own account allowed, and every attempt on the partner's
// account and the registry table refused with an access-denied code.
func checkProbed(t *testing.T, r audit.Report, own, partner, registryTable string) {
	t.Helper()
	i := slices.IndexFunc(r.Checks, func(c audit.Check) bool { return c.Name == audit.CheckCrossTenant })
	if i < 0 {
		t.Errorf("%s: no %s check", r.TenantID, audit.CheckCrossTenant)
		return
	}
	calls := map[string]bool{}
	var allowed, onPartner, onRegistry int
	for _, e := range r.Checks[i].Evidence {
		switch e.Expected {
		case "allowed":
			if !e.OK || !strings.Contains(e.Target, own) {
				t.Errorf("%s: positive control %s on %s: %s", r.TenantID, e.Call, e.Target, e.Outcome)
			}
			allowed++
		case "denied":
			if !e.OK || (e.Outcome != "AccessDenied" && e.Outcome != "AccessDeniedException") {
				t.Errorf("%s: %s on %s: %s, want an access-denied code", r.TenantID, e.Call, e.Target, e.Outcome)
			}
			calls[e.Call] = true
			switch {
			case strings.Contains(e.Target, partner): // bucket names hold the account too
				onPartner++
			case strings.HasSuffix(e.Target, ":table/"+registryTable):
				onRegistry++
			}
		}
	}
	for _, want := range []string{"dynamodb:GetItem", "dynamodb:PutItem", "s3:GetObject", "s3:PutObject", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "kms:DescribeKey", "kms:Encrypt", "organizations:ListAccounts"} {
		if !calls[want] {
			t.Errorf("%s: no denied %s attempt", r.TenantID, want)
		}
	}
	if allowed < 2 || onPartner < 8 || onRegistry < 2 {
		t.Errorf("%s: %d positive controls, %d attempts on the partner's account, %d on the registry; want at least 2, 8 and 2",
			r.TenantID, allowed, onPartner, onRegistry)
	}
}

// tenantBucket finds the bucket of a tenant's stack in its account.
func tenantBucket(ctx context.Context, t *testing.T, s3c *s3.Client, id string) string {
	t.Helper()
	out, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range out.Buckets {
		if name := aws.ToString(b.Name); strings.HasPrefix(name, "silo-"+id+"-") {
			return name
		}
	}
	t.Fatalf("no bucket of tenant %s in its account: %+v", id, out.Buckets)
	return ""
}

func notPassed(c audit.Check) bool { return c.Status != audit.StatusPass }

func checkNames(r audit.Report) []string {
	var out []string
	for _, c := range r.Checks {
		out = append(out, c.Name)
	}
	return out
}

// reportsText is reports as a failure message shows them: each check's
// verdict and summary, and the evidence that failed.
func reportsText(reports []audit.Report) string {
	var b strings.Builder
	for _, r := range reports {
		fmt.Fprintf(&b, "%s (%s): %s\n", r.TenantID, r.AccountID, r.Status)
		for _, c := range r.Checks {
			fmt.Fprintf(&b, "  %s %s: %s\n", c.Name, c.Status, c.Summary)
			for _, e := range c.Evidence {
				if !e.OK {
					fmt.Fprintf(&b, "    - %s %s: expected %s, got %s\n", e.Call, e.Target, e.Expected, e.Outcome)
				}
			}
		}
	}
	return b.String()
}
