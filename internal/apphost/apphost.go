// Package apphost serves tenant applications on this machine, standing in for
// the API Gateway and Lambda the emulator cannot run. Each deployed tenant
// gets the real tenantapp handler on its own loopback listener, configured
// from the function its stack created and acting with that tenant's own
// assumed-role credentials, so local mode keeps the isolation of the account
// boundary: one tenant's app cannot reach another tenant's table, because
// its credentials belong to another account.
//
// Host.Endpoint has the vending.EndpointFunc signature: the reconciler calls
// it when a tenant's stack is deployed, and the URL it returns is the
// tenant's endpoint.
//
// With Config.Code the host also loads the code package the tenant's stack
// instance names, as Lambda does when a function starts, so a broken
// release fails locally as it would in AWS: its URL answers what API
// Gateway answers when its Lambda integration fails.
package apphost

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

// ErrClosed is returned by Endpoint once the host is closed.
var ErrClosed = errors.New("apphost: closed")

// FunctionName is the tenant function the stack creates (cdk/tenantapp,
// named by registry.FunctionNamePattern); its environment is the app's
// configuration.
func FunctionName(tenantID string) string { return registry.FunctionName(tenantID) }

// lambdaAPI is the one Lambda call the host makes, in the tenant's account.
type lambdaAPI interface {
	GetFunctionConfiguration(ctx context.Context, in *lambda.GetFunctionConfigurationInput, opts ...func(*lambda.Options)) (*lambda.GetFunctionConfigurationOutput, error)
}

// Config is the token issuer the served apps trust.
//
// In local mode these override the stack's JWT_ISSUER and JWT_AUDIENCE when
// set: the issuer that mints tokens here is the one local mode serves on a
// loopback port chosen at start, with a key generated at start. A stack
// deployed with other parameters (a control plane wired without the local
// issuer, a release published before the issuer's port was known) would
// name an issuer nobody runs, and every request would be refused. In AWS the
// stack's parameters are the only truth; the host exists only locally.
type Config struct {
	// Issuer is the exact "iss" tokens must carry; the stack's JWT_ISSUER when empty.
	Issuer string
	// Audience is the exact "aud"; the stack's JWT_AUDIENCE when empty.
	Audience string
	// JWKSURL is where the issuer's keys are fetched; Issuer +
	// "/.well-known/jwks.json" when empty.
	JWKSURL string
	// HTTPClient fetches the JWKS; tenantapp's default when nil.
	HTTPClient *http.Client
	// Code, when set, returns the code package t's stack instance runs:
	// location names it ("s3://bucket/key"; keys are content hashes, so
	// the host keeps its verdict on a package by location) and zip is the
	// package. A package Lambda's custom runtime could not start makes
	// the tenant's URL fail every request. When nil the package is not
	// looked at.
	Code func(ctx context.Context, t *registry.Tenant) (location string, zip []byte, err error)
	// Now is the clock of the stage throttles; time.Now when nil.
	Now func() time.Time
}

// Host serves each deployed tenant's app on its own loopback URL.
type Host struct {
	accounts  *awsx.Accounts
	cfg       Config
	log       *slog.Logger
	newLambda func(aws.Config) lambdaAPI
	// throttles are the template's stage limits by tier (throttle.go);
	// throttleErr says why they could not be read.
	throttles   map[registry.Tier]Throttle
	throttleErr error
	now         func() time.Time

	wg sync.WaitGroup // one per serve goroutine

	mu     sync.Mutex
	apps   map[string]*served
	closed bool
	// problems is the verdict on each code package seen, by location: why
	// it cannot start, or "" for a good one.
	problems map[string]string
}

// served is one tenant's listener. The handler is swapped in place when the
// tenant's configuration changes, so its URL (recorded in the registry as
// the endpoint) stays the same across releases.
type served struct {
	url string
	srv *http.Server
	cfg tenantapp.Config
	// location is the code package's (Config.Code); a rollback to a good
	// package changes it back, and the handler with it.
	location string
	handler  atomic.Pointer[http.Handler]
	// stage throttles the tenant's requests by its tier, as its API
	// Gateway stage does in AWS.
	stage atomic.Pointer[stage]
}

func (s *served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.stage.Load().allow() {
		tooManyRequests(w)
		return
	}
	(*s.handler.Load()).ServeHTTP(w, r)
}

// New returns a host that acts in tenants' accounts through accounts.
func New(accounts *awsx.Accounts, cfg Config, log *slog.Logger) *Host {
	throttles, err := TierThrottles()
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Host{
		throttles: throttles, throttleErr: err, now: now,
		accounts:  accounts,
		cfg:       cfg,
		log:       log,
		newLambda: func(c aws.Config) lambdaAPI { return lambda.NewFromConfig(c) },
		apps:      map[string]*served{},
		problems:  map[string]string{},
	}
}

// Endpoint serves t's application and returns its URL. It reads the app's
// configuration from the function the stack deployed in t's account, and
// with Config.Code loads its code package. Called again for a served
// tenant it returns the same URL, with the handler rebuilt if the
// configuration or the package changed (a new release, or a rollback).
//
// A package that cannot start is not an error here (the deployment
// succeeded; health shows the breakage): the URL answers every request
// with 502, and the host logs why once. Failing to get the package is.
func (h *Host) Endpoint(ctx context.Context, t *registry.Tenant, _ map[string]string) (string, error) {
	if t.AccountID == "" {
		return "", fmt.Errorf("serve tenant %s: no account", t.ID)
	}
	if h.throttleErr != nil {
		return "", fmt.Errorf("serve tenant %s: stage throttles: %w", t.ID, h.throttleErr)
	}
	member := h.accounts.Config(t.AccountID)
	if t.Region != "" {
		member.Region = t.Region
	}
	cfg, err := h.appConfig(ctx, member, t)
	if err != nil {
		return "", err
	}
	location, problem, err := h.loadCode(ctx, t)
	if err != nil {
		return "", err
	}
	var handler http.Handler = integrationFailure
	if problem == "" {
		app, err := tenantapp.New(tenantapp.NewClients(member), cfg, h.log, tenantapp.Options{HTTPClient: h.cfg.HTTPClient})
		if err != nil {
			return "", fmt.Errorf("serve tenant %s: %w", t.ID, err)
		}
		handler = app
	}
	cannotStart := func(url string) {
		if problem != "" {
			h.log.ErrorContext(ctx, "tenant app cannot start", "tenant", t.ID, "location", location, "reason", problem, "url", url)
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "", ErrClosed
	}
	if s, ok := h.apps[t.ID]; ok {
		if st := s.stage.Load(); st == nil || st.tier != t.Tier {
			s.stage.Store(h.throttleFor(t.Tier))
		}
		if s.cfg != cfg || s.location != location {
			s.cfg, s.location = cfg, location
			s.handler.Store(&handler)
			h.log.InfoContext(ctx, "tenant app refreshed", "tenant", t.ID, "version", cfg.Version, "code", location, "url", s.url)
			cannotStart(s.url)
		}
		return s.url, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("serve tenant %s: %w", t.ID, err)
	}
	s := &served{url: "http://" + ln.Addr().String(), cfg: cfg, location: location}
	s.handler.Store(&handler)
	s.stage.Store(h.throttleFor(t.Tier))
	// In AWS a tenant endpoint is API Gateway in front of a function with
	// a 10-second timeout (cdk/tenantapp), cut at 29 seconds at most: the
	// default minute to answer covers that with room for a busy emulator.
	s.srv = server.New(s, server.Default)
	h.apps[t.ID] = s
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("tenant app stopped", "tenant", t.ID, "err", err)
		}
	}()
	h.log.InfoContext(ctx, "tenant app serving", "tenant", t.ID, "account", t.AccountID, "version", cfg.Version, "code", location, "url", s.url)
	cannotStart(s.url)
	return s.url, nil
}

// loadCode gets t's code package (Config.Code) and returns its location and
// why it cannot start ("" when it can). Without Config.Code both are "".
func (h *Host) loadCode(ctx context.Context, t *registry.Tenant) (location, problem string, err error) {
	if h.cfg.Code == nil {
		return "", "", nil
	}
	location, pkg, err := h.cfg.Code(ctx, t)
	if err != nil {
		return "", "", fmt.Errorf("serve tenant %s: get its code package: %w", t.ID, err)
	}
	h.mu.Lock()
	problem, known := h.problems[location]
	h.mu.Unlock()
	if !known {
		problem = packageProblem(pkg)
		if location != "" {
			h.mu.Lock()
			h.problems[location] = problem
			h.mu.Unlock()
		}
	}
	return location, problem, nil
}

// packageProblem checks a deployment package as Lambda's custom runtime
// (provided.al2023) does at init: a zip holding a non-empty file named
// bootstrap at its root. The exec bit is not required (zips made with
// zip.Writer.Create have none). It returns why the package cannot start,
// or "" when it can.
func packageProblem(pkg []byte) string {
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		return fmt.Sprintf("InvalidZipFileException: Lambda could not unzip the deployment package (%v)", err)
	}
	for _, f := range zr.File {
		if path.Clean(f.Name) != "bootstrap" || f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Sprintf("InvalidZipFileException: Lambda could not unzip bootstrap (%v)", err)
		}
		n, err := io.ReadFull(rc, make([]byte, 1))
		rc.Close()
		switch {
		case n == 1:
			return ""
		case errors.Is(err, io.EOF):
			return "Runtime.InvalidEntrypoint: the package's bootstrap is empty"
		default:
			return fmt.Sprintf("InvalidZipFileException: Lambda could not unzip bootstrap (%v)", err)
		}
	}
	return "Runtime.InvalidEntrypoint: the package has no bootstrap"
}

// integrationFailure answers as API Gateway does when the Lambda behind it
// fails to start.
var integrationFailure http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", "InternalServerErrorException")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, `{"message": "Internal server error"}`)
})

// appConfig reads the app's configuration from the environment of t's
// function, with the host's issuer settings applied.
func (h *Host) appConfig(ctx context.Context, member aws.Config, t *registry.Tenant) (tenantapp.Config, error) {
	name := FunctionName(t.ID)
	out, err := h.newLambda(member).GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		return tenantapp.Config{}, fmt.Errorf("read function %s of tenant %s: %w", name, t.ID, err)
	}
	var env map[string]string
	if out.Environment != nil {
		env = out.Environment.Variables
	}
	cfg, err := configFromEnv(env)
	if err != nil {
		return tenantapp.Config{}, fmt.Errorf("function %s of tenant %s: %w", name, t.ID, err)
	}
	if cfg.TenantID != t.ID {
		// The function is found by the tenant's name in the tenant's
		// account: another tenant's id here means a mis-deployed stack,
		// and serving it would answer for the wrong tenant.
		return tenantapp.Config{}, fmt.Errorf("function %s in account %s is configured for tenant %q, not %s", name, t.AccountID, cfg.TenantID, t.ID)
	}
	if h.cfg.Issuer != "" {
		if cfg.Issuer != h.cfg.Issuer {
			h.log.DebugContext(ctx, "tenant app trusts the local issuer", "tenant", t.ID, "stack_issuer", cfg.Issuer, "issuer", h.cfg.Issuer)
		}
		cfg.Issuer, cfg.JWKSURL = h.cfg.Issuer, h.cfg.JWKSURL
	}
	if h.cfg.Audience != "" {
		cfg.Audience = h.cfg.Audience
	}
	return cfg, nil
}

// configFromEnv maps the function's environment (tenantapp's Env* names)
// onto the app's config; tenantapp.New validates it.
func configFromEnv(env map[string]string) (tenantapp.Config, error) {
	var missing []string
	get := func(name string, optional bool) string {
		v := strings.TrimSpace(env[name])
		if v == "" && !optional {
			missing = append(missing, name)
		}
		return v
	}
	c := tenantapp.Config{
		TenantID:  get(tenantapp.EnvTenantID, false),
		Version:   get(tenantapp.EnvVersion, false),
		TableName: get(tenantapp.EnvTable, false),
		Bucket:    get(tenantapp.EnvBucket, false),
		KMSKeyID:  get(tenantapp.EnvKMSKey, false),
		SecretARN: get(tenantapp.EnvSecretARN, false),
		Issuer:    get(tenantapp.EnvIssuer, true),
		Audience:  get(tenantapp.EnvAudience, true),
		JWKSURL:   get(tenantapp.EnvJWKSURL, true),
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return tenantapp.Config{}, fmt.Errorf("environment lacks %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// Stop stops serving tenantID (decommission, suspension): its URL refuses
// connections from when Stop returns. It reports whether it was served.
func (h *Host) Stop(tenantID string) bool {
	h.mu.Lock()
	s, ok := h.apps[tenantID]
	delete(h.apps, tenantID)
	h.mu.Unlock()
	if ok {
		// Close, not Shutdown: the listener is closed at once, and requests
		// in flight are cut as a torn-down stack would cut them.
		_ = s.srv.Close()
		h.log.Info("tenant app stopped", "tenant", tenantID, "url", s.url)
	}
	return ok
}

// Serving returns the URL of every served tenant, by tenant id.
func (h *Host) Serving() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.apps))
	for id, s := range h.apps {
		out[id] = s.url
	}
	return out
}

// Close stops every listener and waits for the serve goroutines to end.
// Endpoint fails with ErrClosed afterwards.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	apps := h.apps
	h.apps = map[string]*served{}
	h.mu.Unlock()
	for _, s := range apps {
		_ = s.srv.Close()
	}
	h.wg.Wait()
}
