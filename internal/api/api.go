// Package api is silo's HTTP API: public signup, tenant status, and the
// operator endpoints. It is one http.Handler, served by the API Lambda
// (through the API Gateway proxy adapter) and directly in local mode. HTTP
// status codes are chosen here and nowhere else: domain packages return
// sentinel errors, and errors.go maps them.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// Store is the part of the tenant registry the API uses; *registry.Store
// satisfies it.
type Store interface {
	Create(ctx context.Context, spec registry.Spec, key, actor string) (*registry.Tenant, bool, error)
	Get(ctx context.Context, id string) (*registry.Tenant, error)
	GetRoute(ctx context.Context, id string) (*registry.Route, error)
	GetServingRoute(ctx context.Context, id string) (*registry.Route, error)
	List(ctx context.Context, state registry.State, o registry.ListOptions) (*registry.Page, error)
	Transition(ctx context.Context, t *registry.Tenant, to registry.State, c registry.Change) (*registry.Tenant, error)
	Update(ctx context.Context, t *registry.Tenant, c registry.Change) (*registry.Tenant, error)
	Events(ctx context.Context, id string) ([]registry.Event, error)
}

// Deps are the API's collaborators.
type Deps struct {
	Registry Store
	// Kick asks for a tenant to be driven now (vending.Runner.Kick). It must
	// not block.
	Kick func(id string)
	// Retry restarts a FAILED tenant (vending.Reconciler.Retry).
	Retry func(ctx context.Context, id, actor, reason string) (*registry.Tenant, error)
	// Previews serves /v1/previews; those routes answer 404 when nil.
	Previews Previews
	// Rollouts serves /v1/rollouts and the tenants' pin and unpin; those
	// routes answer 404 when nil.
	Rollouts Rollouts
	// Releases serves POST /v1/releases; it answers 404 when nil.
	Releases Releases
	// Audits serves POST /v1/audit/isolation and GET
	// /v1/tenants/{id}/isolation; those routes answer 404 when nil.
	Audits Audits
	// Verifier checks operator bearer tokens.
	Verifier Verifier
	// Users checks end users' tokens of the tenant application for
	// GET /v1/resolve; when nil that form answers 501 not_configured.
	Users UserVerifier
	Log   *slog.Logger
	// Now is the clock of the rate limiter; time.Now when nil.
	Now func() time.Time
}

// Options tune the API.
type Options struct {
	// StatusSecret keys the HMAC of status tokens. Required: at least 32
	// bytes, and the same on every instance serving the API.
	StatusSecret []byte
	// BaseURL prefixes the status_url of a signup answer ("https://api.example.com");
	// the URL is relative when empty.
	BaseURL string
	// TrustForwardedFor makes the rate limiter key clients by the first hop
	// of X-Forwarded-For. Only set it behind a proxy that sets the header.
	TrustForwardedFor bool
	// SignupRate is how many signups per second one client may make
	// (DefaultSignupRate when zero; rate.Inf for no limit), with bursts of
	// SignupBurst (DefaultSignupBurst when zero).
	SignupRate  rate.Limit
	SignupBurst int
	// DomainSignupRate is how many signups per second may name an email
	// address of one registrable domain (a@x.evil.example and
	// b@y.evil.example are one domain, evil.example), whatever client sends
	// them (DefaultDomainSignupRate when zero; rate.Inf for no limit), with
	// bursts of DomainSignupBurst (DefaultDomainSignupBurst when zero). A
	// replayed signup, or one the registry refuses, gives its token back.
	DomainSignupRate  rate.Limit
	DomainSignupBurst int
	// ResolveRate and ResolveBurst limit GET /v1/resolve per client
	// (DefaultResolveRate and DefaultResolveBurst when zero; rate.Inf for
	// no limit), apart from the signup limit.
	ResolveRate  rate.Limit
	ResolveBurst int
	// MaxBody is the largest request body accepted (DefaultMaxBody when zero).
	MaxBody int64
	// MaxClients bounds the rate limiter's memory (DefaultMaxClients when zero).
	MaxClients int
	// Deadlines are the reconciler's state deadlines: tenant views say how
	// long each tenant has been in its state and whether it is past its
	// deadline (vending.DefaultDeadlines when zero).
	Deadlines vending.Deadlines
}

// Defaults of Options.
const (
	DefaultSignupRate  rate.Limit = 0.2 // one every five seconds, sustained
	DefaultSignupBurst            = 5
	// 20 an hour per email domain, sustained.
	DefaultDomainSignupRate  rate.Limit = 20.0 / 3600
	DefaultDomainSignupBurst            = 10
	DefaultMaxBody                      = 64 << 10
	DefaultMaxClients                   = 10000
)

// ServerTimeouts are what an http.Server serving the API (local mode)
// needs. Read: the largest body is a 4 MiB zip in base64 (about 5.4 MB),
// which 30 seconds carries at under 200 KB/s; a body trickled slower is
// cut off (408). Write: POST /v1/rollouts plans for up to a minute
// (startTimeout) before it answers, so two; POST /v1/audit/isolation, which
// runs for minutes, lifts its own write deadline. Idle outlasts the 90
// seconds clients keep an idle connection. In AWS, API Gateway bounds a
// request instead (29 seconds, 10 MB).
var ServerTimeouts = server.Timeouts{Header: 10 * time.Second, Read: 30 * time.Second, Write: 2 * time.Minute, Idle: 2 * time.Minute}

// API is the HTTP API. It is safe for concurrent use.
type API struct {
	d      Deps
	o      Options
	status statusTokens
	limits *limiter
	// domains is the signup budget per registrable email domain, shared by
	// every client.
	domains *limiter
	// resolveLimits is GET /v1/resolve's own per-client limit.
	resolveLimits *limiter
	mux           *http.ServeMux
	h             http.Handler
	// endpoints are the "METHOD /pattern" of every route registered, for
	// Endpoints.
	endpoints []string
}

// New returns the API.
func New(d Deps, o Options) (*API, error) {
	if d.Registry == nil || d.Kick == nil || d.Retry == nil || d.Verifier == nil || d.Log == nil {
		return nil, errors.New("api: Registry, Kick, Retry, Verifier and Log are required")
	}
	if len(o.StatusSecret) < 32 {
		return nil, errors.New("api: StatusSecret must be at least 32 bytes")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if o.SignupRate == 0 {
		o.SignupRate = DefaultSignupRate
	}
	if o.SignupBurst == 0 {
		o.SignupBurst = DefaultSignupBurst
	}
	if o.DomainSignupRate == 0 {
		o.DomainSignupRate = DefaultDomainSignupRate
	}
	if o.DomainSignupBurst == 0 {
		o.DomainSignupBurst = DefaultDomainSignupBurst
	}
	if o.ResolveRate == 0 {
		o.ResolveRate = DefaultResolveRate
	}
	if o.ResolveBurst == 0 {
		o.ResolveBurst = DefaultResolveBurst
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	o.Deadlines = o.Deadlines.WithDefaults()
	a := &API{
		d: d, o: o,
		status:        statusTokens{secret: o.StatusSecret},
		limits:        newLimiter(o.SignupRate, o.SignupBurst, o.MaxClients),
		domains:       newLimiter(o.DomainSignupRate, o.DomainSignupBurst, o.MaxClients),
		resolveLimits: newLimiter(o.ResolveRate, o.ResolveBurst, o.MaxClients),
		mux:           http.NewServeMux(),
	}
	a.routes()
	a.h = a.withRequest(a.mux)
	return a, nil
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.h.ServeHTTP(w, r) }

// route is one path with a handler per method. Methods are dispatched here
// rather than by ServeMux patterns so that a wrong method gets a JSON 405.
type route map[string]http.HandlerFunc

func (rt route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := rt[r.Method]
	if !ok {
		allow := ""
		for m := range rt {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
		w.Header().Set("Allow", allow)
		writeError(r.Context(), w, errMethod)
		return
	}
	h(w, r)
}

// handle registers rt at pattern and records its endpoints. Every route
// goes through here: the authorization matrix test compares Endpoints with
// the documented matrix, so a route registered any other way would escape it.
func (a *API) handle(pattern string, rt route) {
	for m := range rt {
		a.endpoints = append(a.endpoints, m+" "+pattern)
	}
	a.mux.Handle(pattern, rt)
}

// Endpoints lists every endpoint the API serves as "METHOD /pattern"
// ("POST /v1/tenants/{id}/suspend"), sorted.
func (a *API) Endpoints() []string {
	out := slices.Clone(a.endpoints)
	slices.Sort(out)
	return out
}

func (a *API) routes() {
	a.handle("/v1/signup", route{http.MethodPost: a.signup})
	a.handle("/v1/resolve", route{http.MethodGet: a.resolve})
	a.handle("/v1/tenants", route{http.MethodGet: a.listTenants})
	a.handle("/v1/tenants/{id}", route{http.MethodGet: a.getTenant})
	a.handle("/v1/tenants/{id}/events", route{http.MethodGet: a.tenantEvents})
	// One route per action, not a {action} wildcard, so that Endpoints
	// names each and the authorization matrix (docs/security.md) has a row
	// for each.
	for _, name := range []string{"suspend", "resume", "retry", "redeploy", "decommission"} {
		a.handle("/v1/tenants/{id}/"+name, route{http.MethodPost: a.tenantAction(name)})
	}
	for _, name := range []string{"pin", "unpin"} {
		a.handle("/v1/tenants/{id}/"+name, route{http.MethodPost: func(w http.ResponseWriter, r *http.Request) { a.tenantPin(w, r, name) }})
	}
	a.previewRoutes()
	a.rolloutRoutes()
	a.auditRoutes()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(r.Context(), w, errRoute)
	})
}
