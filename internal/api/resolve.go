package api

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// GET /v1/resolve tells a central front end where a tenant's own API is,
// so its users' requests go straight to the tenant's account and never
// through a shared data path. Two forms:
//
//   - ?tenant=ID, public: the endpoint of a serving tenant (ACTIVE or
//     UPDATING). Every other id, unknown or not serving, gets the same 404,
//     so the form cannot enumerate tenants; it has its own per-client rate
//     limit.
//   - Authorization: Bearer <end-user token of the tenant application>: the
//     token is verified as a user token (the tenant app's issuer and
//     audience, a "tenant" claim) and its tenant resolved. Operator tokens
//     carry another audience and are refused.

// ResolveView is the answer to GET /v1/resolve.
type ResolveView struct {
	ID       string         `json:"tenant_id"`
	Endpoint string         `json:"endpoint"`
	DNSName  string         `json:"dns_name,omitempty"`
	Region   string         `json:"region"`
	State    registry.State `json:"state"`
}

// User is a verified end user of a tenant application.
type User struct {
	Subject string
	// Tenant is the token's tenant claim.
	Tenant string
}

// UserVerifier checks an end user's bearer token of the tenant
// application.
type UserVerifier interface {
	VerifyUser(ctx context.Context, token string) (User, error)
}

// Error codes of /v1/resolve.
const (
	CodeTenantSuspended = "tenant_suspended"
	CodeTenantNotReady  = "tenant_not_ready"
	CodeNotConfigured   = "not_configured"
)

// Defaults of the resolve rate limit (per client).
const (
	DefaultResolveRate  = 20
	DefaultResolveBurst = 100
)

var (
	// errNotServing is the one answer for every tenant id that does not
	// resolve publicly, whatever the reason.
	errNotServing    = fail(http.StatusNotFound, CodeNotFound, "no serving tenant with this id")
	errResolveForm   = fail(http.StatusBadRequest, CodeInvalidRequest, "give ?tenant=ID, or an end user's bearer token")
	errNoUserTokens  = fail(http.StatusNotImplemented, CodeNotConfigured, "resolving by user token is not configured on this API")
	errBadUserToken  = fail(http.StatusUnauthorized, CodeUnauthorized, "the bearer token is not a valid user token of the tenant application")
	errUserExpired   = fail(http.StatusUnauthorized, CodeUnauthorized, "the user token has expired")
	errUserSuspended = fail(http.StatusForbidden, CodeTenantSuspended, "the token's tenant is suspended")
	errUserNotReady  = fail(http.StatusConflict, CodeTenantNotReady, "the token's tenant is not serving yet")
	errUserNoTenant  = fail(http.StatusNotFound, CodeNotFound, "the token's tenant does not exist")
)

// customer reports whether t is a customer tenant (not a preview or a
// pool account, which nobody resolves).
func customer(t *registry.Route) bool { return t.Kind == "" || t.Kind == registry.KindTenant }

func resolveView(t *registry.Route) ResolveView {
	return ResolveView{ID: t.ID, Endpoint: t.Endpoint, DNSName: t.Attributes[vending.AttrDNSName], Region: t.Region, State: t.State}
}

func (a *API) resolve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if ok, wait := a.resolveLimits.allow(clientKey(r, a.o.TrustForwardedFor), a.d.Now()); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(ctx, w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many resolves from this client; retry later"))
		return
	}
	if r.URL.Query().Has("tenant") {
		a.resolveByID(w, r, r.URL.Query().Get("tenant"))
		return
	}
	tok, ok := bearer(r)
	if !ok {
		writeError(ctx, w, errResolveForm)
		return
	}
	a.resolveByUser(w, r, tok)
}

// placeholderID is what resolveByID reads in place of an id that cannot
// be a tenant's. Any well-formed id would do: what it finds is ignored.
const placeholderID = "resolve-placeholder"

// resolveByID makes the same one registry read for every id: a serving
// tenant, one that does not serve or may not be resolved (a preview), an
// unknown id, and a malformed one (it reads placeholderID instead) all
// cost one consistent Query of one tenant item that DynamoDB filters down
// to serving tenants (registry.GetServingRoute). Every id that does not
// resolve comes back as the same empty page and gets the same 404 body,
// so neither the answer nor the work behind it tells a tenant that exists
// from one that does not (BenchmarkResolve measures the times).
func (a *API) resolveByID(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	lookup, wellFormed := id, registry.ValidateID(id) == nil
	if !wellFormed {
		lookup = placeholderID
	}
	t, err := a.d.Registry.GetServingRoute(ctx, lookup)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		writeError(ctx, w, errNotServing)
	case err != nil:
		writeError(ctx, w, err)
	case !wellFormed:
		writeError(ctx, w, errNotServing)
	default:
		writeJSON(w, http.StatusOK, resolveView(t))
	}
}

func (a *API) resolveByUser(w http.ResponseWriter, r *http.Request, tok string) {
	ctx := r.Context()
	if a.d.Users == nil {
		writeError(ctx, w, errNoUserTokens)
		return
	}
	if isStatusToken(tok) {
		writeError(ctx, w, errBadUserToken)
		return
	}
	u, err := a.d.Users.VerifyUser(ctx, tok)
	if err != nil {
		logger(ctx).InfoContext(ctx, "user token refused", "error", err)
		if errors.Is(err, ErrTokenExpired) {
			writeError(ctx, w, errUserExpired)
			return
		}
		writeError(ctx, w, errBadUserToken)
		return
	}
	t, err := a.d.Registry.GetRoute(ctx, u.Tenant)
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInvalid) {
		writeError(ctx, w, errUserNoTenant)
		return
	}
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	switch {
	case !customer(t):
		writeError(ctx, w, errUserNoTenant)
	case t.Serving():
		writeJSON(w, http.StatusOK, resolveView(t))
	case t.State == registry.StateSuspended:
		writeError(ctx, w, errUserSuspended)
	case t.State == registry.StateDecommissioning || t.State == registry.StateClosed:
		writeError(ctx, w, errUserNoTenant)
	default: // still being vended, or FAILED (waiting for an operator)
		writeError(ctx, w, errUserNotReady)
	}
}

// JWTUserVerifier verifies RS256 end-user tokens of the tenant application,
// as internal/issuer mints them: the app's issuer and audience, a subject
// and a "tenant" claim.
type JWTUserVerifier struct {
	key    *rsa.PublicKey
	parser *jwt.Parser
}

// NewJWTUserVerifier returns a verifier of user tokens signed by cfg.Key.
// cfg.Audience is the tenant application's and is required; it may not be
// the operator Audience, so an operator token is never a user token.
func NewJWTUserVerifier(cfg JWTConfig) (*JWTUserVerifier, error) {
	if cfg.Key == nil || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("api: user token verifier needs a key, an issuer and an audience")
	}
	if cfg.Audience == Audience {
		return nil, fmt.Errorf("api: user tokens may not have the operator audience %q", Audience)
	}
	return &JWTUserVerifier{key: cfg.Key, parser: cfg.parser()}, nil
}

// userTenantClaim names the tenant in a user token (tenantapp.TenantClaim,
// issuer.TenantClaim).
const userTenantClaim = "tenant"

// VerifyUser checks the token and returns its subject and tenant. A token
// that also names the operator audience is refused.
func (v *JWTUserVerifier) VerifyUser(_ context.Context, token string) (User, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return v.key, nil })
	if errors.Is(err, jwt.ErrTokenExpired) {
		return User{}, ErrTokenExpired
	}
	if err != nil {
		return User{}, fmt.Errorf("verify user token: %w", err)
	}
	if aud, _ := claims.GetAudience(); slices.Contains(aud, Audience) {
		return User{}, errors.New("verify user token: an operator token")
	}
	sub, _ := claims.GetSubject()
	tenant, _ := claims[userTenantClaim].(string)
	if sub == "" || tenant == "" {
		return User{}, errors.New("verify user token: no subject or no tenant claim")
	}
	return User{Subject: sub, Tenant: tenant}, nil
}
