package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// TestLambdaServesConsole wires the Lambda as AWS would start it (the
// environment points at the emulator) and sends it API Gateway proxy
// events, paths without the stage as API Gateway sends them: the login
// page, a login, and the overview with the session cookie.
func TestLambdaServesConsole(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), "silo-registry")
	if err := reg.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	var tenants []*registry.Tenant
	for _, id := range []string{"acme", "globex", "initech"} {
		tenants = append(tenants, &registry.Tenant{Spec: registry.Spec{ID: id, Name: strings.ToUpper(id), Email: "ops@" + id + ".example", Tier: registry.TierBasic, Region: "us-east-1"},
			State: registry.StateActive})
	}
	if err := reg.ImportTenants(ctx, tenants); err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New("https://login.example.com/", issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(iss.PublicKey())
	env := map[string]string{
		"SILO_REGISTRY_TABLE":      "silo-registry",
		"SILO_OPERATOR_ISSUER":     iss.URL(),
		"SILO_OPERATOR_PUBLIC_KEY": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"SILO_CONSOLE_PREFIX":      "/console",
	}
	t.Setenv(awsx.EndpointEnv, org.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", org.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", org.SecretAccessKey)
	t.Setenv("AWS_REGION", org.Region)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := build(ctx, log, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "SILO_OPERATOR_PUBLIC_KEY") {
		t.Errorf("build with no environment: %v, want the missing variables named", err)
	}
	h, err := build(ctx, log, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	proxy := httpadapter.New(h)
	send := func(method, path, body string, headers map[string]string) events.APIGatewayProxyResponse {
		t.Helper()
		resp, err := proxy.ProxyWithContext(ctx, events.APIGatewayProxyRequest{HTTPMethod: method, Path: path, Body: body, Headers: headers,
			RequestContext: events.APIGatewayProxyRequestContext{Stage: "console"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := send("GET", "/login", "", nil); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `action="/console/login"`) {
		t.Fatalf("login page: %d\n%s", r.StatusCode, r.Body)
	}
	token, err := iss.Mint("", "ann", time.Hour, map[string]any{api.RoleClaim: string(api.RoleViewer)})
	if err != nil {
		t.Fatal(err)
	}
	r := send("POST", "/login", url.Values{"token": {token}, "next": {"/console/"}}.Encode(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	cookie := r.Headers["Set-Cookie"]
	if cookie == "" {
		cookie = strings.Join(r.MultiValueHeaders["Set-Cookie"], "")
	}
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(cookie, "Secure") || !strings.Contains(cookie, "Path=/console") {
		t.Fatalf("login: %d, cookie %q", r.StatusCode, cookie)
	}
	session := map[string]string{"Cookie": strings.SplitN(cookie, ";", 2)[0]}
	r = send("GET", "/", "", session)
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `data-state="ACTIVE">3<`) || !strings.Contains(r.Body, `href="/console/tenants`) {
		t.Fatalf("overview: %d\n%s", r.StatusCode, r.Body)
	}

	// The isolation page reads the reports the reconciler's audit keeps
	// in the registry.
	if r := send("GET", "/isolation", "", session); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `id="isolation-none"`) {
		t.Fatalf("isolation page before any audit: %d\n%s", r.StatusCode, r.Body)
	}
	at := time.Now().UTC()
	if err := reg.PutFleetReport(ctx, "globex", audit.ReportKind, audit.Report{TenantID: "globex", AccountID: "111122223333", Region: "us-east-1",
		Status: audit.StatusFail, StartedAt: at, FinishedAt: at,
		Checks: []audit.Check{{Name: audit.CheckOU, Status: audit.StatusFail, Summary: "not in Tenants/Production"}}}); err != nil {
		t.Fatal(err)
	}
	r = send("GET", "/isolation", "", session)
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `data-tenant="globex" data-status="fail"`) {
		t.Fatalf("isolation page: %d\n%s", r.StatusCode, r.Body)
	}
}
