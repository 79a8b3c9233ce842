// Package awsx is silo's one place for AWS plumbing: loading aws.Config with
// an optional endpoint override (the local emulator), retries, classifying AWS
// errors, credentials for member accounts, and counting API calls.
//
// No other package looks at AWS error codes or builds clients' shared
// configuration by hand; they take an aws.Config from here.
package awsx

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// EndpointEnv names the environment variable that points every AWS client at
// another endpoint (the local emulator). Empty means real AWS.
const EndpointEnv = "SILO_AWS_ENDPOINT"

// DefaultRegion is used when neither the options nor the standard chain name one.
const DefaultRegion = "us-east-1"

// Options tune Load. The zero value loads the standard chain.
type Options struct {
	// Endpoint overrides the endpoint of every service (the emulator's URL).
	// When empty, SILO_AWS_ENDPOINT is used if set.
	Endpoint string
	// Region overrides the region from the standard chain.
	Region string
	// AccessKeyID and SecretAccessKey, when both set, replace the standard
	// credential chain with static credentials.
	AccessKeyID, SecretAccessKey, SessionToken string
	// MaxAttempts bounds retries per call; zero means 8, enough to ride out
	// the throttling bursts of Organizations and CloudFormation.
	MaxAttempts int
	// Counter, when set, counts every API call made with the config.
	Counter *Counter
	// Standard selects the SDK's standard retry mode instead of adaptive.
	// Adaptive mode also slows a client's own sending after throttles, which
	// is right against AWS's account-wide rates; local mode, whose emulated
	// time runs hundreds of times faster, uses standard mode.
	Standard bool
	// MaxBackoff caps the delay between retries; the SDK's 20 s when zero.
	MaxBackoff time.Duration
}

// Load returns an aws.Config from the standard chain with silo's retry
// policy (adaptive: client-side rate limiting that backs off on throttling)
// and the optional endpoint override.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	maxAttempts := o.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = 8
	}
	standard := func(s *retry.StandardOptions) {
		s.MaxAttempts = maxAttempts
		if o.MaxBackoff > 0 {
			s.MaxBackoff = o.MaxBackoff
		}
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			if o.Standard {
				return retry.NewStandard(standard)
			}
			return retry.NewAdaptiveMode(func(a *retry.AdaptiveModeOptions) {
				a.StandardOptions = append(a.StandardOptions, standard)
			})
		}),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.AccessKeyID != "" && o.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = os.Getenv(EndpointEnv)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
		// The emulator answers S3 reads with no checksum, and the SDK, set
		// to validate one whenever it can, then logs "Response has no
		// supported checksum" on every GetObject. Against AWS, which
		// returns checksums, validation stays on.
		cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	if o.Counter != nil {
		o.Counter.Attach(&cfg)
	}
	return cfg, nil
}

// Emulated reports whether cfg points at an endpoint override rather than
// real AWS. Clients that need path-style addressing (S3) check it.
func Emulated(cfg aws.Config) bool { return cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "" }
