// Command tenantapp is the Lambda behind each tenant's API Gateway REST API:
// it wires the tenant application (internal/tenantapp) to AWS and adapts
// API Gateway proxy events to net/http. Wiring only; behaviour lives in the
// package.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/tenantapp"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(context.Background(), log); err != nil {
		log.Error("tenantapp start failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := tenantapp.ConfigFromEnv()
	if err != nil {
		return err
	}
	awsCfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return err
	}
	app, err := tenantapp.New(tenantapp.NewClients(awsCfg), cfg, log, tenantapp.Options{})
	if err != nil {
		return err
	}
	// Built once per execution environment, so the JWKS cache and the SDK
	// clients' connections are reused across invocations.
	lambda.StartWithOptions(httpadapter.New(app).ProxyWithContext, lambda.WithContext(ctx))
	return nil
}
