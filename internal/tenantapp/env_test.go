package tenantapp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

const testTenant = "t-acme"

// tenantEnv is one tenant as the stack would leave it: a member account
// with its table, bucket, key and secret, the app served over HTTP with that
// account's assumed-role credentials, and an issuer serving its JWKS.
type tenantEnv struct {
	accountID string
	cfg       Config
	clients   Clients
	s3        *s3.Client
	issuer    *issuer.Issuer
	app       *httptest.Server
}

func newTenantEnv(t *testing.T) *tenantEnv {
	t.Helper()
	ctx := context.Background()
	org := emu.ResetT(t)
	mgmt, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	acct := createAccount(t, ctx, organizations.NewFromConfig(mgmt))
	member := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{}).Config(acct)
	clients := NewClients(member)

	table, bucket := "items-"+acct, "tenant-"+acct+"-attachments"
	ddb := dynamodb.NewFromConfig(member)
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(TableKey), AttributeType: ddbtypes.ScalarAttributeType(TableKeyType)}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(TableKey), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("create table: %v", err)
	}
	s3c := clients.S3.(*s3.Client)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	// A key made with CreateKey, not CloudFormation: moto answers KMS calls
	// on CloudFormation-made keys with a 500.
	key, err := kms.NewFromConfig(member).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("tenant attachments")})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	secret, err := secretsmanager.NewFromConfig(member).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("tenant/app"), SecretString: aws.String(`{"k":"v"}`),
	})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}

	mux := http.NewServeMux()
	issSrv := httptest.NewServer(mux)
	t.Cleanup(issSrv.Close)
	iss, err := issuer.New(issSrv.URL, issuer.Options{Audience: "tenant-api"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", iss)

	cfg := Config{
		TenantID: testTenant, Version: "v1.2.3", TableName: table, Bucket: bucket,
		KMSKeyID: aws.ToString(key.KeyMetadata.Arn), SecretARN: aws.ToString(secret.ARN),
		Issuer: iss.URL(), Audience: "tenant-api",
	}
	env := &tenantEnv{accountID: acct, cfg: cfg, clients: clients, s3: s3c, issuer: iss}
	env.app = httptest.NewServer(env.newApp(t))
	t.Cleanup(env.app.Close)
	return env
}

func (e *tenantEnv) newApp(t *testing.T) *App {
	t.Helper()
	a, err := New(e.clients, e.cfg, testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func createAccount(t *testing.T, ctx context.Context, org *organizations.Client) string {
	t.Helper()
	out, err := org.CreateAccount(ctx, &organizations.CreateAccountInput{
		AccountName: aws.String("acme"), Email: aws.String("acme@example.com"),
	})
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	st := out.CreateAccountStatus
	// moto finishes at once; AWS does not, so wait the way the reconciler would.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for st.State == orgtypes.CreateAccountStateInProgress {
		select {
		case <-ctx.Done():
			t.Fatalf("account not created: %v", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		d, err := org.DescribeCreateAccountStatus(ctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: st.Id})
		if err != nil {
			t.Fatal(err)
		}
		st = d.CreateAccountStatus
	}
	if st.State != orgtypes.CreateAccountStateSucceeded || aws.ToString(st.AccountId) == "" {
		t.Fatalf("create account: state %s (%s)", st.State, st.FailureReason)
	}
	return aws.ToString(st.AccountId)
}

// token mints a valid token for the env's tenant.
func (e *tenantEnv) token(t *testing.T) string {
	t.Helper()
	tok, err := e.issuer.Mint(testTenant, "alice", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// chunked is a request body sent without a Content-Length.
type chunked []byte

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorCode returns the code of a JSON error body.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.json(t, &b)
	if b.Error.Code == "" || b.Error.Message == "" {
		t.Errorf("error body %s lacks code or message", r.body)
	}
	return b.Error.Code
}

// do sends a request to the app; body may be nil, a []byte or a value to
// encode as JSON.
func (e *tenantEnv) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case chunked:
		// A reader of unknown length: sent chunked, without Content-Length.
		rd = io.MultiReader(bytes.NewReader(b))
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.app.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.app.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// testLogger sends the app's logs to the test log, shown on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
