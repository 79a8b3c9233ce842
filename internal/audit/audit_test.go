package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// recorder is a bus that remembers what it was told.
type recorder struct{ events chan string }

func (r *recorder) Publish(_ context.Context, kind string, t *registry.Tenant) {
	r.events <- kind + " " + t.ID
}

// TestIsolationAudit vends three tenants once and audits them: the healthy
// fleet passes with every cross-tenant attempt denied, then a tenant whose
// bucket policy is opened to another account, and one whose guardrail SCP
// is detached, fail with evidence and a violation event.
func TestIsolationAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := local.Wire(ctx, org, local.ControlOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"alpha", "bravo", "charlie"}
	tenants := map[string]*registry.Tenant{}
	for _, id := range ids {
		if _, _, err := c.Registry.Create(ctx, registry.Spec{
			ID: id, Name: id, Email: id + "@example.com", Tier: registry.TierBasic, Region: org.Region,
		}, "signup-"+id, "test"); err != nil {
			t.Fatal(err)
		}
		tn, err := c.Reconciler.Drive(ctx, id)
		if err != nil || tn.State != registry.StateActive {
			t.Fatalf("drive %s: %+v, %v", id, tn, err)
		}
		tenants[id] = tn
	}
	auditor, err := c.NewAuditor(log)
	if err != nil {
		t.Fatal(err)
	}
	bus := &recorder{events: make(chan string, 10)}
	direct, err := audit.New(audit.Deps{
		Registry: c.Registry, Management: c.Config, Accounts: c.Accounts, Stacks: c.StackSets,
		Enforcer: org, Events: bus, Log: log,
	}, audit.Options{
		ManagementAccountID: org.ManagementAccountID, OrganizationID: org.OrganizationID,
		OUs: org.OUs, Guardrails: c.Guardrails,
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("healthy fleet passes", func(t *testing.T) {
		fleet, err := auditor.Run(ctx, audit.RunOptions{Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if fleet.Passed != 3 || fleet.Failed != 0 || fleet.Errored != 0 {
			t.Errorf("fleet passed %d, failed %d, errored %d; want 3 passed", fleet.Passed, fleet.Failed, fleet.Errored)
		}
		for _, r := range fleet.Reports {
			var names []string
			for _, ch := range r.Checks {
				names = append(names, ch.Name)
				if ch.Status != audit.StatusPass {
					t.Errorf("%s: %s is %s: %s %+v", r.TenantID, ch.Name, ch.Status, ch.Summary, ch.Evidence)
				}
			}
			want := []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckKMSKeyPolicy,
				audit.CheckS3PublicAccess, audit.CheckAppRoleScope, audit.CheckCrossTenant}
			if !slices.Equal(names, want) {
				t.Errorf("%s: checks %v, want %v", r.TenantID, names, want)
			}
			checkProbes(t, r, tenants)
		}
		stored, err := auditor.Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != 3 || stored[0].TenantID != "alpha" || stored[0].Status != audit.StatusPass {
			t.Errorf("Reports = %d reports (first %+v), want alpha, bravo, charlie passing", len(stored), stored[0])
		}
		one, err := auditor.Report(ctx, "bravo")
		if err != nil || one.Status != audit.StatusPass || one.AccountID != tenants["bravo"].AccountID {
			t.Errorf("Report(bravo) = %+v, %v", one, err)
		}
		if _, err := auditor.Report(ctx, "nobody"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Report(nobody): %v, want ErrNotFound", err)
		}
		enforcementIsOff(t, ctx)
	})

	t.Run("bucket policy open to another account fails", func(t *testing.T) {
		alpha, other := tenants["alpha"], tenants["bravo"].AccountID
		member := c.Accounts.Config(alpha.AccountID)
		s3c := s3.NewFromConfig(member, func(o *s3.Options) { o.UsePathStyle = true })
		bucket := fmt.Sprintf("silo-alpha-%s-%s", alpha.AccountID, org.Region)
		policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"Oops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}`, other, bucket)
		if _, err := s3c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policy)}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := s3c.DeleteBucketPolicy(context.WithoutCancel(ctx), &s3.DeleteBucketPolicyInput{Bucket: aws.String(bucket)}); err != nil {
				t.Error(err)
			}
		}()
		fleet, err := direct.Run(ctx, audit.RunOptions{Tenants: []string{"alpha"}, Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if len(fleet.Reports) != 1 || fleet.Failed != 1 {
			t.Fatalf("fleet = %+v, want alpha failed", fleet)
		}
		r := fleet.Reports[0]
		ch := check(r, audit.CheckResourcePolicies)
		if r.Status != audit.StatusFail || ch.Status != audit.StatusFail || !strings.Contains(ch.Summary, other) {
			t.Errorf("report %s, %s = %s: %s; want failed naming account %s", r.Status, ch.Name, ch.Status, ch.Summary, other)
		}
		if !slices.ContainsFunc(ch.Evidence, func(e audit.Evidence) bool {
			return e.Call == "s3:GetBucketPolicy" && !e.OK && strings.Contains(e.Outcome, "Oops") && strings.Contains(e.Outcome, other)
		}) {
			t.Errorf("no evidence of the open statement: %+v", ch.Evidence)
		}
		for _, other := range r.Checks {
			if other.Name != audit.CheckResourcePolicies && other.Status != audit.StatusPass {
				t.Errorf("%s is %s: %s", other.Name, other.Status, other.Summary)
			}
		}
		violationRecorded(t, ctx, c.Registry, "alpha")
		select {
		case got := <-bus.events:
			if got != audit.EventViolation+" alpha" {
				t.Errorf("bus got %q, want %s alpha", got, audit.EventViolation)
			}
		default:
			t.Error("no violation published on the bus")
		}
		stored, err := auditor.Report(ctx, "alpha")
		if err != nil || stored.Status != audit.StatusFail {
			t.Errorf("stored report of alpha: %+v, %v; want the failed one", stored, err)
		}
		enforcementIsOff(t, ctx)
	})

	t.Run("wide app role and public bucket fail", func(t *testing.T) {
		bravo := tenants["bravo"]
		member := c.Accounts.Config(bravo.AccountID)
		im := iam.NewFromConfig(member)
		role := appRole(t, ctx, im)
		if _, err := im.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("wide"),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Sid":"Wide","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`)}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := im.DeleteRolePolicy(context.WithoutCancel(ctx), &iam.DeleteRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("wide")}); err != nil {
				t.Error(err)
			}
		}()
		s3c := s3.NewFromConfig(member, func(o *s3.Options) { o.UsePathStyle = true })
		bucket := fmt.Sprintf("silo-bravo-%s-%s", bravo.AccountID, org.Region)
		if _, err := s3c.DeletePublicAccessBlock(ctx, &s3.DeletePublicAccessBlockInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			on := aws.Bool(true)
			if _, err := s3c.PutPublicAccessBlock(context.WithoutCancel(ctx), &s3.PutPublicAccessBlockInput{Bucket: aws.String(bucket),
				PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: on, IgnorePublicAcls: on, BlockPublicPolicy: on, RestrictPublicBuckets: on}}); err != nil {
				t.Error(err)
			}
		}()
		fleet, err := auditor.Run(ctx, audit.RunOptions{Tenants: []string{"bravo"}, Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		r := fleet.Reports[0]
		if scope := check(r, audit.CheckAppRoleScope); scope.Status != audit.StatusFail || !strings.Contains(scope.Summary, "Wide") || !strings.Contains(scope.Summary, "resource *") {
			t.Errorf("app-role-scope %s: %s; want failed on statement Wide's * resource", scope.Status, scope.Summary)
		}
		if pab := check(r, audit.CheckS3PublicAccess); pab.Status != audit.StatusFail {
			t.Errorf("s3-public-access %s: %s; want failed", pab.Status, pab.Summary)
		}
		if r.Status != audit.StatusFail {
			t.Errorf("report %s, want fail", r.Status)
		}
		violationRecorded(t, ctx, c.Registry, "bravo")
	})

	t.Run("refused positive control is an error, not a pass", func(t *testing.T) {
		charlie := tenants["charlie"]
		im := iam.NewFromConfig(c.Accounts.Config(charlie.AccountID))
		role := appRole(t, ctx, im)
		names, err := im.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
		if err != nil || len(names.PolicyNames) != 1 {
			t.Fatalf("policies of %s: %v, %v; want one", role, names, err)
		}
		name := names.PolicyNames[0]
		doc, err := im.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := im.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			body, err := url.QueryUnescape(aws.ToString(doc.PolicyDocument))
			if err != nil {
				body = aws.ToString(doc.PolicyDocument)
			}
			if _, err := im.PutRolePolicy(context.WithoutCancel(ctx), &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name), PolicyDocument: aws.String(body)}); err != nil {
				t.Error(err)
			}
		}()
		fleet, err := auditor.Run(ctx, audit.RunOptions{Tenants: []string{"charlie"}, Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		r := fleet.Reports[0]
		probes := check(r, audit.CheckCrossTenant)
		if probes.Status != audit.StatusError || !strings.Contains(probes.Summary, "positive control") {
			t.Errorf("cross-tenant-probes %s: %s; want error for the refused positive control", probes.Status, probes.Summary)
		}
		if r.Status != audit.StatusError || fleet.Errored != 1 {
			t.Errorf("report %s (fleet errored %d), want error", r.Status, fleet.Errored)
		}
	})

	t.Run("detached guardrail fails", func(t *testing.T) {
		mgmt := organizations.NewFromConfig(c.Config)
		const name = "silo-deny-leave-organization"
		id := policyID(t, ctx, mgmt, name)
		ou := org.OUs[emulator.OUProduction]
		if _, err := mgmt.DetachPolicy(ctx, &organizations.DetachPolicyInput{PolicyId: aws.String(id), TargetId: aws.String(ou)}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := mgmt.AttachPolicy(context.WithoutCancel(ctx), &organizations.AttachPolicyInput{PolicyId: aws.String(id), TargetId: aws.String(ou)}); err != nil {
				t.Error(err)
			}
		}()
		fleet, err := auditor.Run(ctx, audit.RunOptions{Tenants: []string{"charlie"}, Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		r := fleet.Reports[0]
		ch := check(r, audit.CheckGuardrails)
		if r.Status != audit.StatusFail || ch.Status != audit.StatusFail || !strings.Contains(ch.Summary, name) {
			t.Errorf("report %s, guardrails %s: %s; want failed naming %s", r.Status, ch.Status, ch.Summary, name)
		}
		if !slices.ContainsFunc(ch.Evidence, func(e audit.Evidence) bool { return e.Target == name && !e.OK && e.Outcome == "not attached" }) {
			t.Errorf("no evidence of the detached policy: %+v", ch.Evidence)
		}
		violationRecorded(t, ctx, c.Registry, "charlie")
	})
}

// checkProbes asserts that every cross-tenant attempt was denied with an
// access-denied code, on the ring partner's resources, and that the
// positive controls were allowed.
func checkProbes(t *testing.T, r audit.Report, tenants map[string]*registry.Tenant) {
	t.Helper()
	ch := check(r, audit.CheckCrossTenant)
	partner := map[string]string{"alpha": "bravo", "bravo": "charlie", "charlie": "alpha"}[r.TenantID]
	var denied, allowed int
	calls := map[string]bool{}
	for _, e := range ch.Evidence {
		switch e.Expected {
		case "denied":
			denied++
			calls[e.Call] = true
			if e.Outcome != "AccessDenied" && e.Outcome != "AccessDeniedException" {
				t.Errorf("%s: %s on %s: outcome %q, want an access-denied code", r.TenantID, e.Call, e.Target, e.Outcome)
			}
		case "allowed":
			allowed++
			if !e.OK || !strings.Contains(e.Target, tenants[r.TenantID].AccountID) {
				t.Errorf("%s: positive control %s on %s: %s", r.TenantID, e.Call, e.Target, e.Outcome)
			}
		}
	}
	for _, want := range []string{"dynamodb:GetItem", "dynamodb:PutItem", "s3:GetObject", "s3:PutObject", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "kms:DescribeKey", "kms:Encrypt", "organizations:ListAccounts"} {
		if !calls[want] {
			t.Errorf("%s: no %s attempt", r.TenantID, want)
		}
	}
	if !slices.ContainsFunc(ch.Evidence, func(e audit.Evidence) bool {
		return e.Expected == "denied" && strings.Contains(e.Target, tenants[partner].AccountID)
	}) {
		t.Errorf("%s: no attempt on %s's resources", r.TenantID, partner)
	}
	if !slices.ContainsFunc(ch.Evidence, func(e audit.Evidence) bool {
		return e.Expected == "denied" && strings.HasSuffix(e.Target, ":table/"+registry.DefaultTable)
	}) {
		t.Errorf("%s: no attempt on the registry table", r.TenantID)
	}
	if denied < 11 || allowed < 2 {
		t.Errorf("%s: %d denied and %d allowed attempts, want at least 11 and 2", r.TenantID, denied, allowed)
	}
}

func check(r audit.Report, name string) audit.Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return audit.Check{}
}

func violationRecorded(t *testing.T, ctx context.Context, reg *registry.Store, id string) {
	t.Helper()
	events, err := reg.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e registry.Event) bool { return e.Type == audit.EventViolation && e.Actor == "test" }) {
		t.Errorf("%s: no %s event in %+v", id, audit.EventViolation, events)
	}
}

// enforcementIsOff: moto refuses unknown access keys only while it
// enforces IAM.
func enforcementIsOff(t *testing.T, ctx context.Context) {
	t.Helper()
	cfg, err := awsx.Load(ctx, awsx.Options{Endpoint: emu.Endpoint, Region: emulator.Region, AccessKeyID: "unknown", SecretAccessKey: "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Errorf("IAM enforcement left on after the audit: %v", err)
	}
}

// appRole is the name of the tenant's function role.
func appRole(t *testing.T, ctx context.Context, im *iam.Client) string {
	t.Helper()
	out, err := im.ListRoles(ctx, &iam.ListRolesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Roles {
		if strings.Contains(aws.ToString(r.RoleName), "FunctionRole") {
			return aws.ToString(r.RoleName)
		}
	}
	t.Fatal("no function role")
	return ""
}

func policyID(t *testing.T, ctx context.Context, org *organizations.Client, name string) string {
	t.Helper()
	out, err := org.ListPolicies(ctx, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range out.Policies {
		if aws.ToString(p.Name) == name {
			return aws.ToString(p.Id)
		}
	}
	t.Fatalf("no SCP named %s", name)
	return ""
}
