package issuer

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

func newTestIssuer(t *testing.T, o Options) (*Issuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss, err := New(srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", iss)
	return iss, srv
}

func TestMintVerifies(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	iss, _ := newTestIssuer(t, Options{Audience: "app", Now: func() time.Time { return now }})
	tok, err := iss.Mint("t-1", "alice", time.Hour, map[string]any{"role": "admin"})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now })).
		ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return iss.PublicKey(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Header["kid"]; got != iss.KeyID() {
		t.Errorf("kid = %v, want %s", got, iss.KeyID())
	}
	delete(claims, "jti") // random
	want := jwt.MapClaims{
		"iss": iss.URL(), "sub": "alice", "aud": "app", "tenant": "t-1", "role": "admin",
		"iat": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix()),
	}
	if d := cmp.Diff(want, claims); d != "" {
		t.Errorf("claims (-want +got):\n%s", d)
	}
}

func TestMintExtraOverridesAndExpiry(t *testing.T) {
	iss, _ := newTestIssuer(t, Options{})
	tok, err := iss.Mint("t-1", "alice", -time.Minute, map[string]any{"aud": "other"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = jwt.NewParser(jwt.WithAudience(DefaultAudience)).
		Parse(tok, func(*jwt.Token) (any, error) { return iss.PublicKey(), nil })
	if !errors.Is(err, jwt.ErrTokenExpired) || !errors.Is(err, jwt.ErrTokenInvalidAudience) {
		t.Errorf("err = %v, want expired and invalid audience", err)
	}
}

func TestDistinctIssuersHaveDistinctKeyIDs(t *testing.T) {
	a, _ := newTestIssuer(t, Options{})
	b, _ := newTestIssuer(t, Options{})
	if a.KeyID() == b.KeyID() {
		t.Errorf("two issuers share kid %s", a.KeyID())
	}
	c, _ := newTestIssuer(t, Options{KeyID: "fixed"})
	if c.KeyID() != "fixed" {
		t.Errorf("kid = %s, want fixed", c.KeyID())
	}
}

func TestHandler(t *testing.T) {
	iss, srv := newTestIssuer(t, Options{})
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantJSON           map[string]any
	}{
		{name: "discovery", method: "GET", path: DiscoveryPath, wantStatus: 200, wantJSON: map[string]any{
			"issuer": iss.URL(), "jwks_uri": iss.JWKSURL(),
			"id_token_signing_alg_values_supported": []any{"RS256"},
			"claims_supported":                      []any{"iss", "sub", "aud", "exp", "iat", "jti", "tenant"},
		}},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404},
		{name: "post jwks", method: "POST", path: JWKSPath, wantStatus: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantJSON == nil {
				return
			}
			var got map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.wantJSON, got); d != "" {
				t.Errorf("body (-want +got):\n%s", d)
			}
		})
	}

	t.Run("jwks", func(t *testing.T) {
		resp, err := srv.Client().Get(iss.JWKSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		if len(set.Keys) != 1 {
			t.Fatalf("keys = %d, want 1", len(set.Keys))
		}
		k := set.Keys[0]
		if k["kid"] != iss.KeyID() || k["kty"] != "RSA" || k["alg"] != "RS256" || k["e"] != "AQAB" || k["n"] == "" {
			t.Errorf("key = %v", k)
		}
	})
}

// TestPublicKeyPEM: the PEM holds the issuer's own key, so a verifier
// built from it (as the deployed API builds one from its stack parameter)
// accepts the issuer's tokens.
func TestPublicKeyPEM(t *testing.T) {
	iss, _ := newTestIssuer(t, Options{})
	s, err := iss.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("not a PUBLIC KEY PEM block: %q", s)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint("t1", "someone", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"RS256"})); err != nil {
		t.Errorf("a token of the issuer does not verify with the PEM's key: %v", err)
	}
	other, _ := newTestIssuer(t, Options{})
	if s2, _ := other.PublicKeyPEM(); s2 == s {
		t.Error("two issuers have the same public key PEM")
	}
}
