package tenantapp

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TenantClaim is the JWT claim that names the tenant a token was issued for.
// It must equal the app's TENANT_ID. (internal/issuer mints the same claim.)
const TenantClaim = "tenant"

// claims are the parts of a token the app reads.
type claims struct {
	jwt.RegisteredClaims
	Tenant string `json:"tenant"`
}

// principal is the authenticated caller of a request.
type principal struct {
	Subject string
	Tenant  string
}

var (
	errNoToken      = errors.New("no bearer token")
	errUnknownKeyID = errors.New("unknown key id")
	// errKeysUnavailable means the key set could not be fetched: the
	// fault is ours (or the issuer's), not the caller's.
	errKeysUnavailable = errors.New("signing keys unavailable")
)

// authenticator verifies bearer tokens: RS256 only, signed by a key of the
// issuer's JWKS, with the configured issuer and audience, not expired, for
// this tenant.
type authenticator struct {
	tenant string
	parser *jwt.Parser
	keys   *jwks
}

func newAuthenticator(cfg Config, client *http.Client) *authenticator {
	return &authenticator{
		tenant: cfg.TenantID,
		parser: jwt.NewParser(
			// Pinning the algorithm stops "alg":"none" and HS256-with-the-
			// public-key confusion before any key is looked at.
			jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.ClockSkew),
		),
		keys: newJWKS(cfg.JWKSURL, client, cfg.JWKSRefreshInterval, cfg.JWKSMaxAge),
	}
}

// authenticate returns the caller of r, or an error saying why not.
func (au *authenticator) authenticate(ctx context.Context, r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return principal{}, errNoToken
	}
	var c claims
	_, err := au.parser.ParseWithClaims(strings.TrimSpace(raw), &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errUnknownKeyID
		}
		return au.keys.key(ctx, kid)
	})
	if err != nil {
		return principal{}, err
	}
	return principal{Subject: c.Subject, Tenant: c.Tenant}, nil
}

// authed wraps h with bearer authentication and the tenant check.
func (a *App) authed(h func(w http.ResponseWriter, r *http.Request, p principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		p, err := a.auth.authenticate(ctx, r)
		switch {
		case errors.Is(err, errKeysUnavailable):
			a.log.ErrorContext(ctx, "cannot verify token", "err", err)
			writeError(w, http.StatusServiceUnavailable, "unavailable", "cannot verify tokens right now")
			return
		case errors.Is(err, errNoToken):
			w.Header().Set("WWW-Authenticate", `Bearer realm="silo"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
			return
		case err != nil:
			// RFC 6750: say the token is invalid, not in which way; the
			// detail goes to the log for whoever runs the issuer.
			a.log.InfoContext(ctx, "token rejected", "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="silo", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", "the bearer token is invalid or expired")
			return
		}
		if p.Tenant != a.cfg.TenantID {
			a.log.WarnContext(ctx, "token for another tenant", "token_tenant", p.Tenant, "subject", p.Subject)
			writeError(w, http.StatusForbidden, "forbidden", "the token is not for this tenant")
			return
		}
		h(w, r, p)
	})
}

// jwks is a cached JSON Web Key Set fetched over HTTP. A token with an
// unknown kid triggers a refetch (the issuer may have rotated), at most once
// per minInterval so forged kids cannot turn the app into a traffic
// amplifier against the issuer. Fetches are single-flight.
type jwks struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time

	fetchMu sync.Mutex // held while fetching: one fetch at a time

	mu          sync.RWMutex
	keys        map[string]*rsa.PublicKey
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last fetch, successful or not
}

func newJWKS(url string, client *http.Client, minInterval, maxAge time.Duration) *jwks {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return &jwks{url: url, client: client, minInterval: minInterval, maxAge: maxAge, now: time.Now}
}

// key returns the verification key kid.
func (j *jwks) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, ok, fresh := j.cached(kid); ok && fresh {
		return k, nil
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	// Someone else may have fetched while we waited.
	k, ok, fresh := j.cached(kid)
	if ok && fresh {
		return k, nil
	}
	j.mu.RLock()
	recent := j.now().Sub(j.attemptedAt) < j.minInterval
	j.mu.RUnlock()
	if recent {
		if ok {
			return k, nil // stale but known: better than refusing every caller
		}
		return nil, errUnknownKeyID
	}
	keys, err := j.fetch(ctx)
	j.mu.Lock()
	j.attemptedAt = j.now()
	if err == nil {
		j.keys, j.fetchedAt = keys, j.attemptedAt
	}
	j.mu.Unlock()
	if err != nil {
		if ok {
			return k, nil
		}
		return nil, fmt.Errorf("%w: %v", errKeysUnavailable, err)
	}
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, errUnknownKeyID
}

func (j *jwks) cached(kid string) (k *rsa.PublicKey, ok, fresh bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	k, ok = j.keys[kid]
	return k, ok, j.now().Sub(j.fetchedAt) < j.maxAge
}

// fetch downloads and parses the key set.
func (j *jwks) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %s: %w", j.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks %s: status %s", j.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read jwks %s: %w", j.url, err)
	}
	return parseJWKS(body)
}

// minRSABits rejects keys too weak to trust, whatever the issuer publishes.
const minRSABits = 2048

// parseJWKS returns the usable RS256 signing keys of a JWKS document by kid.
// Keys of other types or uses are ignored, not errors: issuers publish
// encryption and EC keys alongside.
func parseJWKS(body []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			continue
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			continue
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("parse jwks: no usable RS256 keys")
	}
	return keys, nil
}
