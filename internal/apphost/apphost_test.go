package apphost_test

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/apphost"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fixture is a control plane whose endpoints come from an app host, with the
// issuer the host's apps trust.
type fixture struct {
	c      *local.Control
	host   *apphost.Host
	issuer *issuer.Issuer
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, hostOptions{}) }

// hostOptions are what a test changes in the host of its fixture.
type hostOptions struct {
	code func(context.Context, *registry.Tenant) (string, []byte, error)
	log  *slog.Logger
	now  func() time.Time
}

func newFixtureWith(t *testing.T, o hostOptions) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	log := o.log
	if log == nil {
		log = testLog(t)
	}

	mux := http.NewServeMux()
	issSrv := httptest.NewServer(mux)
	t.Cleanup(issSrv.Close)
	iss, err := issuer.New(issSrv.URL, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", iss)

	// The host has its own management config: the tenant apps are not the
	// control plane, and its counters and middleware are not theirs.
	mgmt, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	host := apphost.New(awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{}),
		apphost.Config{Issuer: iss.URL(), Audience: iss.Audience(), JWKSURL: iss.JWKSURL(), Code: o.code, Now: o.now}, log)
	t.Cleanup(host.Close)
	c, err := local.Wire(ctx, org, local.ControlOptions{
		Endpoint: host.Endpoint, Unserve: func(id string) { host.Stop(id) },
		JWTIssuer: iss.URL(), JWTAudience: iss.Audience(),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{c: c, host: host, issuer: iss}
}

// vend signs up ids in the given regions and drives them to ACTIVE.
func (f *fixture) vend(t *testing.T, regions map[string]string) map[string]*registry.Tenant {
	t.Helper()
	return f.vendTiers(t, regions, nil)
}

// vendTiers is vend with each tenant's tier (standard when not given).
func (f *fixture) vendTiers(t *testing.T, regions map[string]string, tiers map[string]registry.Tier) map[string]*registry.Tenant {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var ids []string
	for id, region := range regions {
		if _, _, err := f.c.Registry.Create(ctx, registry.Spec{
			ID: id, Name: "Tenant " + id, Email: "owner@" + id + ".example", Tier: cmp.Or(tiers[id], registry.TierStandard), Region: region,
		}, "signup-"+id, "test"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var mu sync.Mutex
	out := map[string]*registry.Tenant{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			tn, err := f.c.Reconciler.Drive(ctx, id)
			if err != nil {
				t.Errorf("drive %s: %v", id, err)
				return
			}
			mu.Lock()
			out[id] = tn
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if tn := out[id]; tn == nil || tn.State != registry.StateActive || tn.Endpoint == "" {
			t.Fatalf("tenant %s not served: %+v", id, tn)
		}
	}
	return out
}

func (f *fixture) token(t *testing.T, tenant string) string {
	t.Helper()
	tok, err := f.issuer.Mint(tenant, "user-of-"+tenant, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	body   []byte
}

func do(t *testing.T, method, url, token string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b}
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// TestServesEachTenantInItsOwnAccount vends two tenants in two regions with
// the host's Endpoint, then uses each endpoint over HTTP as a tenant's user
// would, and checks that what an app writes lands in its tenant's account
// only.
func TestServesEachTenantInItsOwnAccount(t *testing.T) {
	f := newFixture(t)
	tenants := f.vend(t, map[string]string{"alpha": "us-east-1", "bravo": "eu-west-1"})
	alpha, bravo := tenants["alpha"], tenants["bravo"]
	if alpha.Endpoint == bravo.Endpoint || alpha.AccountID == bravo.AccountID {
		t.Fatalf("alpha and bravo share endpoint %s or account %s", alpha.Endpoint, alpha.AccountID)
	}
	if got := f.host.Serving(); len(got) != 2 || got["alpha"] != alpha.Endpoint || got["bravo"] != bravo.Endpoint {
		t.Errorf("Serving() = %v, want alpha %s and bravo %s", got, alpha.Endpoint, bravo.Endpoint)
	}

	written := map[string]string{} // tenant -> item id
	for _, tn := range []*registry.Tenant{alpha, bravo} {
		t.Run(tn.ID, func(t *testing.T) {
			r := do(t, "GET", tn.Endpoint+"/health", "", nil)
			var h tenantapp.Health
			r.json(t, &h)
			if r.status != http.StatusOK || h.Status != "ok" || h.Tenant != tn.ID || h.Version != f.c.Release.ID {
				t.Errorf("health: %d %s, want 200 ok for %s at %s", r.status, r.body, tn.ID, f.c.Release.ID)
			}

			tok := f.token(t, tn.ID)
			r = do(t, "POST", tn.Endpoint+"/items", tok, map[string]any{"name": "order of " + tn.ID, "data": map[string]any{"n": 1}})
			if r.status != http.StatusCreated {
				t.Fatalf("create: %d %s", r.status, r.body)
			}
			var created tenantapp.Item
			r.json(t, &created)
			written[tn.ID] = created.ID

			r = do(t, "GET", tn.Endpoint+"/items/"+created.ID, tok, nil)
			var got tenantapp.Item
			r.json(t, &got)
			if r.status != http.StatusOK || got.Name != "order of "+tn.ID {
				t.Errorf("get: %d %s", r.status, r.body)
			}
			if r := do(t, "GET", tn.Endpoint+"/items", "", nil); r.status != http.StatusUnauthorized {
				t.Errorf("list without a token: %d %s, want 401", r.status, r.body)
			}
		})
	}

	// A token for one tenant is refused by the other tenant's app.
	for _, c := range []struct{ token, endpoint string }{{"alpha", bravo.Endpoint}, {"bravo", alpha.Endpoint}} {
		if r := do(t, "GET", c.endpoint+"/items", f.token(t, c.token), nil); r.status != http.StatusForbidden {
			t.Errorf("%s's token on the other endpoint: %d %s, want 403", c.token, r.status, r.body)
		}
	}

	// Each item is in its tenant's table in its tenant's account, and the
	// other account has neither the item nor the table.
	ctx := t.Context()
	for _, c := range []struct{ owner, other *registry.Tenant }{{alpha, bravo}, {bravo, alpha}} {
		id := written[c.owner.ID]
		if id == "" {
			continue
		}
		table := "silo-" + c.owner.ID + "-data"
		got, err := memberDynamo(f.c, c.owner).GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{tenantapp.TableKey: &ddbtypes.AttributeValueMemberS{Value: id}},
		})
		if err != nil || len(got.Item) == 0 {
			t.Errorf("%s's item %s not in %s of account %s: %v", c.owner.ID, id, table, c.owner.AccountID, err)
		}
		_, err = memberDynamo(f.c, c.other).GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{tenantapp.TableKey: &ddbtypes.AttributeValueMemberS{Value: id}},
		})
		if !awsx.IsNotFound(err) {
			t.Errorf("%s's table in %s's account %s: err %v, want not found", c.owner.ID, c.other.ID, c.other.AccountID, err)
		}
	}

	// Endpoint is idempotent: the same URL for a served tenant.
	url, err := f.host.Endpoint(ctx, alpha, nil)
	if err != nil || url != alpha.Endpoint {
		t.Errorf("Endpoint again = %q, %v; want %s", url, err, alpha.Endpoint)
	}

	// Stop makes the endpoint refuse connections; the other keeps serving.
	if !f.host.Stop("alpha") {
		t.Error("Stop(alpha) = false, want true")
	}
	if _, err := http.Get(alpha.Endpoint + "/health"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after Stop: err %v, want connection refused", err)
	}
	if r := do(t, "GET", bravo.Endpoint+"/health", "", nil); r.status != http.StatusOK {
		t.Errorf("bravo after alpha stopped: %d %s", r.status, r.body)
	}
	if got := f.host.Serving(); len(got) != 1 || got["bravo"] == "" {
		t.Errorf("Serving() after Stop = %v, want bravo only", got)
	}
}

// memberDynamo is DynamoDB in t's account and region, as the tenant.
func memberDynamo(c *local.Control, t *registry.Tenant) *dynamodb.Client {
	cfg := c.Accounts.Config(t.AccountID)
	cfg.Region = t.Region
	return dynamodb.NewFromConfig(cfg)
}

// TestRefreshAndClose checks that a new release is served at the same URL,
// and that Close stops every app and the host.
func TestRefreshAndClose(t *testing.T) {
	f := newFixture(t)
	tn := f.vend(t, map[string]string{"delta": "us-west-2"})["delta"]
	ctx := t.Context()

	// A new release changes the function's environment, as a stack update
	// would; the reconciler then asks for the endpoint again.
	cfg := f.c.Accounts.Config(tn.AccountID)
	cfg.Region = tn.Region
	fn := lambda.NewFromConfig(cfg)
	name := aws.String(apphost.FunctionName(tn.ID))
	got, err := fn.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: name})
	if err != nil {
		t.Fatal(err)
	}
	env := maps.Clone(got.Environment.Variables)
	env[tenantapp.EnvVersion] = "v-next"
	if _, err := fn.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: name, Environment: &lambdatypes.Environment{Variables: env},
	}); err != nil {
		t.Fatal(err)
	}
	url, err := f.host.Endpoint(ctx, tn, nil)
	if err != nil || url != tn.Endpoint {
		t.Fatalf("Endpoint after a release = %q, %v; want the same URL %s", url, err, tn.Endpoint)
	}
	var h tenantapp.Health
	r := do(t, "GET", url+"/health", "", nil)
	r.json(t, &h)
	if r.status != http.StatusOK || h.Version != "v-next" {
		t.Errorf("health after a release: %d %s, want version v-next", r.status, r.body)
	}

	f.host.Close()
	if _, err := http.Get(url + "/health"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after Close: err %v, want connection refused", err)
	}
	if _, err := f.host.Endpoint(ctx, tn, nil); !errors.Is(err, apphost.ErrClosed) {
		t.Errorf("Endpoint after Close: err %v, want ErrClosed", err)
	}
	if got := f.host.Serving(); len(got) != 0 {
		t.Errorf("Serving() after Close = %v, want none", got)
	}
}

// TestDecommissionStopsServing checks that local wiring stops a tenant's app
// once the reconciler has decommissioned it, and leaves the others serving.
func TestDecommissionStopsServing(t *testing.T) {
	f := newFixture(t)
	tenants := f.vend(t, map[string]string{"leaving": "us-east-1", "staying": "us-east-1"})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tn := tenants["leaving"]
	if _, err := f.c.Registry.Transition(ctx, tn, registry.StateDecommissioning, registry.Change{Actor: "operator:test", Reason: "contract ended"}); err != nil {
		t.Fatal(err)
	}
	done, err := f.c.Reconciler.Drive(ctx, "leaving")
	if err != nil || done.State != registry.StateClosed {
		t.Fatalf("decommission: %+v, %v", done, err)
	}
	if _, err := http.Get(tn.Endpoint + "/health"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after decommission: err %v, want connection refused", err)
	}
	if r := do(t, "GET", tenants["staying"].Endpoint+"/health", "", nil); r.status != http.StatusOK {
		t.Errorf("the other tenant after the decommission: %d %s", r.status, r.body)
	}
}

// packages stands in for the S3 object a tenant's instance names: the test
// sets which package (and location) the host gets, or an error.
type packages struct {
	mu       sync.Mutex
	location string
	zip      []byte
	err      error
}

func (p *packages) set(location string, zip []byte, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.location, p.zip, p.err = location, zip, err
}

func (p *packages) code(context.Context, *registry.Tenant) (string, []byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.location, p.zip, p.err
}

// zipOf makes a zip of name → content with zip.Writer.Create (no exec bit).
func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// syncBuffer is a log destination the serve goroutines may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBrokenReleaseFailsUntilRollback serves a tenant whose release has no
// bootstrap: its URL answers as API Gateway does when Lambda cannot start,
// the host says why once, and a good package makes the same URL healthy.
func TestBrokenReleaseFailsUntilRollback(t *testing.T) {
	pkgs := &packages{}
	broken := "s3://silo-artifacts/releases/code/broken.zip"
	pkgs.set(broken, zipOf(t, map[string]string{"README": "forgot the binary"}), nil)
	var logs syncBuffer
	f := newFixtureWith(t, hostOptions{
		code: pkgs.code,
		log:  slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	tn := f.vend(t, map[string]string{"echo": "us-east-1"})["echo"]
	ctx := t.Context()

	for _, path := range []string{"/health", "/items"} {
		r := do(t, "GET", tn.Endpoint+path, f.token(t, tn.ID), nil)
		if r.status != http.StatusBadGateway || string(r.body) != `{"message": "Internal server error"}` {
			t.Errorf("GET %s on a broken release: %d %s, want 502 and API Gateway's body", path, r.status, r.body)
		}
	}
	// Asked again (a reconciler pass), the host does not repeat itself.
	if url, err := f.host.Endpoint(ctx, tn, nil); err != nil || url != tn.Endpoint {
		t.Fatalf("Endpoint again = %q, %v; want %s", url, err, tn.Endpoint)
	}
	lines := strings.Count(logs.String(), `msg="tenant app cannot start"`)
	want := `level=ERROR msg="tenant app cannot start" tenant=echo location=` + broken + ` reason="Runtime.InvalidEntrypoint: the package has no bootstrap"`
	if lines != 1 || !strings.Contains(logs.String(), want) {
		t.Errorf("logged the broken package %d times, want once as %s:\n%s", lines, want, logs.String())
	}

	// Rolled back to a good package: the same URL is healthy.
	pkgs.set("s3://silo-artifacts/releases/code/good.zip", zipOf(t, map[string]string{"bootstrap": "#!/bin/sh\n"}), nil)
	url, err := f.host.Endpoint(ctx, tn, nil)
	if err != nil || url != tn.Endpoint {
		t.Fatalf("Endpoint after the rollback = %q, %v; want %s", url, err, tn.Endpoint)
	}
	var h tenantapp.Health
	r := do(t, "GET", url+"/health", "", nil)
	r.json(t, &h)
	if r.status != http.StatusOK || h.Status != "ok" || h.Tenant != "echo" {
		t.Errorf("health after the rollback: %d %s, want 200 ok", r.status, r.body)
	}

	// The package cannot be read: that is Endpoint's error, and the app
	// keeps serving what it served.
	pkgs.set("", nil, errors.New("s3 is down"))
	if _, err := f.host.Endpoint(ctx, tn, nil); err == nil || !strings.Contains(err.Error(), "s3 is down") {
		t.Errorf("Endpoint when the package cannot be read: %v, want the error", err)
	}
	if r := do(t, "GET", url+"/health", "", nil); r.status != http.StatusOK {
		t.Errorf("health after a failed Endpoint: %d %s", r.status, r.body)
	}
}
