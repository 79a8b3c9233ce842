// Package issuer is a small RS256 token issuer for local mode and tests. It
// stands in for the real identity provider a tenant's users sign in with: it
// holds one RSA key, publishes it as a JWKS (and an OpenID discovery document
// naming it), and mints tokens carrying silo's tenant claim.
//
// It is not an identity provider: it authenticates no one, and anyone who can
// call Mint gets a token. Never expose it outside a test or a local platform.
package issuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TenantClaim is the JWT claim naming the tenant a token is for. The tenant
// application (internal/tenantapp) checks the same claim name.
const TenantClaim = "tenant"

// Well-known paths served by the issuer's handler, relative to its URL.
const (
	JWKSPath      = "/.well-known/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Options tune New. The zero value is usable.
type Options struct {
	// Audience is the default "aud" of minted tokens; "silo-tenant-app" when empty.
	Audience string
	// KeyID is the "kid" of the key; when empty it is the key's RFC 7638
	// thumbprint, so two issuers never share a kid by accident.
	KeyID string
	// Bits is the RSA modulus size; 2048 when zero.
	Bits int
	// Now is the clock used for iat and exp; time.Now when nil.
	Now func() time.Time
}

// DefaultAudience is the audience used when Options.Audience is empty.
const DefaultAudience = "silo-tenant-app"

// Issuer mints RS256 tokens and serves its public key. It is an http.Handler
// for the well-known paths; mount it at the root of the issuer URL.
type Issuer struct {
	url      string
	audience string
	kid      string
	key      *rsa.PrivateKey
	now      func() time.Time
	jwks     []byte
	disco    []byte
}

// New generates a key and returns an issuer whose "iss" is issuerURL (the
// base URL its handler is served at, without a trailing slash).
func New(issuerURL string, o Options) (*Issuer, error) {
	issuerURL = strings.TrimSuffix(issuerURL, "/")
	if issuerURL == "" {
		return nil, errors.New("issuer: empty issuer URL")
	}
	bits := o.Bits
	if bits == 0 {
		bits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("issuer: generate rsa key: %w", err)
	}
	i := &Issuer{url: issuerURL, audience: o.Audience, kid: o.KeyID, key: key, now: o.Now}
	if i.audience == "" {
		i.audience = DefaultAudience
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.kid == "" {
		i.kid = thumbprint(&key.PublicKey)
	}
	// Both documents are fixed for the issuer's life: render them once.
	i.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"use": "sig",
		"alg": "RS256",
		"kid": i.kid,
		"n":   b64(key.N.Bytes()),
		"e":   b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		return nil, fmt.Errorf("issuer: render jwks: %w", err)
	}
	i.disco, err = json.Marshal(map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.JWKSURL(),
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "jti", TenantClaim},
	})
	if err != nil {
		return nil, fmt.Errorf("issuer: render discovery: %w", err)
	}
	return i, nil
}

// URL is the issuer's "iss" value.
func (i *Issuer) URL() string { return i.url }

// JWKSURL is where the issuer's handler serves its key set.
func (i *Issuer) JWKSURL() string { return i.url + JWKSPath }

// Audience is the default "aud" of minted tokens.
func (i *Issuer) Audience() string { return i.audience }

// KeyID is the "kid" of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// PublicKey is the verification key.
func (i *Issuer) PublicKey() *rsa.PublicKey { return &i.key.PublicKey }

// PublicKeyPEM is the verification key as PEM (a PKIX "PUBLIC KEY"
// block): what the control-plane stack's OperatorPublicKey parameter
// takes, so tokens this issuer mints are accepted by the deployed API and
// console.
func (i *Issuer) PublicKeyPEM() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("issuer: encode the public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// Mint returns a signed RS256 token for subject acting in tenantID, valid for
// ttl from now (a negative ttl gives an already expired token, for tests).
// extra claims are applied last and may override the standard ones, so a
// test can mint a token with a wrong "aud" or "iss".
func (i *Issuer) Mint(tenantID, subject string, ttl time.Duration, extra map[string]any) (string, error) {
	now := i.now()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("issuer: token id: %w", err)
	}
	claims := jwt.MapClaims{
		"iss":       i.url,
		"sub":       subject,
		"aud":       i.audience,
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       b64(id),
		TenantClaim: tenantID,
	}
	for k, v := range extra {
		claims[k] = v
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(i.key)
	if err != nil {
		return "", fmt.Errorf("issuer: sign token: %w", err)
	}
	return s, nil
}

// ServeHTTP serves the JWKS and the discovery document; anything else is 404.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	switch r.URL.Path {
	case JWKSPath:
		body = i.jwks
	case DiscoveryPath:
		body = i.disco
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Verifiers cache the key set; a short max-age keeps rotation in tests cheap.
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(body)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// thumbprint is the RFC 7638 JWK thumbprint of an RSA public key: SHA-256
// over the required members in lexicographic order, without whitespace.
func thumbprint(k *rsa.PublicKey) string {
	e := b64(big.NewInt(int64(k.E)).Bytes())
	canon := `{"e":"` + e + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}
