package console

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

const testIssuer = "https://issuer.test"

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

type fixture struct {
	c     *Console
	store *registry.Store
	org   *emulator.Org
	iss   *issuer.Issuer
	logs  *syncBuffer
	// viewer is a valid viewer token.
	viewer string
}

// newFixture resets the emulator, imports tenants into a fresh registry and
// builds a console on it; change adjusts the deps and options first.
func newFixture(t *testing.T, tenants []*registry.Tenant, change func(*fixture, *Deps, *Options)) *fixture {
	t.Helper()
	ctx := t.Context()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := registry.New(dynamodb.NewFromConfig(cfg), "t")
	if err := store.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	if len(tenants) > 0 {
		if err := store.ImportTenants(ctx, tenants); err != nil {
			t.Fatal(err)
		}
	}
	iss, err := issuer.New(testIssuer, issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.NewJWTVerifier(api.JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, org: org, iss: iss, logs: &syncBuffer{}}
	d := Deps{Registry: store, Verifier: v, Log: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	o := Options{}
	if change != nil {
		change(f, &d, &o)
	}
	f.c, err = New(d, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.c.Close)
	f.viewer = f.token(t, "vic", api.RoleViewer, time.Hour)
	return f
}

func (f *fixture) token(t testing.TB, sub string, role api.Role, ttl time.Duration) string {
	t.Helper()
	tok, err := f.iss.Mint("", sub, ttl, map[string]any{api.RoleClaim: string(role)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends one request; token "" sends no cookie.
func do(t testing.TB, h http.Handler, method, target, token string, form url.Values, header map[string]string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	if token != "" {
		r.AddCookie(&http.Cookie{Name: cookieName, Value: token})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return response{status: w.Code, header: w.Header(), body: w.Body.String()}
}

func (f *fixture) get(t testing.TB, target string) response {
	t.Helper()
	return do(t, f.c, http.MethodGet, target, f.viewer, nil, nil)
}

// mustGet fetches a page that must answer 200.
func (f *fixture) mustGet(t testing.TB, target string) string {
	t.Helper()
	r := f.get(t, target)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200; body:\n%s\nlogs:\n%s", target, r.status, r.body, f.logs.String())
	}
	return r.body
}

var fleetEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fleetTenants makes n tenants in mixed states, tiers, versions and health,
// deterministically from their index.
func fleetTenants(n int, now time.Time) []*registry.Tenant {
	states := registry.States()
	out := make([]*registry.Tenant, 0, n)
	for i := range n {
		st := registry.StateActive
		if i%3 == 0 {
			st = states[(i/3)%len(states)]
		}
		t := &registry.Tenant{
			Spec: registry.Spec{ID: fmt.Sprintf("t-%05d", i), Name: fmt.Sprintf("Tenant %05d", i), Email: fmt.Sprintf("ops%05d@example.com", i),
				Tier: []registry.Tier{registry.TierBasic, registry.TierStandard, registry.TierEnterprise}[i%3], Region: "us-east-1", Kind: registry.KindTenant},
			State:      st,
			AppVersion: "1.0." + strconv.Itoa(i%4),
			CreatedAt:  fleetEpoch,
			UpdatedAt:  fleetEpoch.Add(time.Duration((i*7919)%n) * time.Second),
		}
		if st != registry.StateRequested && st != registry.StateCreatingAccount {
			t.AccountID = fmt.Sprintf("%012d", 200000000000+i)
		}
		if st == registry.StateFailed {
			t.Reason = "stack instance failed"
		}
		if serving(st) || st == registry.StateSuspended {
			since := now.Add(-time.Duration(i) * time.Minute)
			up := 0.9 + float64(i%10)/100
			switch i % 7 {
			case 0, 1, 2, 3:
				t.Health = &registry.Health{Status: registry.HealthUp, Since: since, CheckedAt: now, LatencyMS: 40, Uptime24h: &up}
			case 4:
				t.Health = &registry.Health{Status: registry.HealthDegraded, Class: "slow", Detail: "took 2100ms", Since: since, CheckedAt: now, LatencyMS: 2100, Uptime24h: &up}
			case 5:
				t.Health = &registry.Health{Status: registry.HealthDown, Class: "status", Detail: "status 503", Since: since, CheckedAt: now, LatencyMS: 12}
			}
		}
		out = append(out, t)
	}
	return out
}

// tenantIDsIn returns the tenant ids linked in a list page, in order.
var tenantLink = regexp.MustCompile(`<tr>\s*<td><a href="/tenants/([a-z0-9-]+)">`)

func tenantIDsIn(body string) []string {
	var ids []string
	for _, m := range tenantLink.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}
