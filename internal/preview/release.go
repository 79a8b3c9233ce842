package preview

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// StackSetReleases publishes a build with the tenant template as a
// content-hashed release (stacksets.Manager.Publish) and records it in the
// registry's catalog, where the reconciler finds it by version.
type StackSetReleases struct {
	StackSets *stacksets.Manager
	Registry  *registry.Store
	// Template is the stack set's template; every preview runs the
	// template the fleet runs, with its own code.
	Template []byte
}

// Publish implements Releases. It returns the release as the catalog
// holds it: a build published before keeps its first record (its source
// and time), since the same content is the same release.
func (r StackSetReleases) Publish(ctx context.Context, code []byte, source string) (registry.Release, error) {
	rel, err := r.StackSets.Publish(ctx, r.Template, code)
	if err != nil {
		return registry.Release{}, err
	}
	out := registry.Release{Version: rel.ID, CodeBucket: rel.CodeBucket, CodeKey: rel.CodeKey, TemplateKey: rel.TemplateKey, Source: source}
	if err := r.Registry.PutRelease(ctx, out); err != nil {
		return registry.Release{}, err
	}
	stored, err := r.Registry.GetRelease(ctx, out.Version)
	if err != nil {
		return registry.Release{}, err
	}
	return *stored, nil
}

// S3Artifacts reads builds from S3 with the control plane's credentials.
type S3Artifacts struct{ S3 *s3.Client }

// ParseS3URI splits s3://bucket/key.
func ParseS3URI(uri string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	bucket, key, _ = strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", &registry.FieldError{Field: "artifact_uri", Problem: fmt.Sprintf("%q is not s3://bucket/key", shorten(uri))}
	}
	return bucket, key, nil
}

// Read implements Artifacts: at most max bytes, or an ErrInvalid error.
func (a S3Artifacts) Read(ctx context.Context, uri string, max int64) ([]byte, error) {
	bucket, key, err := ParseS3URI(uri)
	if err != nil {
		return nil, err
	}
	out, err := a.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if awsx.IsNotFound(err) || awsx.ErrorCode(err) == "AccessDenied" {
			return nil, &registry.FieldError{Field: "artifact_uri", Problem: fmt.Sprintf("%s cannot be read (%s)", uri, awsx.ErrorCode(err))}
		}
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	if int64(len(b)) > max {
		return nil, &registry.FieldError{Field: "artifact_uri", Problem: fmt.Sprintf("%s is larger than %d bytes", uri, max)}
	}
	return b, nil
}
