package apphost

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

// fakeLambda answers GetFunctionConfiguration with a fixed environment.
type fakeLambda struct{ env map[string]string }

func (f fakeLambda) GetFunctionConfiguration(_ context.Context, _ *lambda.GetFunctionConfigurationInput, _ ...func(*lambda.Options)) (*lambda.GetFunctionConfigurationOutput, error) {
	return &lambda.GetFunctionConfigurationOutput{Environment: &lambdatypes.EnvironmentResponse{Variables: f.env}}, nil
}

func stackEnv() map[string]string {
	return map[string]string{
		tenantapp.EnvTenantID: "acme", tenantapp.EnvVersion: "r1", tenantapp.EnvTable: "silo-acme-data",
		tenantapp.EnvBucket: "silo-acme-1-us-east-1", tenantapp.EnvKMSKey: "key-1", tenantapp.EnvSecretARN: "arn:secret",
		tenantapp.EnvIssuer: "https://issuer.example/", tenantapp.EnvAudience: "stack-aud",
	}
}

func TestAppConfig(t *testing.T) {
	base := tenantapp.Config{
		TenantID: "acme", Version: "r1", TableName: "silo-acme-data", Bucket: "silo-acme-1-us-east-1",
		KMSKeyID: "key-1", SecretARN: "arn:secret",
	}
	with := func(iss, aud, jwks string) tenantapp.Config {
		c := base
		c.Issuer, c.Audience, c.JWKSURL = iss, aud, jwks
		return c
	}
	tests := []struct {
		name    string
		host    Config
		env     func(map[string]string)
		want    tenantapp.Config
		wantErr string
	}{
		{name: "stack issuer when the host has none", want: with("https://issuer.example/", "stack-aud", "")},
		{name: "host issuer overrides the stack's",
			host: Config{Issuer: "http://127.0.0.1:9", Audience: "local-aud", JWKSURL: "http://127.0.0.1:9/jwks"},
			want: with("http://127.0.0.1:9", "local-aud", "http://127.0.0.1:9/jwks")},
		{name: "missing variables", env: func(e map[string]string) { delete(e, tenantapp.EnvTable); delete(e, tenantapp.EnvKMSKey) },
			wantErr: "environment lacks KMS_KEY_ID, TABLE_NAME"},
		{name: "another tenant's function", env: func(e map[string]string) { e[tenantapp.EnvTenantID] = "globex" },
			wantErr: `configured for tenant "globex", not acme`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := stackEnv()
			if tc.env != nil {
				tc.env(env)
			}
			h := New(nil, tc.host, slog.New(slog.NewTextHandler(io.Discard, nil)))
			h.newLambda = func(aws.Config) lambdaAPI { return fakeLambda{env: env} }
			got, err := h.appConfig(context.Background(), aws.Config{}, &registry.Tenant{Spec: registry.Spec{ID: "acme"}, AccountID: "1"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
		})
	}
}
