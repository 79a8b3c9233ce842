// Command api is the silo API Lambda behind API Gateway: it wires the HTTP
// API (internal/api) to the registry table, the reconcile queue and the
// operator token key, and adapts API Gateway proxy events to net/http with
// aws-lambda-go-api-proxy. Wiring only; behaviour lives in internal/api.
//
// Environment (set by the control-plane stack):
//
//	SILO_REGISTRY_TABLE       the registry table
//	SILO_RECONCILE_QUEUE      URL of the queue the reconciler reads
//	SILO_STATUS_SECRET_ARN    Secrets Manager secret keying status tokens
//	SILO_OPERATOR_ISSUER      issuer of operator tokens
//	SILO_OPERATOR_PUBLIC_KEY  its RS256 public key, PEM
//	SILO_API_BASE_URL         the API's public URL (status links)
//
// The function serves the isolation reports (GET /v1/tenants/{id}/isolation)
// from the registry but runs no audit: in AWS the reconciler runs it daily,
// and POST /v1/audit/isolation answers 501 not_configured saying so (API
// Gateway would cut a run at 29 seconds, and this function has no way into
// tenant accounts).
//
// Optional, for GET /v1/resolve by an end user's token (without them that
// form answers 501 not_configured; resolving by tenant id still works):
//
//	SILO_USER_ISSUER          issuer of the tenant application's user tokens
//	SILO_USER_PUBLIC_KEY      its RS256 public key, PEM
//	SILO_USER_AUDIENCE        their audience (the tenant app's JWT audience)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	ctx := context.Background()
	h, err := build(ctx, log, os.Getenv)
	if err != nil {
		log.Error("api start failed", "err", err)
		os.Exit(1)
	}
	// Built once per execution environment; invocations reuse it.
	lambda.StartWithOptions(httpadapter.New(h).ProxyWithContext, lambda.WithContext(ctx))
}

func build(ctx context.Context, log *slog.Logger, env func(string) string) (*api.API, error) {
	var missing []string
	need := func(k string) string {
		v := env(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	table, queue, secretARN := need("SILO_REGISTRY_TABLE"), need("SILO_RECONCILE_QUEUE"), need("SILO_STATUS_SECRET_ARN")
	iss, keyPEM := need("SILO_OPERATOR_ISSUER"), need("SILO_OPERATOR_PUBLIC_KEY")
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	key, err := api.ParsePublicKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("SILO_OPERATOR_PUBLIC_KEY: %w", err)
	}
	cfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return nil, err
	}
	secret, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretARN)})
	if err != nil {
		return nil, fmt.Errorf("read the status-token secret: %w", err)
	}
	verifier, err := api.NewJWTVerifier(api.JWTConfig{Key: key, Issuer: iss, Audience: api.Audience})
	if err != nil {
		return nil, err
	}
	users, err := userVerifier(env)
	if err != nil {
		return nil, err
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), table)
	q := sqs.NewFromConfig(cfg)
	return api.New(api.Deps{
		Registry: reg,
		// A lost kick is not lost work: the reconciler's one-minute sweep
		// finds every tenant in a working state.
		Kick: func(id string) {
			if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queue), MessageBody: aws.String(id)}); err != nil {
				log.Warn("kick not queued; the sweep will pick the tenant up", "tenant", id, "err", err)
			}
		},
		Retry: func(ctx context.Context, id, actor, reason string) (*registry.Tenant, error) {
			return vending.Retry(ctx, reg, id, actor, reason)
		},
		Verifier: verifier,
		Users:    users,
		Audits:   audit.NewReader(reg),
		Log:      log,
	}, api.Options{
		StatusSecret: []byte(aws.ToString(secret.SecretString)), BaseURL: env("SILO_API_BASE_URL"),
		// Not TrustForwardedFor: the proxy adapter sets the request's
		// RemoteAddr to API Gateway's sourceIp, the address it saw, while
		// the first hop of X-Forwarded-For is whatever the client wrote
		// (API Gateway appends to it). Trusting it let a client pick a
		// fresh signup bucket per request.
	})
}

// userVerifier reads the optional SILO_USER_* settings: all three, or none
// (nil: no resolving by user token).
func userVerifier(env func(string) string) (api.UserVerifier, error) {
	iss, keyPEM, aud := env("SILO_USER_ISSUER"), env("SILO_USER_PUBLIC_KEY"), env("SILO_USER_AUDIENCE")
	if iss == "" && keyPEM == "" && aud == "" {
		return nil, nil
	}
	if iss == "" || keyPEM == "" || aud == "" {
		return nil, fmt.Errorf("SILO_USER_ISSUER, SILO_USER_PUBLIC_KEY and SILO_USER_AUDIENCE go together (set all or none)")
	}
	key, err := api.ParsePublicKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("SILO_USER_PUBLIC_KEY: %w", err)
	}
	v, err := api.NewJWTUserVerifier(api.JWTConfig{Key: key, Issuer: iss, Audience: aud})
	if err != nil {
		return nil, err
	}
	return v, nil
}
