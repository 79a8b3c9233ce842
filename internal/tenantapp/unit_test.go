package tenantapp

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigFromEnv(t *testing.T) {
	full := map[string]string{
		EnvTenantID: "t-1", EnvVersion: "v1", EnvTable: "items", EnvBucket: "b", EnvKMSKey: "arn:aws:kms:us-east-1:1:key/k",
		EnvSecretARN: "arn:s", EnvIssuer: "https://id.example.com/", EnvAudience: "api",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range full {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		wantURL string
	}{
		{name: "full, default jwks url", env: full, wantURL: "https://id.example.com/.well-known/jwks.json"},
		{name: "explicit jwks url", env: with(EnvJWKSURL, "https://keys.example.com/k.json"), wantURL: "https://keys.example.com/k.json"},
		{name: "missing one", env: with(EnvTable, ""), wantErr: "missing environment variables: TABLE_NAME"},
		{name: "nothing set", env: map[string]string{}, wantErr: "TENANT_ID, APP_VERSION, TABLE_NAME, BUCKET_NAME, KMS_KEY_ID, SECRET_ARN, JWT_ISSUER, JWT_AUDIENCE"},
		{name: "issuer not a url", env: with(EnvIssuer, "id.example.com"), wantErr: "JWT_ISSUER"},
		{name: "jwks not a url", env: with(EnvJWKSURL, "ftp://x/y"), wantErr: "JWKS_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := configFrom(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.withDefaults().JWKSURL; got != tc.wantURL {
				t.Errorf("jwks url = %q, want %q", got, tc.wantURL)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	id := newID()
	got, err := decodeCursor(encodeCursor(id))
	if err != nil || got != id {
		t.Errorf("round trip = %q, %v; want %q", got, err, id)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(strings.Repeat("a", 32)))
	f.Add(encodeCursor(newID()))
	f.Add("")
	f.Add("x")
	f.Add("eyJ2IjoxfQ") // {"v":1}
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"after":"../../etc"}`)))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"after":"` + strings.Repeat("A", 32) + `"}`)))
	f.Add(strings.Repeat("A", maxCursorLen+1))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			if id != "" {
				t.Errorf("decodeCursor(%q) = %q with error %v", s, id, err)
			}
			return
		}
		// Whatever decodes names a well-formed id and survives a round trip.
		if !validID(id) {
			t.Errorf("decodeCursor(%q) = invalid id %q", s, id)
		}
		if again, err := decodeCursor(encodeCursor(id)); err != nil || again != id {
			t.Errorf("re-encode of %q: %q, %v", id, again, err)
		}
	})
}

func TestParseJWKS(t *testing.T) {
	big2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	jwk := func(kid string, k *rsa.PublicKey, extra map[string]string) map[string]string {
		m := map[string]string{"kty": "RSA", "kid": kid,
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
		for kk, v := range extra {
			m[kk] = v
		}
		return m
	}
	set := func(keys ...map[string]string) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	tests := []struct {
		name     string
		body     []byte
		wantKids []string
		wantErr  bool
	}{
		{name: "one key", body: set(jwk("a", &big2048.PublicKey, nil)), wantKids: []string{"a"}},
		{name: "skips weak, enc, ec and other algs", body: set(
			jwk("ok", &big2048.PublicKey, map[string]string{"use": "sig", "alg": "RS256"}),
			jwk("weak", &small.PublicKey, nil),
			jwk("enc", &big2048.PublicKey, map[string]string{"use": "enc"}),
			jwk("ps", &big2048.PublicKey, map[string]string{"alg": "PS256"}),
			map[string]string{"kty": "EC", "kid": "ec", "crv": "P-256"},
			jwk("", &big2048.PublicKey, nil),
		), wantKids: []string{"ok"}},
		{name: "no usable key", body: set(jwk("weak", &small.PublicKey, nil)), wantErr: true},
		{name: "not json", body: []byte("<html>"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS(tc.body)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var kids []string
			for kid := range keys {
				kids = append(kids, kid)
			}
			if d := cmp.Diff(tc.wantKids, kids); d != "" {
				t.Errorf("kids (-want +got):\n%s", d)
			}
		})
	}
}
