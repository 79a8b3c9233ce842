package tenantapp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/silo-saas/silo/internal/issuer"
)

func TestTenantClaimMatchesIssuer(t *testing.T) {
	if TenantClaim != issuer.TenantClaim {
		t.Errorf("tenantapp checks claim %q, issuer mints %q", TenantClaim, issuer.TenantClaim)
	}
}

func TestAuth(t *testing.T) {
	env := newTenantEnv(t)
	mint := func(tenant string, ttl time.Duration, extra map[string]any) string {
		tok, err := env.issuer.Mint(tenant, "alice", ttl, extra)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Issuers at the same URL that the app's JWKS does not list: one with
	// its own kid, one reusing the real kid (so only the signature is wrong).
	otherKey, err := issuer.New(env.issuer.URL(), issuer.Options{Audience: env.cfg.Audience})
	if err != nil {
		t.Fatal(err)
	}
	sameKid, err := issuer.New(env.issuer.URL(), issuer.Options{Audience: env.cfg.Audience, KeyID: env.issuer.KeyID()})
	if err != nil {
		t.Fatal(err)
	}
	mintWith := func(iss *issuer.Issuer) string {
		tok, err := iss.Mint(testTenant, "mallory", time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	validClaims := jwt.MapClaims{"iss": env.issuer.URL(), "aud": env.cfg.Audience, "tenant": testTenant,
		"sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()}
	hs256 := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims)
	hs256.Header["kid"] = env.issuer.KeyID()
	hsTok, err := hs256.SignedString([]byte("guessable"))
	if err != nil {
		t.Fatal(err)
	}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims)
	none.Header["kid"] = env.issuer.KeyID()
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		header     string // full Authorization header; "" sends none
		wantStatus int
		wantCode   string
	}{
		{name: "valid", header: "Bearer " + mint(testTenant, time.Hour, nil), wantStatus: 200},
		{name: "lowercase scheme", header: "bearer " + mint(testTenant, time.Hour, nil), wantStatus: 200},
		{name: "no token", wantStatus: 401, wantCode: "unauthorized"},
		{name: "basic auth", header: "Basic YWxpY2U6c2VjcmV0", wantStatus: 401, wantCode: "unauthorized"},
		{name: "empty bearer", header: "Bearer ", wantStatus: 401, wantCode: "unauthorized"},
		{name: "garbage", header: "Bearer not.a.jwt", wantStatus: 401, wantCode: "invalid_token"},
		{name: "another tenant", header: "Bearer " + mint("t-other", time.Hour, nil), wantStatus: 403, wantCode: "forbidden"},
		{name: "no tenant claim", header: "Bearer " + mint("", time.Hour, nil), wantStatus: 403, wantCode: "forbidden"},
		{name: "expired", header: "Bearer " + mint(testTenant, -time.Hour, nil), wantStatus: 401, wantCode: "invalid_token"},
		{name: "no expiry", header: "Bearer " + mint(testTenant, time.Hour, map[string]any{"exp": nil}), wantStatus: 401, wantCode: "invalid_token"},
		{name: "wrong audience", header: "Bearer " + mint(testTenant, time.Hour, map[string]any{"aud": "other-api"}), wantStatus: 401, wantCode: "invalid_token"},
		{name: "wrong issuer", header: "Bearer " + mint(testTenant, time.Hour, map[string]any{"iss": "https://evil.example"}), wantStatus: 401, wantCode: "invalid_token"},
		{name: "wrong signing key", header: "Bearer " + mintWith(otherKey), wantStatus: 401, wantCode: "invalid_token"},
		{name: "wrong key same kid", header: "Bearer " + mintWith(sameKid), wantStatus: 401, wantCode: "invalid_token"},
		{name: "hs256", header: "Bearer " + hsTok, wantStatus: 401, wantCode: "invalid_token"},
		{name: "alg none", header: "Bearer " + noneTok, wantStatus: 401, wantCode: "invalid_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", env.app.URL+"/items", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := env.app.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
			}
			if tc.wantCode == "" {
				return
			}
			r := response{status: resp.StatusCode}
			r.body = readAll(t, resp)
			if code := r.errorCode(t); code != tc.wantCode {
				t.Errorf("code = %q, want %q", code, tc.wantCode)
			}
		})
	}

	// Health stays open without a token.
	if r := env.do(t, "GET", "/health", "", nil); r.status != http.StatusOK {
		t.Errorf("health without token: %d", r.status)
	}
}

func TestAuthIssuerDown(t *testing.T) {
	env := newTenantEnv(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	env.cfg.JWKSURL = dead.URL + "/jwks.json"
	app := httptest.NewServer(env.newApp(t))
	defer app.Close()
	req, _ := http.NewRequest("GET", app.URL+"/items", nil)
	req.Header.Set("Authorization", "Bearer "+env.token(t))
	resp, err := app.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := response{status: resp.StatusCode, body: readAll(t, resp)}
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "unavailable" {
		t.Errorf("issuer down: %d %s, want 503 unavailable", r.status, r.body)
	}
	if strings.Contains(string(r.body), dead.URL) {
		t.Errorf("5xx body echoes internals: %s", r.body)
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJWKSRefresh drives the key cache with a fake clock: an unknown kid
// refetches the set, at most once per refresh interval, and a rotated key is
// picked up.
func TestJWKSRefresh(t *testing.T) {
	ctx := context.Background()
	a, err := issuer.New("https://issuer.example", issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := issuer.New("https://issuer.example", issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[issuer.Issuer]
	current.Store(a)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		current.Load().ServeHTTP(w, r)
	}))
	defer srv.Close()

	now := time.Unix(1_700_000_000, 0)
	j := newJWKS(srv.URL+issuer.JWKSPath, srv.Client(), 10*time.Second, time.Hour)
	j.now = func() time.Time { return now }

	steps := []struct {
		name        string
		advance     time.Duration
		rotate      bool
		kid         string
		wantErr     error
		wantFetches int32
	}{
		{name: "first use fetches", kid: a.KeyID(), wantFetches: 1},
		{name: "known kid is cached", advance: time.Second, kid: a.KeyID(), wantFetches: 1},
		{name: "unknown kid within interval is not fetched", advance: time.Second, kid: "forged", wantErr: errUnknownKeyID, wantFetches: 1},
		{name: "unknown kid after interval refetches", advance: 10 * time.Second, kid: "forged", wantErr: errUnknownKeyID, wantFetches: 2},
		{name: "rotated key found after interval", advance: 10 * time.Second, rotate: true, kid: b.KeyID(), wantFetches: 3},
		{name: "rotated-out key is refused", advance: 10 * time.Second, kid: a.KeyID(), wantErr: errUnknownKeyID, wantFetches: 4},
		{name: "known key is cached", advance: time.Second, kid: b.KeyID(), wantFetches: 4},
		{name: "known key refetched after max age", advance: time.Hour, kid: b.KeyID(), wantFetches: 5},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if s.rotate {
			current.Store(b)
		}
		k, err := j.key(ctx, s.kid)
		if !errors.Is(err, s.wantErr) {
			t.Errorf("%s: err = %v, want %v", s.name, err, s.wantErr)
		}
		if err == nil && k == nil {
			t.Errorf("%s: nil key", s.name)
		}
		if got := fetches.Load(); got != s.wantFetches {
			t.Errorf("%s: fetches = %d, want %d", s.name, got, s.wantFetches)
		}
	}
}
