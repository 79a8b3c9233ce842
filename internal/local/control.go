package local

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// ControlOptions tune the control plane wired onto an emulator.
type ControlOptions struct {
	// Table is the registry table's name; registry.DefaultTable when empty.
	Table string
	// Quotas the governor enforces; AWS's defaults, except a faster
	// CreateAccount call rate (the emulator has no real rate), when zero.
	Quotas vending.Quotas
	// Governor, when set, is shared instead of making one (several
	// reconcilers in one process share one quota).
	Governor *vending.Governor
	// PollInterval, MaxPollInterval and ClaimTTL tune the reconciler;
	// local defaults are short.
	PollInterval, MaxPollInterval, ClaimTTL time.Duration
	// Deadlines bound each working state (vending.Deadlines); AWS's
	// defaults when zero: a healthy local tenant never comes near them,
	// and tests that hold a tenant past one set short ones.
	Deadlines vending.Deadlines
	// Endpoint turns a deployed tenant into its endpoint; the stack's
	// ApiUrl output when nil.
	Endpoint vending.EndpointFunc
	// APIOptions are added to every AWS client (crash injection in tests).
	APIOptions []func(*middleware.Stack) error
	// Counter counts every AWS call of the control plane.
	Counter *awsx.Counter
	// AllowedRegions for the guardrails; every known region when empty.
	AllowedRegions []string
	// JWTIssuer and JWTAudience are the release parameters naming the
	// issuer of the tenant apps' tokens; placeholders when empty (local.Start
	// sets them to its own issuer).
	JWTIssuer, JWTAudience string
	// Unserve, when set, is told each tenant that is decommissioned, so
	// whatever serves its endpoint (the local app host) stops.
	Unserve func(tenantID string)
	// TenantDomain is the hosted zone made for tenants' DNS names;
	// TenantDomain (the package constant) when empty.
	TenantDomain string
}

// TenantDomain is the domain of local tenants' DNS names: each customer
// tenant is <id>.tenants.silo.internal, an A record to 127.0.0.1 in a
// hosted zone of the management account (the app host's URLs carry a port
// no DNS record can; the full URL stays in the registry).
const TenantDomain = "tenants.silo.internal"

// Control is silo's control plane wired onto a seeded emulator: the same
// packages that run in the Lambdas in AWS.
type Control struct {
	Org        *emulator.Org
	Config     aws.Config
	Registry   *registry.Store
	Accounts   *awsx.Accounts
	StackSets  *stacksets.Manager
	Release    stacksets.Release
	Reconciler *vending.Reconciler
	Vending    vending.Config
	// Bus publishes tenant events to the EventBus (the prober's health
	// transitions go there too).
	Bus *vending.Bus
	// DNS is Route 53 in the management account; HostedZoneID the zone of
	// TenantDomain holding the tenants' DNS names.
	DNS                        *route53.Client
	HostedZoneID, TenantDomain string
	// Guardrails are the SCPs Wire applied to the tenant OUs.
	Guardrails []guardrails.Policy
}

// EventBus is the name of silo's event bus.
const EventBus = "silo-events"

// Wire builds the control plane on an emulator seeded as org: the registry
// table, the guardrails on the tenant OUs, the artifact bucket and the
// current release, the tenant StackSet, the event bus and the reconciler.
func Wire(ctx context.Context, org *emulator.Org, o ControlOptions, log *slog.Logger) (*Control, error) {
	opts := org.Options()
	opts.Counter = o.Counter
	// Emulated AWS runs hundreds of times faster than AWS (a creation takes
	// a second, not minutes): retries back off on the same compressed scale.
	opts.Standard, opts.MaxBackoff = true, 500*time.Millisecond
	cfg, err := awsx.Load(ctx, opts)
	if err != nil {
		return nil, err
	}
	cfg.APIOptions = append(cfg.APIOptions, o.APIOptions...)
	c := &Control{Org: org, Config: cfg}

	c.Registry = registry.New(dynamodb.NewFromConfig(cfg), o.Table)
	if err := c.Registry.EnsureTable(ctx); err != nil {
		return nil, err
	}
	orgc := organizations.NewFromConfig(cfg)
	regions := o.AllowedRegions
	if len(regions) == 0 {
		regions = awsx.Regions()
	}
	policies, err := guardrails.Policies(guardrails.Options{AllowedRegions: regions})
	if err != nil {
		return nil, err
	}
	if _, err := guardrails.New(orgc, log).Apply(ctx, policies, org.OUs); err != nil {
		return nil, fmt.Errorf("apply guardrails: %w", err)
	}
	c.Guardrails = policies
	eb := eventbridge.NewFromConfig(cfg)
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(EventBus)}); err != nil && !awsx.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create event bus: %w", err)
	}

	c.DNS, c.TenantDomain = route53.NewFromConfig(cfg), orString(o.TenantDomain, TenantDomain)
	if c.HostedZoneID, err = ensureZone(ctx, c.DNS, c.TenantDomain); err != nil {
		return nil, err
	}

	c.Accounts = awsx.NewAccounts(cfg, sts.NewFromConfig(cfg), awsx.AccountsOptions{})
	c.StackSets = stacksets.NewFromConfig(cfg, log, stacksets.Options{
		Accounts:            c.Accounts,
		Bucket:              "silo-artifacts-" + org.ManagementAccountID,
		CreateBucket:        true,
		ManagementAccountID: org.ManagementAccountID,
		Parameters:          placeholderParams,
		PollMin:             20 * time.Millisecond,
		PollMax:             500 * time.Millisecond,
		Preferences:         stacksets.Preferences{MaxConcurrentCount: 100},
		ApplyUpdates:        true,
	})
	code, err := localCode()
	if err != nil {
		return nil, err
	}
	c.Release, err = c.StackSets.Publish(ctx, stacksets.TenantTemplate(), code)
	if err != nil {
		return nil, fmt.Errorf("publish release: %w", err)
	}
	if op, err := c.StackSets.EnsureStackSet(ctx, c.Release, stacksets.Rollout{}); err != nil {
		return nil, fmt.Errorf("ensure stack set: %w", err)
	} else if op != "" {
		if _, err := c.StackSets.Wait(ctx, op); err != nil {
			return nil, err
		}
	}

	q := o.Quotas
	if q.CreateRate == 0 {
		q.CreateRate = 50
	}
	if q.CreateBurst == 0 {
		q.CreateBurst = 10
	}
	c.Vending = vending.Config{
		ManagementAccount: org.ManagementAccountID,
		ProductionOU:      org.OUs[emulator.OUProduction],
		PreviewOU:         org.OUs[emulator.OUPreview],
		SuspendedOU:       org.OUs[emulator.OUSuspended],
		PoolOU:            org.OUs[emulator.OUPool],
		SiloOUs:           []string{org.OUs[emulator.OUProduction], org.OUs[emulator.OUPreview], org.OUs[emulator.OUSuspended], org.OUs[emulator.OUPool]},
		Release:           vending.Release{Version: c.Release.ID, CodeBucket: c.Release.CodeBucket, CodeKey: c.Release.CodeKey},
		JWTIssuer:         orString(o.JWTIssuer, "https://issuer.silo.local/"),
		JWTAudience:       orString(o.JWTAudience, "silo-tenant-app"),
		PollInterval:      or(o.PollInterval, 100*time.Millisecond),
		MaxPollInterval:   or(o.MaxPollInterval, time.Second),
		Deadlines:         o.Deadlines,
		ClaimTTL:          or(o.ClaimTTL, 10*time.Second),
		Quotas:            q,
		EventBus:          EventBus,
		HostedZoneID:      c.HostedZoneID,
		TenantDomain:      c.TenantDomain,
		EmailPattern:      "silo+{tenant}@tenants.silo.local",
	}.WithDefaults()
	c.Bus = vending.NewBus(eb, EventBus, log)
	c.Reconciler, err = vending.New(c.Vending, vending.Deps{
		Registry:  c.Registry,
		Org:       orgc,
		Deployer:  c.StackSets,
		Readiness: vending.NewReadiness(c.Accounts),
		Cleaner:   vending.NewCleaner(c.Accounts, 7, log),
		Endpoint:  o.Endpoint,
		Events:    unserving{next: c.Bus, unserve: o.Unserve},
		Governor:  o.Governor,
		DNS:       c.DNS,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ensureZone returns the id of the hosted zone named domain, creating it
// when there is none. Wire runs again over the same emulator (a restarted
// reconciler): the zone is found, not made twice.
func ensureZone(ctx context.Context, dns *route53.Client, domain string) (string, error) {
	out, err := dns.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String(domain)})
	if err != nil {
		return "", fmt.Errorf("look for hosted zone %s: %w", domain, err)
	}
	for _, z := range out.HostedZones {
		if strings.TrimSuffix(aws.ToString(z.Name), ".") == domain {
			return aws.ToString(z.Id), nil
		}
	}
	made, err := dns.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: aws.String(domain), CallerReference: aws.String("silo-local-" + domain),
	})
	if err != nil {
		return "", fmt.Errorf("create hosted zone %s: %w", domain, err)
	}
	return aws.ToString(made.HostedZone.Id), nil
}

// placeholderParams are the stack set's own parameter values; every
// instance overrides all of them.
var placeholderParams = map[string]string{
	"TenantId": "unset", "AppVersion": "0", "Tier": "basic", "CodeBucket": "unset", "CodeKey": "unset",
	"JwtIssuer": "https://unset.invalid/", "JwtAudience": "unset",
}

// localCode is the code artifact of local releases. Locally the tenant
// application runs in silo's app host, not in Lambda (the emulator cannot
// run Lambda code), so the artifact only has to exist and be content-hashed
// like a real one; its bootstrap says so if anyone runs it.
func localCode() ([]byte, error) {
	return lambdazip.Pack([]byte("#!/bin/sh\necho 'silo local: the tenant app is served by the silo app host' >&2\nexit 1\n"))
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// unserving passes events on, and stops serving a tenant once it is
// decommissioned: the reconciler's events are its only word on that, and
// in AWS the stack's removal takes the endpoint with it.
type unserving struct {
	next    vending.Publisher
	unserve func(tenantID string)
}

func (u unserving) Publish(ctx context.Context, kind string, t *registry.Tenant) {
	if kind == "tenant.decommissioned" && u.unserve != nil {
		u.unserve(t.ID)
	}
	u.next.Publish(ctx, kind, t)
}

// NewRollouts returns the rollout engine on this control plane: waves are
// StackSet operations of the control plane's manager, and tenants' updates
// end through the reconciler. kick hands a pinned tenant to the runner.
func (c *Control) NewRollouts(cfg rollout.Config, kick func(string), log *slog.Logger) *rollout.Engine {
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond // emulated AWS is fast
	}
	return rollout.New(cfg, rollout.Deps{
		Registry: c.Registry, Deployer: c.StackSets, Tenants: c.Reconciler, Kick: kick, Log: log,
	})
}

// Releases publishes builds as releases of the tenant app: stored in the
// artifact bucket and recorded in the release catalog.
func (c *Control) Releases() preview.StackSetReleases {
	return preview.StackSetReleases{StackSets: c.StackSets, Registry: c.Registry, Template: stacksets.TenantTemplate()}
}

// NewPreviews returns the PR-preview manager on this control plane: builds
// are published to the artifact bucket and recorded in the release
// catalog, resets use the reconciler's cleaner and guard, and kick hands
// tenants to the reconciler's runner. now is the pool's clock (time.Now
// when nil; tests move it to expire leases).
func (c *Control) NewPreviews(cfg preview.Config, kick func(string), now func() time.Time, log *slog.Logger) (*preview.Manager, error) {
	cfg.PoolOU = c.Vending.PoolOU
	if cfg.Region == "" {
		cfg.Region = c.Org.Region
	}
	if cfg.ResetBackoff == 0 {
		cfg.ResetBackoff = 200 * time.Millisecond // emulated AWS is fast
	}
	if cfg.Deadlines == (vending.Deadlines{}) {
		cfg.Deadlines = c.Vending.Deadlines // one set of deadlines for the whole platform
	}
	orgc := organizations.NewFromConfig(c.Config)
	return preview.New(cfg, preview.Deps{
		Registry:  c.Registry,
		Releases:  c.Releases(),
		Artifacts: preview.S3Artifacts{S3: s3.NewFromConfig(c.Config, func(o *s3.Options) { o.UsePathStyle = true })},
		Cleaner:   vending.NewCleaner(c.Accounts, 7, log),
		Instances: c.StackSets,
		Org:       orgc,
		Guard:     vending.NewGuard(orgc, c.Org.ManagementAccountID, c.Vending.SiloOUs),
		Kick:      kick,
		Log:       log,
		Now:       now,
	})
}

// NewAuditor returns the isolation auditor on this control plane: it reads
// tenant accounts through the control plane's member credentials, expects
// the guardrails Wire applied, switches the emulator's IAM enforcement on
// for its probes only, and publishes violations on the bus.
func (c *Control) NewAuditor(log *slog.Logger) (*audit.Auditor, error) {
	return audit.New(audit.Deps{
		Registry:   c.Registry,
		Management: c.Config,
		Accounts:   c.Accounts,
		Stacks:     c.StackSets,
		Enforcer:   c.Org,
		Events:     c.Bus,
		Log:        log,
	}, audit.Options{
		ManagementAccountID: c.Org.ManagementAccountID,
		OrganizationID:      c.Org.OrganizationID,
		OUs:                 c.Org.OUs,
		Guardrails:          c.Guardrails,
	})
}
