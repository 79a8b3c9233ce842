package tenantapp

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Environment variables the tenant stack sets on the function. The CDK stack
// (cdk/tenantapp) must set every one of them except EnvJWKSURL.
const (
	EnvTenantID  = "TENANT_ID"
	EnvVersion   = "APP_VERSION"
	EnvTable     = "TABLE_NAME"
	EnvBucket    = "BUCKET_NAME"
	EnvKMSKey    = "KMS_KEY_ID" // key id or key ARN
	EnvSecretARN = "SECRET_ARN"
	EnvIssuer    = "JWT_ISSUER"
	EnvAudience  = "JWT_AUDIENCE"
	EnvJWKSURL   = "JWKS_URL" // optional: JWT_ISSUER + "/.well-known/jwks.json"
)

// Config is what one tenant's application needs to know about its stack.
type Config struct {
	TenantID  string
	Version   string
	TableName string
	Bucket    string
	// KMSKeyID encrypts attachments (SSE-KMS) and is health-checked.
	KMSKeyID  string
	SecretARN string
	// Issuer and Audience are the exact "iss" and "aud" tokens must carry.
	Issuer   string
	Audience string
	// JWKSURL is where the issuer's signing keys are fetched.
	JWKSURL string

	// The rest is tuning that the stack does not set; zero means the default.

	// JWKSRefreshInterval is the least time between two fetches of the key
	// set, so tokens with made-up key ids cannot hammer the issuer (10 s).
	JWKSRefreshInterval time.Duration
	// JWKSMaxAge is how long a fetched key set is trusted before it is
	// fetched again, so a revoked key stops working (1 h).
	JWKSMaxAge time.Duration
	// ClockSkew is the leeway on exp, nbf and iat (30 s).
	ClockSkew time.Duration
}

// ConfigFromEnv reads the config from the environment the stack sets.
func ConfigFromEnv() (Config, error) { return configFrom(os.LookupEnv) }

func configFrom(lookup func(string) (string, bool)) (Config, error) {
	var missing []string
	get := func(name string) string {
		v, _ := lookup(name)
		v = strings.TrimSpace(v)
		if v == "" {
			missing = append(missing, name)
		}
		return v
	}
	c := Config{
		TenantID:  get(EnvTenantID),
		Version:   get(EnvVersion),
		TableName: get(EnvTable),
		Bucket:    get(EnvBucket),
		KMSKeyID:  get(EnvKMSKey),
		SecretARN: get(EnvSecretARN),
		Issuer:    get(EnvIssuer),
		Audience:  get(EnvAudience),
	}
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("tenantapp config: missing environment variables: %s", strings.Join(missing, ", "))
	}
	if v, _ := lookup(EnvJWKSURL); strings.TrimSpace(v) != "" {
		c.JWKSURL = strings.TrimSpace(v)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// withDefaults fills the derived and tuning fields.
func (c Config) withDefaults() Config {
	if c.JWKSURL == "" {
		c.JWKSURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/jwks.json"
	}
	if c.JWKSRefreshInterval == 0 {
		c.JWKSRefreshInterval = 10 * time.Second
	}
	if c.JWKSMaxAge == 0 {
		c.JWKSMaxAge = time.Hour
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"TenantID", c.TenantID}, {"TableName", c.TableName}, {"Bucket", c.Bucket},
		{"KMSKeyID", c.KMSKeyID}, {"Issuer", c.Issuer}, {"Audience", c.Audience},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", f.name))
		}
	}
	for _, u := range []struct{ name, v string }{{EnvIssuer, c.Issuer}, {EnvJWKSURL, c.JWKSURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q is not an http(s) URL", u.name, u.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tenantapp config: %w", err)
	}
	return nil
}
