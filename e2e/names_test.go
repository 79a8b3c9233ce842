package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/registry"
)

// longRegion is one of the longest region codes silo accepts.
const longRegion = "ap-southeast-5"

// TestSignupLongAndNonLatinNames signs customers up through the HTTP API
// of a local platform with names of 29, 45 and 200 characters and names of
// only non-Latin letters, all in a 14-character region: each tenant gets a
// short readable id, reaches ACTIVE, and every name created for it (read
// back from AWS with the tenant account's own credentials, and its account
// in the organization) is within its service's limit. The emulator accepts
// names AWS refuses, so the limits are checked here (awsx's name rules).
func TestSignupLongAndNonLatinNames(t *testing.T) {
	if len(longRegion) != awsx.MaxRegionLen {
		t.Fatalf("%s is not a longest region (%d characters)", longRegion, awsx.MaxRegionLen)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	p, err := local.Start(ctx, local.Options{Emulator: emu, SignupRate: rate.Inf, DomainSignupRate: rate.Inf, ProbeEvery: time.Minute}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cl, err := api.NewClient(p.Info.API, p.Info.AdminToken)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		runes    int
		wantSlug string // the readable part of the id, before the random suffix
	}{
		{"Northwind Traders Corporation", 29, "northwind-traders"},
		{"Société Générale de Banque et d'Assurance SAS", 45, "societe-generale-de"},
		{runesOf("Gesellschaft für Umwelttechnik und Maschinenbau mbH & Co. KG, ", 200), 200, "gesellschaft-fur"},
		{"株式会社テスト", 7, "tenant"},
		{"Ελληνική Εταιρεία Δοκιμών", 25, "elliniki-etaireia"},
		{"ООО Ромашка", 11, "ooo-romashka"},
	}
	ids := make([]string, len(tests))
	var wg sync.WaitGroup
	for i, tc := range tests {
		if got := utf8.RuneCountInString(tc.name); got != tc.runes {
			t.Fatalf("name %.20q has %d characters, want %d", tc.name, got, tc.runes)
		}
		wg.Go(func() {
			resp, err := cl.Signup(ctx, api.SignupRequest{
				Name: tc.name, Email: fmt.Sprintf("ops@names-%d.example", i), Tier: "standard", Region: longRegion,
			}, randomKey())
			if err != nil {
				t.Errorf("signup %.20q: %v", tc.name, err)
				return
			}
			ids[i] = resp.TenantID
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, tc := range tests {
		id := ids[i]
		if err := registry.ValidateNewID(id); err != nil || !strings.HasPrefix(id, tc.wantSlug+"-") || len(id) != len(tc.wantSlug)+7 {
			t.Errorf("name %.20q got id %q (%v), want %s-<6 random>", tc.name, id, err, tc.wantSlug)
		}
	}

	// Every tenant reaches ACTIVE, concurrently.
	views := make([]*api.TenantView, len(ids))
	for i, id := range ids {
		wg.Go(func() { views[i] = waitActive(ctx, t, cl, id) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	orgc := organizations.NewFromConfig(p.Control.Config)
	for i, v := range views {
		t.Run(tests[i].wantSlug, func(t *testing.T) {
			if v.Region != longRegion {
				t.Fatalf("tenant %s in %s", v.ID, v.Region)
			}
			checkAccountNames(ctx, t, orgc, v)
			cfg := p.Control.Accounts.Config(v.AccountID)
			cfg.Region = longRegion
			checkResourceNames(ctx, t, cfg, v)
		})
	}
}

// runesOf repeats phrase to exactly n characters, ending in a letter (the
// API trims surrounding spaces).
func runesOf(phrase string, n int) string {
	r := []rune(strings.Repeat(phrase, n/utf8.RuneCountInString(phrase)+1))[:n]
	if r[n-1] == ' ' || r[n-1] == ',' {
		r[n-1] = 'x'
	}
	return string(r)
}

// randomKey is an idempotency key no one could guess (128 random bits).
func randomKey() string { return "names-" + rand.Text() }

// waitActive polls a tenant until it is ACTIVE; FAILED or the context's
// end fails the test with what the tenant says.
func waitActive(ctx context.Context, t *testing.T, cl *api.Client, id string) *api.TenantView {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last *api.TenantView
	for {
		v, err := cl.Tenant(ctx, id)
		switch {
		case err == nil && v.State == registry.StateActive:
			return v
		case err == nil && v.State == registry.StateFailed:
			t.Errorf("tenant %s FAILED: %s", id, v.Reason)
			return nil
		case err == nil:
			last = v
		}
		select {
		case <-ctx.Done():
			t.Errorf("tenant %s not ACTIVE in time; last seen %+v", id, last)
			return nil
		case <-tick.C:
		}
	}
}

// checkAccountNames checks the names the management account holds for a
// tenant: its account's name and root email, and its DNS label.
func checkAccountNames(ctx context.Context, t *testing.T, orgc *organizations.Client, v *api.TenantView) {
	t.Helper()
	acct, err := orgc.DescribeAccount(ctx, &organizations.DescribeAccountInput{AccountId: aws.String(v.AccountID)})
	if err != nil {
		t.Fatal(err)
	}
	if err := awsx.AccountNameRule.Check(aws.ToString(acct.Account.Name)); err != nil || !strings.HasSuffix(aws.ToString(acct.Account.Name), v.ID) {
		t.Errorf("account %s is named %q (%v), want one ending in %s", v.AccountID, aws.ToString(acct.Account.Name), err, v.ID)
	}
	email := aws.ToString(acct.Account.Email)
	if local := email[:max(0, strings.LastIndexByte(email, '@'))]; len(local) < 1 || len(local) > awsx.EmailLocalPartMax || !strings.Contains(local, v.ID) {
		t.Errorf("account %s email %q: %d characters before the @, want 1 to %d with the id", v.AccountID, email, len(local), awsx.EmailLocalPartMax)
	}
	if err := awsx.DNSLabelRule.Check(strings.SplitN(registry.DNSName(v.ID, "tenants.example.com"), ".", 2)[0]); err != nil {
		t.Error(err)
	}
}

// checkResourceNames reads back, with the tenant account's own credentials,
// the names of its bucket, table, function, secret, log groups and REST
// API, and checks each: the one silo derives, and within its limit.
func checkResourceNames(ctx context.Context, t *testing.T, cfg aws.Config, v *api.TenantView) {
	t.Helper()
	check := func(what string, got []string, want string, rule awsx.NameRule) {
		t.Helper()
		if !slices.Contains(got, want) {
			t.Errorf("%s: %v in the account, want %s among them", what, got, want)
		}
		for _, name := range got {
			if err := rule.Check(name); err != nil {
				t.Error(err)
			}
		}
	}

	buckets, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range buckets.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	check("buckets", names, registry.Expand(registry.BucketNamePattern, v.ID, v.AccountID, longRegion), awsx.BucketNameRule)

	tables, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	check("tables", tables.TableNames, registry.TableName(v.ID), awsx.TableNameRule)

	fns, err := lambda.NewFromConfig(cfg).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, f := range fns.Functions {
		names = append(names, aws.ToString(f.FunctionName))
	}
	check("functions", names, registry.FunctionName(v.ID), awsx.FunctionNameRule)

	secrets, err := secretsmanager.NewFromConfig(cfg).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, s := range secrets.SecretList {
		names = append(names, aws.ToString(s.Name))
	}
	check("secrets", names, registry.Expand(registry.SecretNamePattern, v.ID, "", ""), awsx.SecretNameRule)

	groups, err := cloudwatchlogs.NewFromConfig(cfg).DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, g := range groups.LogGroups {
		names = append(names, aws.ToString(g.LogGroupName))
	}
	check("log groups", names, registry.Expand(registry.LogGroupNamePattern, v.ID, "", ""), awsx.LogGroupNameRule)

	apis, err := apigateway.NewFromConfig(cfg).GetRestApis(ctx, &apigateway.GetRestApisInput{})
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, a := range apis.Items {
		names = append(names, aws.ToString(a.Name))
	}
	// AWS documents no limit on a REST API's name; the rule is the
	// template test's (registry).
	check("REST APIs", names, registry.Expand(registry.RestAPINamePattern, v.ID, "", ""), awsx.NameRule{What: "REST API name", Min: 1, Max: 255})
}
