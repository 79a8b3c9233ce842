package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/golang-jwt/jwt/v5"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// TestLambdaServesSignup wires the Lambda as AWS would start it (only the
// environment differs: it points at the emulator) and sends it an API
// Gateway proxy event.
func TestLambdaServesSignup(t *testing.T) {
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
	q := sqs.NewFromConfig(cfg)
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reconcile")})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("silo/status"), SecretString: aws.String(strings.Repeat("s3cr3t-", 8)),
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	env := map[string]string{
		"SILO_REGISTRY_TABLE":      "silo-registry",
		"SILO_RECONCILE_QUEUE":     aws.ToString(queue.QueueUrl),
		"SILO_STATUS_SECRET_ARN":   aws.ToString(secret.ARN),
		"SILO_OPERATOR_ISSUER":     "https://login.example.com/",
		"SILO_OPERATOR_PUBLIC_KEY": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"SILO_API_BASE_URL":        "https://api.example.com",
	}
	// The SDK's standard chain, as in Lambda, pointed at the emulator.
	t.Setenv(awsx.EndpointEnv, org.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", org.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", org.SecretAccessKey)
	t.Setenv("AWS_REGION", org.Region)

	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := build(ctx, log, func(k string) string { return map[string]string{}[k] }); err == nil || !strings.Contains(err.Error(), "SILO_REGISTRY_TABLE") {
		t.Errorf("build with no environment: %v, want the missing variables named", err)
	}
	h, err := build(ctx, log, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(api.SignupRequest{Name: "Lambda Co", Email: "ops@lambda.example", Tier: "basic", Region: "us-east-1"})
	resp, err := httpadapter.New(h).ProxyWithContext(ctx, events.APIGatewayProxyRequest{
		HTTPMethod: "POST", Path: "/v1/signup", Body: string(body),
		Headers:        map[string]string{"Content-Type": "application/json", api.IdempotencyKeyHeader: api.NewIdempotencyKey()},
		RequestContext: events.APIGatewayProxyRequestContext{Identity: events.APIGatewayRequestIdentity{SourceIP: "203.0.113.9"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 {
		t.Fatalf("signup through the Lambda: %d %s", resp.StatusCode, resp.Body)
	}
	var got api.SignupResponse
	if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.StatusURL, "https://api.example.com/v1/tenants/") {
		t.Errorf("status url %q", got.StatusURL)
	}
	if _, err := reg.Get(ctx, got.TenantID); err != nil {
		t.Errorf("tenant not in the registry: %v", err)
	}
	// The new tenant was queued for the reconciler.
	msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue.QueueUrl, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Messages) != 1 || aws.ToString(msgs.Messages[0].Body) != got.TenantID {
		t.Errorf("queued %v, want the tenant id %s", msgs.Messages, got.TenantID)
	}

	// The per-client signup limit keys by the address API Gateway saw: a
	// client writing a new X-Forwarded-For each time is still one client
	// (bursts of 5; these lack an idempotency key, so they cost only the
	// limit's token).
	limited := false
	for i := range 10 {
		resp, err := httpadapter.New(h).ProxyWithContext(ctx, events.APIGatewayProxyRequest{
			HTTPMethod: "POST", Path: "/v1/signup", Body: string(body),
			Headers:        map[string]string{"Content-Type": "application/json", "X-Forwarded-For": fmt.Sprintf("198.51.100.%d, 203.0.113.9", i)},
			RequestContext: events.APIGatewayProxyRequestContext{Identity: events.APIGatewayRequestIdentity{SourceIP: "203.0.113.9"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		limited = limited || resp.StatusCode == 429
	}
	if !limited {
		t.Error("10 signups from one address, each with another X-Forwarded-For, were never rate limited")
	}

	// Isolation: the reports the reconciler's audit keeps are served; a
	// run is refused, saying where the audit runs.
	operator, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": env["SILO_OPERATOR_ISSUER"], "aud": api.Audience, "sub": "ci", api.RoleClaim: string(api.RoleOperator),
		"exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	want := audit.Report{TenantID: got.TenantID, AccountID: "111122223333", Region: "us-east-1", Status: audit.StatusPass,
		StartedAt: at, FinishedAt: at, Checks: []audit.Check{{Name: audit.CheckOU, Status: audit.StatusPass, Summary: "in Tenants/Production"}}}
	if err := reg.PutFleetReport(ctx, got.TenantID, audit.ReportKind, want); err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer " + operator, "Content-Type": "application/json"}
	resp, err = httpadapter.New(h).ProxyWithContext(ctx, events.APIGatewayProxyRequest{HTTPMethod: "GET", Path: "/v1/tenants/" + got.TenantID + "/isolation", Headers: auth})
	if err != nil {
		t.Fatal(err)
	}
	var rep audit.Report
	if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.Body), &rep) != nil || !rep.FinishedAt.Equal(want.FinishedAt) || rep.Status != want.Status {
		t.Errorf("isolation report through the Lambda: %d %s", resp.StatusCode, resp.Body)
	}
	resp, err = httpadapter.New(h).ProxyWithContext(ctx, events.APIGatewayProxyRequest{HTTPMethod: "POST", Path: "/v1/audit/isolation", Headers: auth})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 501 || !strings.Contains(resp.Body, `"not_configured"`) || !strings.Contains(resp.Body, "reconciler") {
		t.Errorf("isolation run through the Lambda: %d %s, want 501 not_configured naming the reconciler", resp.StatusCode, resp.Body)
	}
}
