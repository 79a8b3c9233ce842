package tenantapp

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/silo-saas/silo/internal/awsx"
)

// dynamoAPI lists the DynamoDB calls the app makes on its own table.
type dynamoAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// s3API lists the S3 calls the app makes on its own bucket.
type s3API interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// kmsAPI is the health check of the key; encryption itself is done by S3
// (SSE-KMS), so the app never holds key material.
type kmsAPI interface {
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, opts ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

// secretsAPI is the health check of the secret. DescribeSecret reads only
// metadata, so a health probe never pulls the secret's value.
type secretsAPI interface {
	DescribeSecret(ctx context.Context, in *secretsmanager.DescribeSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
}

// Clients are the AWS clients the app uses, all acting in the tenant's own
// account. The SDK's clients satisfy the fields as they are.
type Clients struct {
	DynamoDB dynamoAPI
	S3       s3API
	KMS      kmsAPI
	Secrets  secretsAPI
}

// NewClients builds the SDK clients from cfg. It is shared by the Lambda and
// the local app host so both address S3 the same way: path-style against the
// emulator (it cannot resolve virtual-hosted bucket names), virtual-hosted in AWS.
func NewClients(cfg aws.Config) Clients {
	pathStyle := awsx.Emulated(cfg)
	return Clients{
		DynamoDB: dynamodb.NewFromConfig(cfg),
		S3:       s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle }),
		KMS:      kms.NewFromConfig(cfg),
		Secrets:  secretsmanager.NewFromConfig(cfg),
	}
}
