// Package local runs the silo platform on one machine with no AWS account:
// the AWS emulator (behind its fault-injecting proxy), a seeded organization,
// the control plane wired to them, a token issuer and the app host that
// serves every tenant's application on a loopback URL. It is one of the two places that wire
// silo's packages together (the Lambda mains are the other).
//
// StartDeployed runs the other topology: the control-plane stack created in
// the emulator and its Lambda functions' real binaries (internal/deployed),
// with the emulator and the token issuer around it.
package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/apphost"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/console"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// Options configure a local platform.
type Options struct {
	// Table is the registry table's name; registry.DefaultTable when empty.
	Table string
	// EmulatorLog receives moto's own output (nil discards it).
	EmulatorLog io.Writer
	// APIAddr is where the API listens; a free loopback port when empty.
	APIAddr string
	// ConsoleAddr is where the operations console listens; a free loopback
	// port when empty.
	ConsoleAddr string
	// ProbeEvery is the interval of fleet health sweeps (default 10s; in
	// AWS it is a minute, but locally a person is watching).
	ProbeEvery time.Duration
	// PoolSize is the PR-preview pool's target size; 0 keeps no pool
	// (previews then wait until their deadline).
	PoolSize int
	// Rollouts configures the rollout engine; ManualRollouts leaves it
	// stopped (tests run their own engines to crash and resume them).
	Rollouts       rollout.Config
	ManualRollouts bool
	// DomainSignupRate and DomainSignupBurst are the API's signup budget
	// per email domain (api.Options); the API's defaults when zero,
	// rate.Inf for none (a load test signing many tenants up from one
	// domain).
	DomainSignupRate  rate.Limit
	DomainSignupBurst int
	// SignupRate and SignupBurst are the API's per-client signup limit
	// (the API's defaults when zero; rate.Inf for none): a soak signs
	// hundreds of tenants up from one address.
	SignupRate  rate.Limit
	SignupBurst int
	// Deadlines bound each working state of tenants, previews and pool
	// accounts (vending.Deadlines); AWS's defaults when zero. The
	// reconciler, the pool, the API and the console share them.
	Deadlines vending.Deadlines
	// Emulator, when set, is used (reset and seeded anew) instead of
	// starting one, and left running by Close: a test package's emulator.
	Emulator *emulator.Emulator
	// APITimeouts are the API server's; each zero field is
	// api.ServerTimeouts'.
	APITimeouts server.Timeouts
}

// Auditor is the isolation audit as the platform serves it;
// *audit.Auditor satisfies it.
type Auditor interface {
	Run(ctx context.Context, o audit.RunOptions) (*audit.Fleet, error)
	Report(ctx context.Context, tenantID string) (*audit.Report, error)
	Reports(ctx context.Context) ([]audit.Report, error)
}

// Info is what a person or a script needs to reach a running platform. It
// is what `silo local --ready-file` writes.
type Info struct {
	AWSEndpoint         string            `json:"aws_endpoint"`
	Region              string            `json:"region"`
	AccessKeyID         string            `json:"aws_access_key_id"`
	SecretAccessKey     string            `json:"aws_secret_access_key"`
	ManagementAccountID string            `json:"management_account_id"`
	OrganizationID      string            `json:"organization_id"`
	OUs                 map[string]string `json:"ous"`
	RegistryTable       string            `json:"registry_table"`
	// TenantDomain and HostedZoneID: each customer tenant's DNS name is
	// <id>.<TenantDomain>, a record in that Route 53 zone.
	TenantDomain string `json:"tenant_domain"`
	HostedZoneID string `json:"hosted_zone_id"`
	// Issuer is the URL of the local token issuer every tenant app trusts
	// (its key set is at Issuer + "/.well-known/jwks.json").
	Issuer string `json:"issuer"`
	// API is the silo API's base URL; AdminToken an admin operator token
	// for it (valid 24 hours).
	API        string `json:"api"`
	AdminToken string `json:"admin_token"`
	// ViewerToken is a read-only operator token for the API and the
	// console (valid 24 hours): for dashboards, scripts and tests that
	// must not change anything.
	ViewerToken string `json:"viewer_token"`
	// Console is the operations console's URL; it takes the same operator
	// tokens as the API (paste AdminToken at its login).
	Console string `json:"console"`
	// StackName is the control-plane stack's name in the deployed
	// topology (silo local --deployed), where API and Console are its REST
	// APIs' stage URLs; empty in-process.
	StackName string `json:"stack_name,omitempty"`
	// FunctionLogs is the directory holding a log file per function of
	// the deployed topology.
	FunctionLogs string `json:"function_logs,omitempty"`
}

// Platform is a running local silo.
type Platform struct {
	Info     Info
	Registry *registry.Store
	Counter  *awsx.Counter
	Control  *Control
	Runner   *vending.Runner
	// Issuer mints tokens the tenant apps accept (local users sign in
	// nowhere: a script or a test mints their tokens here).
	Issuer *issuer.Issuer
	// Host serves the tenant apps; a tenant's endpoint is its URL there.
	Host *apphost.Host
	// Sweeper probes every serving tenant's endpoint and records its health.
	Sweeper *probe.Sweeper
	// Previews serves PR previews and keeps the warm pool.
	Previews *preview.Manager
	// Rollouts takes releases across the fleet in waves.
	Rollouts *rollout.Engine
	// Audits is the isolation audit the API (POST /v1/audit/isolation, GET
	// /v1/tenants/{id}/isolation) and the console's Isolation page serve.
	Audits Auditor

	emu        *emulator.Emulator
	borrowed   bool // emu is the caller's: Close leaves it running
	log        *slog.Logger
	cancel     context.CancelFunc
	done       chan struct{}
	runCtx     context.Context
	loops      sync.WaitGroup // the background loops, restarted ones included
	runner     restartable    // the reconciler's runner
	engine     restartable    // the rollout engine (unless ManualRollouts)
	issuerSrv  *http.Server
	apiSrv     *http.Server
	consoleSrv *http.Server
	console    *console.Console
	serving    sync.WaitGroup // the issuer's and the API's serve goroutines
}

// Start brings the platform up: it starts and seeds the emulator, serves a
// token issuer on a loopback port, wires the control plane onto the emulator
// (registry, guardrails, release, StackSet, bus) with an app host as the
// source of tenant endpoints and the issuer in the release parameters, and
// runs the reconciler. Close stops it.
func Start(ctx context.Context, o Options, log *slog.Logger) (*Platform, error) {
	began := time.Now()
	emu, borrowed := o.Emulator, o.Emulator != nil
	if !borrowed {
		var err error
		if emu, err = emulator.Start(ctx, o.EmulatorLog); err != nil {
			return nil, err
		}
	}
	p := &Platform{emu: emu, borrowed: borrowed, log: log, Counter: awsx.NewCounter()}
	log.InfoContext(ctx, "emulator started", "endpoint", emu.Endpoint)
	seed := emu.Seed
	if borrowed {
		seed = emu.Reset
	}
	org, err := seed(ctx)
	if err != nil {
		p.Close()
		return nil, err
	}
	log.InfoContext(ctx, "organization seeded", "organization", org.OrganizationID, "management_account", org.ManagementAccountID)
	if err := p.startIssuer(); err != nil {
		p.Close()
		return nil, err
	}
	// The host gets its own management config: the tenant apps are not the
	// control plane, so their calls are not in its counter.
	mgmt, err := org.Config(ctx, nil)
	if err != nil {
		p.Close()
		return nil, err
	}
	artifacts := s3.NewFromConfig(mgmt, func(o *s3.Options) { o.UsePathStyle = true })
	p.Host = apphost.New(awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{}),
		apphost.Config{
			Issuer: p.Issuer.URL(), Audience: p.Issuer.Audience(), JWKSURL: p.Issuer.JWKSURL(),
			Code: func(ctx context.Context, t *registry.Tenant) (string, []byte, error) {
				// The host exists before the control plane it serves for;
				// nothing asks it for an endpoint before Wire returned.
				if p.Control == nil {
					return "", nil, errors.New("the control plane is not wired yet")
				}
				return releaseCode(ctx, p.Control.StackSets, artifacts, t, org.Region)
			},
		}, log)
	p.Control, err = Wire(ctx, org, ControlOptions{
		Table: o.Table, Counter: p.Counter,
		Endpoint: p.Host.Endpoint, Unserve: func(id string) {
			p.Host.Stop(id)
			if p.Previews != nil {
				p.Previews.Wake() // a released preview's account waits for its reset
			}
		},
		JWTIssuer: p.Issuer.URL(), JWTAudience: p.Issuer.Audience(),
		Deadlines: o.Deadlines,
	}, log)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Registry = p.Control.Registry
	p.Runner = vending.NewRunner(p.Control.Reconciler, 0)
	if p.Previews, err = p.Control.NewPreviews(preview.Config{PoolSize: o.PoolSize}, p.Runner.Kick, nil, log); err != nil {
		p.Close()
		return nil, err
	}
	p.Rollouts = p.Control.NewRollouts(o.Rollouts, p.Runner.Kick, log)
	if p.Audits, err = p.Control.NewAuditor(log); err != nil {
		p.Close()
		return nil, err
	}
	prober := probe.New(probe.Options{Concurrency: 50, Timeout: 5 * time.Second}, log)
	p.Sweeper = &probe.Sweeper{
		Registry: p.Registry, Prober: prober, Shards: 1, Log: log,
		Recorder: probe.NewRecorder(p.Registry, p.Control.Bus, probe.RecorderOptions{}, log),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.runCtx, p.cancel, p.done = runCtx, cancel, make(chan struct{})
	p.runner.run = func(ctx context.Context) { _ = p.Runner.Run(ctx, 5*time.Second) }
	p.runner.start(runCtx, &p.loops)
	p.loops.Go(func() { _ = p.Previews.Run(runCtx, time.Second) })
	if !o.ManualRollouts {
		p.engine.run = p.Rollouts.Run
		p.engine.start(runCtx, &p.loops)
	}
	p.loops.Go(func() {
		defer prober.Close()
		p.Sweeper.Run(runCtx, or(o.ProbeEvery, 10*time.Second))
	})
	go func() {
		p.loops.Wait()
		close(p.done)
	}()
	p.Info = Info{
		AWSEndpoint: org.Endpoint, Region: org.Region,
		AccessKeyID: org.AccessKeyID, SecretAccessKey: org.SecretAccessKey,
		ManagementAccountID: org.ManagementAccountID, OrganizationID: org.OrganizationID,
		OUs: org.OUs, RegistryTable: p.Registry.Table(), Issuer: p.Issuer.URL(),
		TenantDomain: p.Control.TenantDomain, HostedZoneID: p.Control.HostedZoneID,
	}
	if err := p.startAPI(o); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.startConsole(ctx, o.ConsoleAddr, mgmt, o.PoolSize); err != nil {
		p.Close()
		return nil, err
	}
	log.InfoContext(ctx, "platform ready", "api", p.Info.API, "elapsed", time.Since(began).Round(time.Millisecond))
	return p, nil
}

// maxCodeSize bounds a code package read for the app host: Lambda's limit
// on a function's unzipped code, which its zip cannot exceed.
const maxCodeSize = 250 << 20

// releaseCode returns the code package t's stack instance runs: the
// object its CodeBucket and CodeKey parameters name, read with artifacts
// (the management account's S3, where the artifact bucket is). It is the
// app host's Config.Code; region is used when t has none.
func releaseCode(ctx context.Context, stackSets *stacksets.Manager, artifacts *s3.Client, t *registry.Tenant, region string) (string, []byte, error) {
	if t.Region != "" {
		region = t.Region
	}
	params, err := stackSets.InstanceParameters(ctx, t.AccountID, region)
	if err != nil {
		return "", nil, fmt.Errorf("code package of tenant %s: %w", t.ID, err)
	}
	bucket, key := params["CodeBucket"], params["CodeKey"]
	if bucket == "" || key == "" {
		return "", nil, fmt.Errorf("code package of tenant %s: its instance names none (CodeBucket %q, CodeKey %q)", t.ID, bucket, key)
	}
	location := "s3://" + bucket + "/" + key
	out, err := artifacts.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", nil, fmt.Errorf("code package of tenant %s: read %s: %w", t.ID, location, err)
	}
	defer out.Body.Close()
	pkg, err := io.ReadAll(io.LimitReader(out.Body, maxCodeSize+1))
	if err != nil {
		return "", nil, fmt.Errorf("code package of tenant %s: read %s: %w", t.ID, location, err)
	}
	if len(pkg) > maxCodeSize {
		return "", nil, fmt.Errorf("code package of tenant %s: %s is larger than %d bytes", t.ID, location, maxCodeSize)
	}
	return location, pkg, nil
}

// startAPI serves the silo API (the same handler as the API Lambda) on a
// loopback port, trusting operator tokens from the local issuer, and mints
// an admin token for the person running it.
func (p *Platform) startAPI(o Options) error {
	addr := o.APIAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api listener on %s: %w", addr, err)
	}
	base := "http://" + ln.Addr().String()
	verifier, err := api.NewJWTVerifier(api.JWTConfig{Key: p.Issuer.PublicKey(), Issuer: p.Issuer.URL(), Audience: api.Audience})
	if err != nil {
		ln.Close()
		return err
	}
	// End users' tokens for GET /v1/resolve: the same local issuer mints
	// them, with the tenant apps' audience (never the operators').
	users, err := api.NewJWTUserVerifier(api.JWTConfig{Key: p.Issuer.PublicKey(), Issuer: p.Issuer.URL(), Audience: p.Issuer.Audience()})
	if err != nil {
		ln.Close()
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		ln.Close()
		return err
	}
	handler, err := api.New(api.Deps{
		Registry: p.Registry, Kick: p.Runner.Kick, Retry: p.Control.Reconciler.Retry,
		Previews: p.Previews, Rollouts: p.Rollouts, Releases: p.Control.Releases(),
		Audits:   p.Audits,
		Verifier: verifier, Users: users, Log: p.log,
	}, api.Options{StatusSecret: secret, BaseURL: base, SignupRate: o.SignupRate, SignupBurst: o.SignupBurst,
		DomainSignupRate: o.DomainSignupRate, DomainSignupBurst: o.DomainSignupBurst, Deadlines: p.Control.Vending.Deadlines})
	if err != nil {
		ln.Close()
		return err
	}
	p.Info.AdminToken, err = p.Issuer.Mint("", "local-admin", 24*time.Hour, map[string]any{"aud": api.Audience, api.RoleClaim: string(api.RoleAdmin)})
	if err != nil {
		ln.Close()
		return err
	}
	p.Info.ViewerToken, err = p.Issuer.Mint("", "local-viewer", 24*time.Hour, map[string]any{"aud": api.Audience, api.RoleClaim: string(api.RoleViewer)})
	if err != nil {
		ln.Close()
		return err
	}
	p.Info.API = base
	p.apiSrv = server.New(handler, o.APITimeouts.Or(api.ServerTimeouts))
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		if err := p.apiSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("api stopped", "err", err)
		}
	}()
	return nil
}

// startConsole serves the operations console (the same handler as the
// console Lambda) on a loopback port, reading the registry, Cost Explorer
// and Organizations with the management account's credentials.
func (p *Platform) startConsole(ctx context.Context, addr string, mgmt aws.Config, poolTarget int) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console listener on %s: %w", addr, err)
	}
	verifier, err := api.NewJWTVerifier(api.JWTConfig{Key: p.Issuer.PublicKey(), Issuer: p.Issuer.URL(), Audience: api.Audience})
	if err != nil {
		ln.Close()
		return err
	}
	p.console, err = console.New(console.Deps{
		Registry: p.Registry, Pool: p.Registry, Rollouts: p.Registry, Verifier: verifier, Log: p.log,
		Isolation: p.Audits,
		Costs:     console.NewCostExplorer(mgmt, 0),
		OUs:       console.NewOULookup(organizations.NewFromConfig(mgmt)),
	}, console.Options{RefreshEvery: 2 * time.Second, AutoRefresh: 5 * time.Second, PoolTarget: poolTarget,
		Deadlines: p.Control.Vending.Deadlines})
	if err != nil {
		ln.Close()
		return err
	}
	p.Info.Console = "http://" + ln.Addr().String()
	// Pages are small requests rendered in well under a minute, even for
	// 10,000 tenants (silo bench probe); they refresh by polling, with no
	// streaming response to keep open.
	p.consoleSrv = server.New(p.console, server.Default)
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		if err := p.consoleSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("console stopped", "err", err)
		}
	}()
	return nil
}

// startIssuer serves a new issuer on a loopback port of its own.
func (p *Platform) startIssuer() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("issuer listener: %w", err)
	}
	p.Issuer, err = issuer.New("http://"+ln.Addr().String(), issuer.Options{})
	if err != nil {
		ln.Close()
		return err
	}
	p.issuerSrv = server.New(p.Issuer, server.Default) // key sets and small token requests
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		if err := p.issuerSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("issuer stopped", "err", err)
		}
	}()
	return nil
}

// Proxy is the fault-injecting proxy in front of the platform's emulator.
func (p *Platform) Proxy() *emulator.Proxy { return p.emu.Proxy }

// Emulator is the platform's emulator (moto's own endpoint is there, for
// looking at AWS without going through the proxy's faults and counters).
func (p *Platform) Emulator() *emulator.Emulator { return p.emu }

// ErrClosed is returned by a restart of a platform being closed.
var ErrClosed = errors.New("local platform closed")

// RestartReconciler stops the reconciler's runner as a crash would, in
// the middle of whatever it does (every tenant it drives has its context
// cancelled, AWS calls in flight included), waits until it has stopped,
// and starts it again. The new run resumes from the registry alone:
// kicks not yet taken stay queued, as in a queue that outlives a Lambda.
func (p *Platform) RestartReconciler() error { return p.runner.restart(p.runCtx, &p.loops) }

// RestartRollouts stops the rollout engine mid-step, as a crash would,
// and starts it again; it resumes the live rollout from the registry. It
// does nothing when the platform runs no engine (ManualRollouts).
func (p *Platform) RestartRollouts() error {
	if p.engine.run == nil {
		return nil
	}
	return p.engine.restart(p.runCtx, &p.loops)
}

// restartable is a background loop that can be stopped and started again.
type restartable struct {
	run func(ctx context.Context)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs the loop under a child of parent, counted in loops.
func (r *restartable) start(parent context.Context, loops *sync.WaitGroup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	loops.Add(1)
	r.startLocked(parent, loops)
}

func (r *restartable) startLocked(parent context.Context, loops *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	go func() {
		defer loops.Done()
		defer close(done)
		r.run(ctx)
	}()
}

// restart cancels the running loop, waits for it to return, and starts it
// again. The new loop is counted in loops before the old one leaves, so
// that a Wait on loops never sees zero in between.
func (r *restartable) restart(parent context.Context, loops *sync.WaitGroup) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if parent.Err() != nil {
		return ErrClosed
	}
	loops.Add(1)
	r.cancel()
	<-r.done
	if parent.Err() != nil {
		loops.Done()
		return ErrClosed
	}
	r.startLocked(parent, loops)
	return nil
}

// Done is closed if the emulator dies under the platform.
func (p *Platform) Done() <-chan struct{} { return p.emu.Done() }

// Close stops everything the platform started, waiting for each: the
// reconciler first, then the tenant apps and the issuer, then the emulator.
func (p *Platform) Close() {
	if p.apiSrv != nil {
		_ = p.apiSrv.Close()
	}
	if p.consoleSrv != nil {
		_ = p.consoleSrv.Close()
		p.console.Close()
	}
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	if p.Host != nil {
		p.Host.Close()
	}
	if p.issuerSrv != nil {
		_ = p.issuerSrv.Close()
		p.serving.Wait()
	}
	if p.borrowed {
		p.emu.Proxy.Reset() // no faults or pending work left for its next user
		return
	}
	p.emu.Stop()
}

// String summarizes the platform for logs.
func (p *Platform) String() string {
	return fmt.Sprintf("silo local: emulator %s, registry table %s, issuer %s", p.Info.AWSEndpoint, p.Info.RegistryTable, p.Info.Issuer)
}
