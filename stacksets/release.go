package stacksets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// s3API lists the S3 calls publishing makes; *s3.Client satisfies it.
type s3API interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	CreateBucket(ctx context.Context, in *s3.CreateBucketInput, opts ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
	PutBucketVersioning(ctx context.Context, in *s3.PutBucketVersioningInput, opts ...func(*s3.Options)) (*s3.PutBucketVersioningOutput, error)
	PutBucketEncryption(ctx context.Context, in *s3.PutBucketEncryptionInput, opts ...func(*s3.Options)) (*s3.PutBucketEncryptionOutput, error)
	PutPublicAccessBlock(ctx context.Context, in *s3.PutPublicAccessBlockInput, opts ...func(*s3.Options)) (*s3.PutPublicAccessBlockOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Release is one deployable version of the tenant application: a template
// and a code artifact, both stored in the artifact bucket under their
// content hash. Its ID is the hash of the pair, so the same inputs always
// make the same release.
type Release struct {
	// ID names the release: the first 20 hex digits of
	// sha256(sha256(template) || sha256(code)).
	ID string
	// TemplateSHA256 is the hex SHA-256 of the template.
	TemplateSHA256 string
	// TemplateKey and TemplateURL locate the template in the artifact bucket;
	// StackSets read it from there (templates up to 1 MB).
	TemplateKey, TemplateURL string
	// TemplateBody is the template itself, for comparisons and for callers
	// that pass it inline (at most 51,200 bytes).
	TemplateBody string
	// CodeBucket and CodeKey locate the Lambda code zip; they become the
	// CodeBucket and CodeKey parameters of every stack instance.
	CodeBucket, CodeKey string
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newRelease names the artifacts of (template, code) in bucket.
func newRelease(bucket, region, urlSuffix string, template, code []byte) Release {
	th, ch := sha(template), sha(code)
	r := Release{
		ID:             sha([]byte(th + ch))[:20],
		TemplateSHA256: th,
		TemplateKey:    "releases/templates/" + th + ".json",
		TemplateBody:   string(template),
		CodeBucket:     bucket,
		CodeKey:        "releases/code/" + ch + ".zip",
	}
	// Virtual-hosted style: what AWS documents for TemplateURL, and the
	// form moto parses (bucket from the host's first label).
	r.TemplateURL = fmt.Sprintf("https://%s.s3.%s.%s/%s", bucket, region, urlSuffix, r.TemplateKey)
	return r
}

// Publish stores the template and the code zip in the artifact bucket under
// their content hashes and returns the release they make. Artifacts already
// stored are not uploaded again, so publishing twice is a no-op. When
// Options.CreateBucket is set it first ensures the bucket exists (local
// mode; in AWS the control-plane stack owns the bucket).
func (m *Manager) Publish(ctx context.Context, template, code []byte) (Release, error) {
	if len(template) == 0 || len(code) == 0 {
		return Release{}, fmt.Errorf("publish release: empty template or code")
	}
	if m.opts.CreateBucket {
		if err := m.EnsureBucket(ctx); err != nil {
			return Release{}, err
		}
	}
	rel := newRelease(m.opts.Bucket, m.region, m.opts.URLSuffix, template, code)
	for _, a := range []struct {
		key, contentType string
		body             []byte
	}{
		{rel.TemplateKey, "application/json", template},
		{rel.CodeKey, "application/zip", code},
	} {
		if err := m.putOnce(ctx, a.key, a.contentType, a.body); err != nil {
			return Release{}, fmt.Errorf("publish release %s: %w", rel.ID, err)
		}
	}
	m.log.InfoContext(ctx, "release published", "release", rel.ID, "bucket", rel.CodeBucket,
		"template", rel.TemplateKey, "code", rel.CodeKey)
	return rel, nil
}

// putOnce uploads body under key unless the key exists. Keys are content
// hashes, so an existing key holds the same bytes.
func (m *Manager) putOnce(ctx context.Context, key, contentType string, body []byte) error {
	_, err := m.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(m.opts.Bucket), Key: aws.String(key)})
	if err == nil {
		return nil
	}
	if !awsx.IsNotFound(err) {
		return fmt.Errorf("look for s3://%s/%s: %w", m.opts.Bucket, key, err)
	}
	if _, err := m.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(m.opts.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String(contentType),
	}); err != nil {
		return fmt.Errorf("upload s3://%s/%s: %w", m.opts.Bucket, key, err)
	}
	return nil
}

// EnsureBucket creates the artifact bucket if it is missing and (re)applies
// its settings: versioned, encrypted at rest, all public access blocked.
// Every step is idempotent, so a crash half way is repaired by the next call.
func (m *Manager) EnsureBucket(ctx context.Context) error {
	b := aws.String(m.opts.Bucket)
	_, err := m.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: b})
	switch {
	case err == nil:
	case awsx.IsNotFound(err):
		in := &s3.CreateBucketInput{Bucket: b}
		if m.region != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{
				LocationConstraint: s3types.BucketLocationConstraint(m.region),
			}
		}
		if _, err := m.s3.CreateBucket(ctx, in); err != nil && !awsx.IsAlreadyExists(err) {
			return fmt.Errorf("create artifact bucket %s: %w", m.opts.Bucket, err)
		}
		m.log.InfoContext(ctx, "artifact bucket created", "bucket", m.opts.Bucket)
	default:
		return fmt.Errorf("look for artifact bucket %s: %w", m.opts.Bucket, err)
	}
	if _, err := m.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  b,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	}); err != nil {
		return fmt.Errorf("enable versioning of %s: %w", m.opts.Bucket, err)
	}
	if _, err := m.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
		Bucket: b,
		ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
			Rules: []s3types.ServerSideEncryptionRule{{
				// SSE-S3: member accounts read the code without a grant on a key.
				ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256},
			}},
		},
	}); err != nil {
		return fmt.Errorf("enable encryption of %s: %w", m.opts.Bucket, err)
	}
	if _, err := m.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
		Bucket: b,
		PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true),
			BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
		},
	}); err != nil {
		return fmt.Errorf("block public access to %s: %w", m.opts.Bucket, err)
	}
	return nil
}
