// Package console is silo's operations console: server-rendered HTML pages
// over the whole fleet (overview, tenant list with search and filters,
// tenant detail with health history, audit and cost, the preview pool and
// its leases, rollouts with their waves, gates and tenants, every tenant's
// latest isolation report), behind operator login.
//
// The pages render from an in-memory snapshot of every tenant that is
// refreshed lazily by the requests themselves, so the console needs no
// background worker: the same handler runs in `silo local` and in a Lambda.
// Assets are embedded; nothing is loaded from elsewhere, and a strict
// Content-Security-Policy allows no inline script.
package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// tenantStore lists the registry calls the console makes; *registry.Store
// satisfies it.
type tenantStore interface {
	List(ctx context.Context, state registry.State, o registry.ListOptions) (*registry.Page, error)
	Get(ctx context.Context, id string) (*registry.Tenant, error)
	Events(ctx context.Context, id string) ([]registry.Event, error)
	Rollups(ctx context.Context, id string, since time.Time) ([]registry.Rollup, error)
}

var _ tenantStore = (*registry.Store)(nil)

// Deps are the console's collaborators.
type Deps struct {
	// Registry is the tenant registry (required).
	Registry tenantStore
	// Verifier checks operator tokens (required); any role allows reading.
	Verifier api.Verifier
	// Costs gives month-to-date costs; nil shows "cost unavailable".
	Costs costSource
	// OUs finds an account's OU path; nil shows "—".
	OUs ouSource
	// Pool lists the preview pool's accounts; nil shows the pool as not
	// configured.
	Pool poolSource
	// Rollouts reads the rollouts; nil shows them as not configured.
	Rollouts rolloutSource
	// Isolation reads the tenants' latest isolation reports; nil shows the
	// isolation audit as not configured.
	Isolation isolationSource
	// Log receives the console's logs; slog.Default() when nil.
	Log *slog.Logger
}

// Options tune the console.
type Options struct {
	// Prefix is the path the console is mounted at ("/console"); "" for
	// the root. Every link and cookie is scoped to it.
	Prefix string
	// RefreshEvery is the age at which the fleet snapshot is refreshed
	// (in the background, by the request that notices); 10s when zero.
	RefreshEvery time.Duration
	// AutoRefresh is how often an open page refreshes its content; 15s
	// when zero.
	AutoRefresh time.Duration
	// SecureCookie marks the session cookie Secure (set it behind HTTPS).
	SecureCookie bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PoolTarget is the size the preview pool is kept at, shown beside its
	// counts; 0 when unknown.
	PoolTarget int
	// Deadlines are the reconciler's state deadlines: the pages mark the
	// tenants past theirs (vending.DefaultDeadlines when zero).
	Deadlines vending.Deadlines
}

// Console is the operations console, an http.Handler.
type Console struct {
	d     Deps
	o     Options
	log   *slog.Logger
	fleet *fleet
	mux   *http.ServeMux
	tmpl  map[string]*template.Template
	// assetVersion is a hash of the embedded assets, appended to their URLs
	// so browsers may cache them for good.
	assetVersion string
}

// New returns a console on d.
func New(d Deps, o Options) (*Console, error) {
	if d.Registry == nil || d.Verifier == nil {
		return nil, errors.New("console: a registry and a verifier are required")
	}
	c, err := build(d, o)
	if err != nil {
		return nil, err
	}
	c.fleet = newFleet(func(ctx context.Context) (*snapshot, error) {
		return loadFleet(ctx, d.Registry, c.o.Now, c.o.Deadlines)
	},
		c.o.RefreshEvery, c.o.Now, c.log)
	return c, nil
}

// NewFromTenants returns a console whose fleet is the given tenants, never
// refreshed: for benchmarks (silo bench probe) and tests of rendering that
// need no registry. Deps.Registry still serves the tenant pages.
func NewFromTenants(tenants []*registry.Tenant, d Deps, o Options) (*Console, error) {
	c, err := build(d, o)
	if err != nil {
		return nil, err
	}
	s := buildSnapshot(c.o.Now(), tenants, c.o.Deadlines)
	c.fleet = newFleet(func(context.Context) (*snapshot, error) { return s, nil }, time.Duration(1<<62), c.o.Now, c.log)
	c.fleet.cur.Store(s)
	return c, nil
}

func build(d Deps, o Options) (*Console, error) {
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.Prefix != "" && !strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("console: prefix %q must start with /", o.Prefix)
	}
	if o.RefreshEvery <= 0 {
		o.RefreshEvery = 10 * time.Second
	}
	if o.AutoRefresh <= 0 {
		o.AutoRefresh = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Deadlines = o.Deadlines.WithDefaults()
	if d.Log == nil {
		d.Log = slog.Default()
	}
	c := &Console{d: d, o: o, log: d.Log}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.assetVersion = assetVersion()
	c.routes()
	return c, nil
}

// Refresh reads the whole fleet from the registry now and makes it the
// snapshot pages render from.
func (c *Console) Refresh(ctx context.Context) error {
	_, err := c.fleet.refresh(ctx)
	return err
}

// Close stops a background refresh in flight and waits for it.
func (c *Console) Close() { c.fleet.close() }

func (c *Console) routes() {
	p := c.o.Prefix
	m := http.NewServeMux()
	m.HandleFunc("GET "+p+"/static/{file}", c.serveStatic)
	m.HandleFunc("GET "+p+"/login", c.loginForm)
	m.HandleFunc("POST "+p+"/login", c.login)
	m.HandleFunc(p+"/logout", c.logout)
	m.Handle("GET "+p+"/{$}", c.page(c.overview))
	m.Handle("GET "+p+"/tenants", c.page(c.tenants))
	m.Handle("GET "+p+"/tenants/{id}", c.page(c.tenant))
	m.Handle("GET "+p+"/previews", c.page(c.previews))
	m.Handle("GET "+p+"/rollouts", c.page(c.rollouts))
	m.Handle("GET "+p+"/isolation", c.page(c.isolation))
	m.Handle(p+"/", c.page(func(w http.ResponseWriter, r *http.Request, v *view) error {
		return errNotFound("There is no page at this address.")
	}))
	c.mux = m
}

// ServeHTTP serves the console, with security headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No inline script or style anywhere: the pages are server-rendered and
	// the one script is a static file. Inline SVG uses attributes only.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			id := requestID()
			c.log.ErrorContext(r.Context(), "console panic", "panic", fmt.Sprint(v), "path", r.URL.Path, "request_id", id)
			c.renderError(w, r, nil, &httpError{status: http.StatusInternalServerError, id: id})
		}
	}()
	c.mux.ServeHTTP(w, r)
}

// httpError is a page's failure, with the status and what the operator
// may be told.
type httpError struct {
	status int
	msg    string
	// problems lists every bad input of a 400.
	problems []string
	// id ties a 5xx page to its log line.
	id string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func errBadRequest(problems ...string) *httpError {
	return &httpError{status: http.StatusBadRequest, msg: "The request could not be understood.", problems: problems}
}

func errNotFound(msg string) *httpError { return &httpError{status: http.StatusNotFound, msg: msg} }

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
