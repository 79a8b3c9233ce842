package tenantapp

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/silo-saas/silo/internal/awsx"
)

// checkTimeout bounds each dependency check, so a hung dependency makes the
// app degraded, not the prober's request time out.
const checkTimeout = 3 * time.Second

// Health is the body of GET /health.
type Health struct {
	Status  string           `json:"status"` // "ok" or "degraded"
	Tenant  string           `json:"tenant"`
	Version string           `json:"version"`
	Checks  map[string]Check `json:"checks"`
}

// Check is the result of one dependency check. Error is a short class
// ("not found", "access denied", "timeout", ...), never AWS's message:
// health is unauthenticated and must not leak names or ARNs.
type Check struct {
	OK        bool   `json:"ok"`
	LatencyMS int64  `json:"latency_ms"`
	Error     string `json:"error,omitempty"`
}

// errCheck is a failed check whose message is safe to show.
type errCheck string

func (e errCheck) Error() string { return string(e) }

func (a *App) health(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	checks := map[string]func(context.Context) error{
		// Each check exercises the permission the app needs, in the
		// cheapest way: a GetItem of a key no item has, HeadBucket,
		// DescribeKey (the key must be Enabled for SSE-KMS to work) and
		// DescribeSecret (metadata only, never the value).
		"table": func(ctx context.Context) error {
			_, err := a.c.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{
				TableName: aws.String(a.cfg.TableName), Key: keyOf("health-probe"),
			})
			return err
		},
		"bucket": func(ctx context.Context) error {
			_, err := a.c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(a.cfg.Bucket)})
			return err
		},
		"key": func(ctx context.Context) error {
			out, err := a.c.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(a.cfg.KMSKeyID)})
			if err != nil {
				return err
			}
			if st := out.KeyMetadata.KeyState; st != kmstypes.KeyStateEnabled {
				return errCheck("key is " + string(st))
			}
			return nil
		},
		"secret": func(ctx context.Context) error {
			out, err := a.c.Secrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(a.cfg.SecretARN)})
			if err != nil {
				return err
			}
			if out.DeletedDate != nil {
				return errCheck("secret is scheduled for deletion")
			}
			return nil
		},
	}
	h := Health{Status: "ok", Tenant: a.cfg.TenantID, Version: a.cfg.Version, Checks: map[string]Check{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			start := time.Now()
			err := check(cctx)
			c := Check{OK: err == nil, LatencyMS: time.Since(start).Milliseconds()}
			if err != nil {
				c.Error = describeCheckError(err)
				a.log.WarnContext(ctx, "health check failed", "check", name, "err", err)
			}
			mu.Lock()
			h.Checks[name] = c
			mu.Unlock()
		})
	}
	wg.Wait()
	status := http.StatusOK
	for _, c := range h.Checks {
		if !c.OK {
			h.Status, status = "degraded", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, status, h)
}

func describeCheckError(err error) string {
	var ec errCheck
	switch {
	case errors.As(err, &ec):
		return string(ec)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if c := awsx.Classify(err); c != awsx.Other {
		return c.String()
	}
	return "error"
}
