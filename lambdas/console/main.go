// Command console is the operations console Lambda behind API Gateway: it
// wires internal/console to the registry table (tenants, and the isolation
// reports the reconciler's daily audit keeps there), Cost Explorer and
// Organizations, trusting operator tokens from the operator issuer, and
// adapts API Gateway proxy events to net/http with aws-lambda-go-api-proxy.
// Wiring only; behaviour lives in internal/console.
//
// Environment (set by the control-plane stack):
//
//	SILO_REGISTRY_TABLE       the registry table
//	SILO_OPERATOR_ISSUER      issuer of operator tokens
//	SILO_OPERATOR_PUBLIC_KEY  its RS256 public key, PEM
//	SILO_CONSOLE_PREFIX       the path the console is served under (the API
//	                          Gateway stage, "/console"); "" for the root
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/console"
	"github.com/silo-saas/silo/registry"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	ctx := context.Background()
	h, err := build(ctx, log, os.Getenv)
	if err != nil {
		log.Error("console start failed", "err", err)
		os.Exit(1)
	}
	// Built once per execution environment: the fleet snapshot and the
	// cost report are reused by the invocations of a warm one.
	lambda.StartWithOptions(httpadapter.New(h).ProxyWithContext, lambda.WithContext(ctx))
}

func build(ctx context.Context, log *slog.Logger, env func(string) string) (http.Handler, error) {
	var missing []string
	need := func(k string) string {
		v := env(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	table, iss, keyPEM := need("SILO_REGISTRY_TABLE"), need("SILO_OPERATOR_ISSUER"), need("SILO_OPERATOR_PUBLIC_KEY")
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	prefix := strings.TrimRight(env("SILO_CONSOLE_PREFIX"), "/")
	key, err := api.ParsePublicKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("SILO_OPERATOR_PUBLIC_KEY: %w", err)
	}
	verifier, err := api.NewJWTVerifier(api.JWTConfig{Key: key, Issuer: iss, Audience: api.Audience})
	if err != nil {
		return nil, err
	}
	cfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return nil, err
	}
	store := registry.New(dynamodb.NewFromConfig(cfg), table)
	c, err := console.New(console.Deps{
		Registry: store, Pool: store, Verifier: verifier, Log: log,
		Costs: console.NewCostExplorer(cfg, 0),
		OUs:   console.NewOULookup(organizations.NewFromConfig(cfg)),
		// Reads only: the audit runs in the reconciler.
		Isolation: audit.NewReader(store),
	}, console.Options{Prefix: prefix, SecureCookie: true})
	if err != nil {
		return nil, err
	}
	return stagePrefixed(prefix, c), nil
}

// stagePrefixed gives the console the path the browser used: API Gateway
// hands the function the path without the stage ("/tenants" for
// "/console/tenants"), while the console's links and routes include it.
func stagePrefixed(prefix string, h http.Handler) http.Handler {
	if prefix == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != prefix && !strings.HasPrefix(r.URL.Path, prefix+"/") {
			r.URL.Path = prefix + r.URL.Path
			r.URL.RawPath = ""
		}
		h.ServeHTTP(w, r)
	})
}
