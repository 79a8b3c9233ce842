package api

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what an operator token allows. Each role includes the ones below it.
type Role string

// The roles, weakest first.
const (
	RoleViewer   Role = "viewer"   // read tenants and events
	RoleOperator Role = "operator" // suspend, resume, retry, redeploy
	RoleAdmin    Role = "admin"    // decommission
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether r includes need.
func (r Role) Allows(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// Principal is a verified operator.
type Principal struct {
	Subject string
	Role    Role
}

// Actor is how the principal appears in audit events.
func (p Principal) Actor() string { return "operator:" + p.Subject }

// Verifier checks an operator bearer token.
type Verifier interface {
	Verify(ctx context.Context, token string) (Principal, error)
}

// ErrTokenExpired is returned by a Verifier for a token past its expiry.
var ErrTokenExpired = errors.New("token expired")

// Operator token claims.
const (
	RoleClaim = "role"
	// Audience is the "aud" operator tokens must carry, so a token minted
	// for a tenant application is never accepted here.
	Audience = "silo-api"
)

// JWTVerifier verifies RS256 operator tokens, as minted by internal/issuer
// with a "role" claim and the Audience.
type JWTVerifier struct {
	key    *rsa.PublicKey
	parser *jwt.Parser
}

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// Key is the issuer's public key (issuer.PublicKey, or a key from its JWKS).
	Key *rsa.PublicKey
	// Issuer is the required "iss".
	Issuer string
	// Audience is the required "aud"; Audience when empty.
	Audience string
	// Now is the clock for exp/nbf/iat; time.Now when nil.
	Now func() time.Time
	// Leeway tolerates clock skew.
	Leeway time.Duration
}

// ParsePublicKeyPEM reads an RSA public key in PEM (PKIX), as the
// control-plane stack hands the operator issuer's key to the Lambdas.
func ParsePublicKeyPEM(s string) (*rsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA public key")
	}
	return key, nil
}

// NewJWTVerifier returns a verifier for tokens signed by cfg.Key.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Key == nil || cfg.Issuer == "" {
		return nil, errors.New("api: JWT verifier needs a key and an issuer")
	}
	if cfg.Audience == "" {
		cfg.Audience = Audience
	}
	return &JWTVerifier{key: cfg.Key, parser: cfg.parser()}, nil
}

// parser is the one parser configuration of operator and user tokens:
// RS256 only, the issuer and audience required, expiry required.
func (cfg JWTConfig) parser() *jwt.Parser {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	return jwt.NewParser(opts...)
}

// Verify checks the token's signature, issuer, audience and times, and
// returns its subject and role. A token without a known role is refused.
func (v *JWTVerifier) Verify(_ context.Context, token string) (Principal, error) {
	claims := jwt.MapClaims{}
	// One key: the kid is not consulted (the signature decides).
	_, err := v.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return v.key, nil })
	if errors.Is(err, jwt.ErrTokenExpired) {
		return Principal{}, ErrTokenExpired
	}
	if err != nil {
		return Principal{}, fmt.Errorf("verify token: %w", err)
	}
	sub, _ := claims.GetSubject()
	role, _ := claims[RoleClaim].(string)
	p := Principal{Subject: sub, Role: Role(role)}
	if sub == "" {
		return Principal{}, errors.New("verify token: no subject")
	}
	if p.Role.rank() == 0 {
		return Principal{}, fmt.Errorf("verify token: unknown role %q", role)
	}
	return p, nil
}

// statusTokens are the bearer tokens a signup hands out to read that one
// tenant's status. A token is HMAC-SHA256(secret, "silo-status-v1:"+id):
// deterministic, so a replayed signup answers with the same token, stateless,
// and useless for any other tenant. It does not expire; rotating the secret
// revokes all of them.
type statusTokens struct{ secret []byte }

const statusTokenPrefix = "sst1_"

func (s statusTokens) mint(tenantID string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("silo-status-v1:" + tenantID))
	return statusTokenPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s statusTokens) valid(token, tenantID string) bool {
	return hmac.Equal([]byte(token), []byte(s.mint(tenantID)))
}

func isStatusToken(token string) bool { return strings.HasPrefix(token, statusTokenPrefix) }

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

var (
	errNoToken      = fail(http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required")
	errBadToken     = fail(http.StatusUnauthorized, CodeUnauthorized, "the bearer token is not valid")
	errExpiredToken = fail(http.StatusUnauthorized, CodeUnauthorized, "the bearer token has expired")
	errStatusOnly   = fail(http.StatusForbidden, CodeForbidden, "a status token only reads the status of its own tenant")
)

// operator authenticates an operator token and checks it allows need.
func (a *API) operator(r *http.Request, need Role) (Principal, error) {
	tok, ok := bearer(r)
	if !ok {
		return Principal{}, errNoToken
	}
	if isStatusToken(tok) {
		return Principal{}, errStatusOnly
	}
	return a.verify(r, tok, need)
}

func (a *API) verify(r *http.Request, tok string, need Role) (Principal, error) {
	ctx := r.Context()
	p, err := a.d.Verifier.Verify(ctx, tok)
	if err != nil {
		logger(ctx).InfoContext(ctx, "token refused", "error", err)
		if errors.Is(err, ErrTokenExpired) {
			return Principal{}, errExpiredToken
		}
		return Principal{}, errBadToken
	}
	if !p.Role.Allows(need) {
		return Principal{}, fail(http.StatusForbidden, CodeForbidden, "role %s may not do this (needs %s)", p.Role, need)
	}
	return p, nil
}
