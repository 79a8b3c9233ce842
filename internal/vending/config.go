// Package vending is silo's reconciler: it takes each tenant from REQUESTED
// to ACTIVE (account, OU, readiness, stack instance, endpoint) and from
// DECOMMISSIONING to CLOSED, one idempotent step at a time.
//
// It is level-triggered: it looks at what the registry says a tenant should
// be and what AWS says it is, and takes the next step. It records the handle
// of every asynchronous AWS operation before it waits on it, and claims a
// tenant in the registry before creating its account, so a crash at any
// point resumes without a second account or a lost one.
package vending

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Config is the reconciler's configuration.
type Config struct {
	// EmailPattern makes each account's root email; {tenant} is replaced by
	// the tenant id. AWS needs a unique email per account.
	EmailPattern string
	// AccountPrefix starts every account name: <prefix><tenant id>.
	AccountPrefix string
	// ManagementAccount is the organization's management account id.
	ManagementAccount string
	// OU ids: where active tenants, previews and decommissioned accounts go,
	// and every OU the guard accepts as silo's.
	ProductionOU, PreviewOU, SuspendedOU string
	// PoolOU is where warm preview-pool accounts wait between leases.
	PoolOU  string
	SiloOUs []string
	// Release is what new tenants get.
	Release Release
	// JWT issuer and audience of the tenant application.
	JWTIssuer, JWTAudience string
	// Deadlines bound how long a tenant may make no progress in each
	// working state (deadlines.go); zero fields take DefaultDeadlines. The
	// readiness gate's bound is the PREPARING deadline.
	Deadlines Deadlines
	// ClaimTTL is how long a reconciler's claim on creating a tenant's
	// account holds before another reconciler may take over.
	ClaimTTL time.Duration
	// PollInterval is the first delay between polls of an AWS operation; it
	// grows to MaxPollInterval.
	PollInterval, MaxPollInterval time.Duration
	// KeyDeletionDays is the KMS key deletion window at decommission (7–30).
	KeyDeletionDays int32
	// Quotas the governor enforces.
	Quotas Quotas
	// HostedZoneID and TenantDomain give each customer tenant a DNS name,
	// <tenant id>.<TenantDomain>, in that Route 53 zone of the management
	// account (see dns.go). Both empty (or no Deps.DNS): no records.
	HostedZoneID, TenantDomain string
	// EventBus receives tenant events; empty disables them.
	EventBus string
	// Actor names the reconciler in audit events.
	Actor string
}

// Release is one version of the tenant application: the StackSet template
// it belongs to and the code artifact its instances point at.
type Release struct {
	Version    string
	CodeBucket string
	CodeKey    string
}

// WithDefaults fills every unset field with its default.
func (c Config) WithDefaults() Config {
	if c.EmailPattern == "" {
		c.EmailPattern = "silo+{tenant}@example.com"
	}
	if c.AccountPrefix == "" {
		c.AccountPrefix = "silo-"
	}
	c.Deadlines = c.Deadlines.WithDefaults()
	orDefault(&c.ClaimTTL, 2*time.Minute)
	orDefault(&c.PollInterval, 2*time.Second)
	orDefault(&c.MaxPollInterval, 15*time.Second)
	orDefault(&c.KeyDeletionDays, 7)
	if c.Actor == "" {
		c.Actor = "reconciler"
	}
	c.Quotas = c.Quotas.withDefaults()
	return c
}

func (c Config) validate() error {
	var missing []string
	for name, v := range map[string]string{
		"ManagementAccount": c.ManagementAccount, "ProductionOU": c.ProductionOU, "SuspendedOU": c.SuspendedOU,
		"Release.Version": c.Release.Version, "Release.CodeBucket": c.Release.CodeBucket, "Release.CodeKey": c.Release.CodeKey,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if (c.HostedZoneID == "") != (c.TenantDomain == "") {
		missing = append(missing, "both HostedZoneID and TenantDomain (or neither)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("vending config: missing %s", strings.Join(missing, ", "))
	}
	// The names made from these must fit AWS's limits for every tenant's
	// id, however long (registry/names.go).
	bad := []error{registry.CheckEmailPattern(c.EmailPattern), registry.CheckAccountPrefix(c.AccountPrefix)}
	if c.TenantDomain != "" {
		bad = append(bad, registry.CheckTenantDomain(c.TenantDomain))
	}
	if err := errors.Join(bad...); err != nil {
		return fmt.Errorf("vending config: %w", err)
	}
	return nil
}

// Email returns the root email of a tenant's account.
func (c Config) Email(tenant string) string { return registry.AccountEmail(c.EmailPattern, tenant) }

// AccountName returns the name of a tenant's account.
func (c Config) AccountName(tenant string) string {
	return registry.AccountName(c.AccountPrefix, tenant)
}

// targetOU is where a tenant's account belongs while it serves.
func (c Config) targetOU(t *registry.Tenant) string {
	if t.Kind == registry.KindPreview && c.PreviewOU != "" {
		return c.PreviewOU
	}
	if t.Kind == registry.KindPool && c.PoolOU != "" {
		return c.PoolOU
	}
	return c.ProductionOU
}
