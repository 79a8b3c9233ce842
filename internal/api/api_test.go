package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

const testIssuer = "https://issuer.test"

// calls records what the API asked of the control plane.
type calls struct {
	mu      sync.Mutex
	kicks   []string
	retries []string
}

func (c *calls) kick(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kicks = append(c.kicks, id)
}

func (c *calls) Kicks() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.kicks...)
}

type fixture struct {
	api   *API
	store *registry.Store
	db    *dynamodb.Client
	iss   *issuer.Issuer
	calls *calls
	logs  *syncBuffer
}

// syncBuffer is a log sink shared by concurrent requests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newFixture resets the emulator, creates a registry table "t" and an API on it.
func newFixture(t testing.TB, o Options) *fixture {
	t.Helper()
	ctx := t.Context()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	store := registry.New(db, "t")
	if err := store.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	return newAPI(t, store, db, o)
}

func newAPI(t testing.TB, store *registry.Store, db *dynamodb.Client, o Options) *fixture {
	t.Helper()
	iss, err := issuer.New(testIssuer, issuer.Options{Audience: Audience})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL()})
	if err != nil {
		t.Fatal(err)
	}
	// End users' tokens of the tenant app: same issuer and key as the
	// operators' here (as in local mode), another audience.
	users, err := NewJWTUserVerifier(JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL(), Audience: issuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, db: db, iss: iss, calls: &calls{}, logs: &syncBuffer{}}
	if o.StatusSecret == nil {
		o.StatusSecret = []byte("0123456789abcdef0123456789abcdef")
	}
	if o.SignupRate == 0 {
		o.SignupRate = rate.Inf
	}
	if o.DomainSignupRate == 0 {
		o.DomainSignupRate = rate.Inf
	}
	f.api, err = New(Deps{
		Registry: store,
		Kick:     f.calls.kick,
		Retry: func(ctx context.Context, id, actor, reason string) (*registry.Tenant, error) {
			f.calls.mu.Lock()
			f.calls.retries = append(f.calls.retries, id+" "+actor+" "+reason)
			f.calls.mu.Unlock()
			t, err := store.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if t.State != registry.StateFailed { // as vending.Reconciler.Retry
				return nil, fmt.Errorf("tenant %s is %s, not FAILED: %w", id, t.State, registry.ErrInvalidTransition)
			}
			return store.Transition(ctx, t, t.FailedFrom, registry.Change{Actor: actor, Reason: reason, Type: "retry"})
		},
		Verifier: v,
		Users:    users,
		Log:      slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// token mints an operator token.
func (f *fixture) token(t testing.TB, sub string, role Role) string {
	t.Helper()
	tok, err := f.iss.Mint("", sub, time.Hour, map[string]any{RoleClaim: string(role)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type req struct {
	method, path, body string
	header             map[string]string
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t testing.TB, r req) resp {
	t.Helper()
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	hr.RemoteAddr = "192.0.2.1:1234"
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, hr)
	return resp{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (r resp) errorCode(t *testing.T) string {
	t.Helper()
	var b ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	return b.Error.Code
}

func decode[T any](t testing.TB, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

// snapshot is every item of the table, sorted. (Tests may scan; the API may not.)
func (f *fixture) snapshot(t *testing.T) []string {
	t.Helper()
	var out []string
	p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{TableName: aws.String(f.store.Table())})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			var m map[string]any
			if err := attributevalue.UnmarshalMap(it, &m); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	return out
}

const goodBody = `{"name":"Acme Corp","email":"Ops@Acme.example","tier":"standard","region":"us-east-1"}`

// signupReq is a signup under the strong key testKey(key).
func signupReq(key, body string) req {
	return req{method: http.MethodPost, path: "/v1/signup", body: body,
		header: map[string]string{IdempotencyKeyHeader: testKey(key), "Content-Type": "application/json"}}
}

// testKey turns a test's label into an Idempotency-Key that passes the
// rule, the same for the same label: the label, then 32 hex digits of its
// hash.
func testKey(label string) string {
	sum := sha256.Sum256([]byte(label))
	return label + "-" + hex.EncodeToString(sum[:16])
}

// signup makes a tenant through the API and returns its answer.
func (f *fixture) signup(t testing.TB, key, name string) SignupResponse {
	t.Helper()
	body := strings.Replace(goodBody, "Acme Corp", name, 1)
	r := f.do(t, signupReq(key, body))
	if r.status != http.StatusAccepted {
		t.Fatalf("signup %s: %d %s", name, r.status, r.body)
	}
	return decode[SignupResponse](t, r)
}

func httptestRequest(r req, remote string) *http.Request {
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	hr.RemoteAddr = remote
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	return hr
}

func (f *fixture) serve(hr *http.Request) resp {
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, hr)
	return resp{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}
