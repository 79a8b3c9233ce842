package vending

import (
	"errors"
	"strings"
	"testing"

	"github.com/silo-saas/silo/registry"
)

// TestConfigRefusesNamesThatOverflow: a reconciler is not built with an
// email pattern, account prefix or tenant domain that would make a name
// AWS refuses for the longest tenant id, so no tenant reaches
// CREATING_ACCOUNT with an account name or email that cannot work.
func TestConfigRefusesNamesThatOverflow(t *testing.T) {
	base := Config{
		ManagementAccount: "111111111111", ProductionOU: "ou-prod", SuspendedOU: "ou-susp",
		Release: Release{Version: "v1", CodeBucket: "artifacts", CodeKey: "app.zip"},
	}
	longestPrefix := strings.Repeat("p", 50-registry.MaxIDLen)
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" when the config is accepted
	}{
		{"defaults", func(*Config) {}, ""},
		{"local platform's pattern", func(c *Config) { c.EmailPattern = "silo+{tenant}@tenants.silo.local" }, ""},
		{"longest account prefix", func(c *Config) { c.AccountPrefix = longestPrefix }, ""},
		{"account prefix one over", func(c *Config) { c.AccountPrefix = longestPrefix + "p" }, "account_prefix"},
		{"email local part one over", func(c *Config) {
			c.EmailPattern = strings.Repeat("e", 64-registry.MaxIDLen+1) + "{tenant}@example.com"
		}, "email_pattern"},
		{"email pattern without the tenant", func(c *Config) { c.EmailPattern = "ops@example.com" }, "email_pattern"},
		{"tenant domain", func(c *Config) { c.HostedZoneID, c.TenantDomain = "Z1", "tenants.example.com" }, ""},
		{"tenant domain too long", func(c *Config) {
			c.HostedZoneID, c.TenantDomain = "Z1", strings.Repeat(strings.Repeat("d", 60)+".", 4)+"com"
		}, "tenant_domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.WithDefaults().validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			var fe *registry.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("validate: %v, want a problem with %s", err, tc.field)
			}
		})
	}
}
