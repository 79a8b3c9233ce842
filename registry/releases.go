package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Release is one version of the tenant application as the registry knows
// it: the code artifact its stack instances point at, under a version named
// by content hash. Tenants name the release they run (AppVersion) and the
// one they should run (TargetVersion); the reconciler reads the release to
// deploy from here.
type Release struct {
	Version     string `json:"version" dynamodbav:"version"`
	CodeBucket  string `json:"code_bucket" dynamodbav:"code_bucket"`
	CodeKey     string `json:"code_key" dynamodbav:"code_key"`
	TemplateKey string `json:"template_key,omitempty" dynamodbav:"template_key,omitempty"`
	// Source says where the build came from ("preview acme/web#42",
	// "s3://bucket/key").
	Source    string    `json:"source,omitempty" dynamodbav:"source,omitempty"`
	CreatedAt time.Time `json:"created_at" dynamodbav:"created_at"`
}

const prefixRelease = "RELEASE#"

type releaseItem struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
	Release
}

// PutRelease records a release. Versions are content hashes, so a release
// already recorded is the same release: the first record is kept.
func (s *Store) PutRelease(ctx context.Context, r Release) error {
	if r.Version == "" || r.CodeBucket == "" || r.CodeKey == "" {
		return &FieldError{"release", "version, code bucket and code key are required"}
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	item, err := attributevalue.MarshalMap(releaseItem{PK: prefixRelease + r.Version, SK: skMeta, Release: r})
	if err != nil {
		return fmt.Errorf("encode release %s: %w", r.Version, err)
	}
	err = s.transact(ctx, "record release "+r.Version, types.TransactWriteItem{Put: &types.Put{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}})
	if err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// GetRelease returns a recorded release.
func (s *Store) GetRelease(ctx context.Context, version string) (*Release, error) {
	if version == "" {
		return nil, &FieldError{"release", "is required"}
	}
	var it releaseItem
	if err := s.getItem(ctx, prefixRelease+version, fmt.Sprintf("release %q", version), &it); err != nil {
		return nil, err
	}
	return &it.Release, nil
}

// currentReleaseKey holds the release new tenants get. It is not under
// RELEASE#: versions are content hashes, and no name of this item's may
// ever be mistaken for one.
const currentReleaseKey = "CURRENT_RELEASE"

// SetCurrentRelease makes version the release new tenants are deployed
// with; a rollout that completes sets it, so that tenants vended after it
// do not start on the release it replaced.
func (s *Store) SetCurrentRelease(ctx context.Context, version, by string) error {
	if version == "" {
		return &FieldError{"release", "is required"}
	}
	item, err := attributevalue.MarshalMap(map[string]any{
		attrPK: currentReleaseKey, attrSK: skMeta, "version": version, "set_by": by, "set_at": s.now(),
	})
	if err != nil {
		return err
	}
	if _, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(s.table), Item: item}},
	}}); err != nil {
		return fmt.Errorf("set the current release: %w", err)
	}
	return nil
}

// CurrentRelease returns the release set by SetCurrentRelease, or "".
func (s *Store) CurrentRelease(ctx context.Context) (string, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), Key: keyOf(currentReleaseKey, skMeta),
	})
	if err != nil {
		return "", fmt.Errorf("read the current release: %w", err)
	}
	var v struct {
		Version string `dynamodbav:"version"`
	}
	if out.Item != nil {
		if err := attributevalue.UnmarshalMap(out.Item, &v); err != nil {
			return "", fmt.Errorf("decode the current release: %w", err)
		}
	}
	return v.Version, nil
}
