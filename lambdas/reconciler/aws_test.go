package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// TestAuditorFromEnvironment builds the real auditor as the Lambda does
// (the environment points the SDK's standard chain at the emulator) and
// runs the daily task: over an empty registry, then over one tenant whose
// account sits in Tenants/Production under the guardrails silo wrote for
// the same regions, which the OU and guardrail checks must find.
func TestAuditorFromEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(awsx.EndpointEnv, org.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", org.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", org.SecretAccessKey)
	t.Setenv("AWS_REGION", org.Region)
	reg := registry.New(dynamodb.NewFromConfig(cfg), "silo-registry")
	if err := reg.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SILO_REGISTRY_TABLE": reg.Table(), "SILO_EVENT_BUS": "silo-events",
		"SILO_ORGANIZATION_ID": org.OrganizationID, "SILO_ALLOWED_REGIONS": "us-east-1,eu-west-1",
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	event := json.RawMessage(`{"task":"audit-isolation"}`)

	t.Run("bad regions", func(t *testing.T) {
		l := &lazyAuditor{log: log, env: func(k string) string {
			if k == "SILO_ALLOWED_REGIONS" {
				return "us-east-1,mars-1"
			}
			return env[k]
		}}
		if _, err := handle(ctx, event, l); err == nil || !strings.Contains(err.Error(), "SILO_ALLOWED_REGIONS") || !strings.Contains(err.Error(), "mars-1") {
			t.Errorf("error %v, want the bad region named", err)
		}
	})

	l := &lazyAuditor{log: log, env: func(k string) string { return env[k] }}
	res, err := handle(ctx, event, l)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&AuditResult{Task: TaskAuditIsolation, Failing: []string{}}, res); diff != "" {
		t.Errorf("empty fleet (-want +got):\n%s", diff)
	}

	// One tenant: an account in Tenants/Production with the guardrails
	// applied, but no stack (the tenant app is not deployed here).
	orgc := organizations.NewFromConfig(cfg)
	scps, err := guardrails.Policies(guardrails.Options{AllowedRegions: []string{"us-east-1", "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guardrails.New(orgc, log).Apply(ctx, scps, org.OUs); err != nil {
		t.Fatal(err)
	}
	created, err := orgc.CreateAccount(ctx, &organizations.CreateAccountInput{AccountName: aws.String("acme"), Email: aws.String("acme@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	account := aws.ToString(created.CreateAccountStatus.AccountId)
	if _, err := orgc.MoveAccount(ctx, &organizations.MoveAccountInput{AccountId: aws.String(account),
		SourceParentId: aws.String(org.RootID), DestinationParentId: aws.String(org.OUs[emulator.OUProduction])}); err != nil {
		t.Fatal(err)
	}
	if err := reg.ImportTenants(ctx, []*registry.Tenant{{Spec: registry.Spec{ID: "acme", Name: "Acme", Email: "acme@example.com",
		Tier: registry.TierBasic, Region: org.Region}, State: registry.StateActive, AccountID: account}}); err != nil {
		t.Fatal(err)
	}
	if res, err = handle(ctx, event, l); err != nil {
		t.Fatal(err)
	}
	if res.Tenants != 1 || res.Passed != 0 || len(res.Failing) != 1 {
		t.Errorf("one tenant without a stack: %+v, want it audited and not passed", res)
	}
	rep, err := audit.NewReader(reg).Report(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]audit.Status{}
	for _, c := range rep.Checks {
		got[c.Name] = c.Status
	}
	for _, name := range []string{audit.CheckOU, audit.CheckGuardrails} {
		if got[name] != audit.StatusPass {
			t.Errorf("check %s: %s, want pass (the OU ids and SCPs the Lambda built must match the organization's)\n%+v", name, got[name], rep.Checks)
		}
	}
	t.Logf("checks: %v", got)
	if rep.AccountID != account || rep.Status == audit.StatusPass {
		t.Errorf("report of %s: status %s", rep.AccountID, rep.Status)
	}
}
