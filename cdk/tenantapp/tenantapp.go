// Package tenantapp defines the per-tenant application stack: one KMS key
// that encrypts a DynamoDB table, an S3 bucket, a secret, the function's log
// group and environment; the app function; and a REST API in front of it.
//
// The stack is synthesized once per release into a self-contained
// CloudFormation template (no bootstrap, assets or CDK metadata) that
// StackSets deploy into every tenant account; everything tenant-specific is
// a parameter. Synth returns that template; stacksets embeds the committed
// copy so the control plane never needs CDK or Node at run time.
package tenantapp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	app "github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

// StackName is the construct id of the stack (StackSets name the real stack).
const StackName = "SiloTenantApp"

// Parameter names of the template; the StackSet instance overrides them.
const (
	ParamTenantID    = "TenantId"
	ParamAppVersion  = "AppVersion"
	ParamTier        = "Tier"
	ParamCodeBucket  = "CodeBucket"
	ParamCodeKey     = "CodeKey"
	ParamJwtIssuer   = "JwtIssuer"
	ParamJwtAudience = "JwtAudience"
)

// Tiers are the allowed values of the Tier parameter.
var Tiers = []string{"basic", "standard", "enterprise"}

// Throttle is a stage's steady rate (requests per second) and burst.
type Throttle struct{ Rate, Burst int }

// TierThrottles are the API stage limits per tier.
var TierThrottles = map[string]Throttle{
	"basic":      {Rate: 10, Burst: 20},
	"standard":   {Rate: 50, Burst: 100},
	"enterprise": {Rate: 200, Burst: 400},
}

// Output names.
const OutputAPIURL = "ApiUrl"

// AuditSessionName is the only session name under which the account's
// member role may assume the function's role: the isolation audit's
// (internal/audit.SessionName; a test keeps the two equal).
const AuditSessionName = "silo-isolation-audit"

// MemberRole is the role Organizations creates in every account it vends
// (awsx.MemberRole; a test keeps the two equal).
const MemberRole = "OrganizationAccountAccessRole"

// Tag keys put on every taggable resource.
const (
	TagTenant  = "silo:tenant"
	TagVersion = "silo:version"
)

// NewApp returns a CDK app configured for self-contained templates: no
// version reporting (no AWS::CDK::Metadata) and no construct-path metadata.
func NewApp(outdir string) awscdk.App {
	return awscdk.NewApp(&awscdk.AppProps{
		AnalyticsReporting: jsii.Bool(false),
		Outdir:             jsii.String(outdir),
		Context: &map[string]any{
			"aws:cdk:enable-path-metadata":  false,
			"aws:cdk:disable-stack-trace":   true,
			"aws:cdk:disable-asset-staging": true,
		},
	})
}

// NewStack adds the tenant stack to scope.
func NewStack(scope constructs.Construct, id string) awscdk.Stack {
	stack := awscdk.NewStack(scope, jsii.String(id), &awscdk.StackProps{
		// Deployed by StackSets into accounts that were never bootstrapped.
		Synthesizer: awscdk.NewBootstraplessSynthesizer(&awscdk.BootstraplessSynthesizerProps{}),
		Description: jsii.String("silo tenant application stack (one per tenant account)"),
	})

	param := func(name, desc string, extra func(*awscdk.CfnParameterProps)) awscdk.CfnParameter {
		p := &awscdk.CfnParameterProps{Type: jsii.String("String"), Description: jsii.String(desc)}
		if extra != nil {
			extra(p)
		}
		return awscdk.NewCfnParameter(stack, jsii.String(name), p)
	}
	tenantID := param(ParamTenantID, "Tenant id; names the function, table, bucket and secret", func(p *awscdk.CfnParameterProps) {
		// Lower case: it is part of the bucket name. New ids are within the
		// registry's budget, short enough for every name below in every
		// region; the pattern also accepts the longer ids of tenants
		// deployed before the budget, so their updates keep passing
		// (registry/names.go).
		p.AllowedPattern = jsii.String(registry.TemplateIDPattern())
		p.ConstraintDescription = jsii.String(registry.TemplateIDRule())
	}).ValueAsString()
	appVersion := param(ParamAppVersion, "Application release version", nil).ValueAsString()
	tier := param(ParamTier, "Service tier; sets the API throttling", func(p *awscdk.CfnParameterProps) {
		p.AllowedValues = jsii.Strings(Tiers...)
		p.Default = jsii.String("basic")
	}).ValueAsString()
	codeBucket := param(ParamCodeBucket, "Bucket holding the function's zip (the organization's artifact bucket)", nil).ValueAsString()
	codeKey := param(ParamCodeKey, "Key of the function's zip in CodeBucket", nil).ValueAsString()
	jwtIssuer := param(ParamJwtIssuer, "Issuer of the JWTs the app accepts", nil).ValueAsString()
	jwtAudience := param(ParamJwtAudience, "Audience of the JWTs the app accepts", nil).ValueAsString()

	awscdk.Tags_Of(stack).Add(jsii.String(TagTenant), tenantID, nil)
	awscdk.Tags_Of(stack).Add(jsii.String(TagVersion), appVersion, nil)

	// Names derived from the tenant id are the registry's patterns, whose
	// lengths set the id budget.
	name := func(pattern string) *string { return awscdk.Fn_Sub(jsii.String(pattern), nil) }

	// Removal policies: the key, table, bucket and secret are RETAINed. A
	// stack deletion (a failed update rolled back, an operator mistake, a
	// StackSet instance removed) must never take a customer's data with it;
	// decommissioning deletes them explicitly, after export and a grace
	// period. The key is retained with them, or the retained data would be
	// unreadable. The log group holds operational logs only and goes with
	// the stack.
	key := awskms.NewKey(stack, jsii.String("Key"), &awskms.KeyProps{
		Description:       name("silo tenant ${TenantId}: encrypts the table, bucket, secret, logs and function environment"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})
	// CloudWatch Logs encrypts the log group with the key; it needs the key
	// policy to say so, limited to this account's log groups.
	key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("AllowCloudWatchLogs"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(name("logs.${AWS::Region}.amazonaws.com"), nil)},
		Actions:    jsii.Strings("kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"),
		Resources:  jsii.Strings("*"), // in a key policy "*" means this key
		Conditions: &map[string]any{
			"ArnLike": map[string]any{"kms:EncryptionContext:aws:logs:arn": name("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*")},
		},
	}), jsii.Bool(false))

	table := awsdynamodb.NewTable(stack, jsii.String("Table"), &awsdynamodb.TableProps{
		TableName: name(registry.TableNamePattern),
		// The key schema is the app's (internal/tenantapp): one string key.
		PartitionKey:  &awsdynamodb.Attribute{Name: jsii.String(app.TableKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:   awsdynamodb.BillingMode_PAY_PER_REQUEST,
		Encryption:    awsdynamodb.TableEncryption_CUSTOMER_MANAGED,
		EncryptionKey: key,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})

	bucket := awss3.NewBucket(stack, jsii.String("Bucket"), &awss3.BucketProps{
		// Bucket names are global: the account and region make it unique.
		BucketName:        name(registry.BucketNamePattern),
		Encryption:        awss3.BucketEncryption_KMS,
		EncryptionKey:     key,
		BucketKeyEnabled:  jsii.Bool(true),
		Versioned:         jsii.Bool(true),
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})

	secret := awssecretsmanager.NewSecret(stack, jsii.String("SigningSecret"), &awssecretsmanager.SecretProps{
		SecretName:    name(registry.SecretNamePattern),
		Description:   jsii.String("The app's signing material"),
		EncryptionKey: key,
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(64),
			ExcludePunctuation: jsii.Bool(true),
		},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})

	functionName := name(registry.FunctionNamePattern)
	logGroup := awslogs.NewLogGroup(stack, jsii.String("FunctionLogs"), &awslogs.LogGroupProps{
		// The name Lambda writes to, so no other log group appears.
		LogGroupName:  name(registry.LogGroupNamePattern),
		Retention:     awslogs.RetentionDays_ONE_MONTH,
		EncryptionKey: key,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})

	// An explicit role without AWSLambdaBasicExecutionRole, whose log
	// permissions are on every log group ("*"); this one may write only to
	// its own.
	role := awsiam.NewRole(stack, jsii.String("FunctionRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: name("silo tenant ${TenantId}: the app function"),
	})
	// The isolation audit proves that this role is refused everything
	// outside the account by acting as it: the account's member role (which
	// the management account assumes) may assume it, under the audit's
	// session name only, so CloudTrail tells the audit's calls apart.
	role.AssumeRolePolicy().AddStatements(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("SiloIsolationAudit"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewArnPrincipal(name("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/" + MemberRole))},
		Actions:    jsii.Strings("sts:AssumeRole"),
		Conditions: &map[string]any{"StringEquals": map[string]any{"sts:RoleSessionName": AuditSessionName}},
	}))

	fn := awslambda.NewFunction(stack, jsii.String("Function"), &awslambda.FunctionProps{
		// Explicit: an auto-generated name derives from the stack name, and
		// StackSets name stacks "StackSet-..." (moto: "StackSet:...").
		FunctionName:          functionName,
		Runtime:               awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:          awslambda.Architecture_ARM_64(),
		Handler:               jsii.String("bootstrap"),
		Code:                  awslambda.Code_FromBucket(awss3.Bucket_FromBucketName(stack, jsii.String("CodeBucketRef"), codeBucket), codeKey, nil),
		Role:                  role,
		LogGroup:              logGroup,
		MemorySize:            jsii.Number(256),
		Timeout:               awscdk.Duration_Seconds(jsii.Number(10)),
		EnvironmentEncryption: key,
		Environment: &map[string]*string{
			"TENANT_ID":    tenantID,
			"APP_VERSION":  appVersion,
			"TABLE_NAME":   table.TableName(),
			"BUCKET_NAME":  bucket.BucketName(),
			"KMS_KEY_ID":   key.KeyId(),
			"SECRET_ARN":   secret.SecretArn(),
			"JWT_ISSUER":   jwtIssuer,
			"JWT_AUDIENCE": jwtAudience,
		},
	})
	// Least privilege: exactly its own table, bucket, key and secret.
	table.GrantReadWriteData(fn)
	bucket.GrantReadWrite(fn, nil)
	secret.GrantRead(fn, nil)
	key.GrantEncryptDecrypt(fn)
	key.Grant(fn, jsii.String("kms:DescribeKey")) // the app's /health checks its key
	logGroup.GrantWrite(fn)

	throttles := awscdk.NewCfnMapping(stack, jsii.String("TierThrottle"), &awscdk.CfnMappingProps{Mapping: throttleMapping()})
	api := awsapigateway.NewLambdaRestApi(stack, jsii.String("Api"), &awsapigateway.LambdaRestApiProps{
		Handler:     fn,
		Proxy:       jsii.Bool(false),
		RestApiName: name(registry.RestAPINamePattern),
		Description: name("silo tenant ${TenantId}"),
		// Not the account-wide AWS::ApiGateway::Account: the tenant stack
		// must not own account settings.
		CloudWatchRole:     jsii.Bool(false),
		IntegrationOptions: &awsapigateway.LambdaIntegrationOptions{AllowTestInvoke: jsii.Bool(false)},
		DeployOptions: &awsapigateway.StageOptions{
			StageName:            jsii.String("v1"),
			ThrottlingRateLimit:  awscdk.Token_AsNumber(throttles.FindInMap(tier, jsii.String("Rate"), nil)),
			ThrottlingBurstLimit: awscdk.Token_AsNumber(throttles.FindInMap(tier, jsii.String("Burst"), nil)),
		},
	})
	api.Node().TryRemoveChild(jsii.String("Endpoint")) // replaced by ApiUrl
	// The deployment carries CDK-only metadata; the template carries none.
	if d, ok := api.LatestDeployment().Node().DefaultChild().(awscdk.CfnResource); ok {
		d.AddDeletionOverride(jsii.String("Metadata"))
	}
	health := api.Root().AddResource(jsii.String("health"), nil)
	health.AddMethod(jsii.String("GET"), nil, nil)
	items := api.Root().AddResource(jsii.String("items"), nil)
	items.AddMethod(jsii.String("GET"), nil, nil)
	items.AddMethod(jsii.String("POST"), nil, nil)
	item := items.AddResource(jsii.String("{id}"), nil)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		item.AddMethod(jsii.String(m), nil, nil)
	}

	awscdk.NewCfnOutput(stack, jsii.String(OutputAPIURL), &awscdk.CfnOutputProps{
		Value:       api.Url(),
		Description: jsii.String("Base URL of the tenant's API"),
	})
	return stack
}

func throttleMapping() *map[string]*map[string]any {
	m := map[string]*map[string]any{}
	for tier, t := range TierThrottles {
		m[tier] = &map[string]any{"Rate": t.Rate, "Burst": t.Burst}
	}
	return &m
}

// Synth synthesizes the tenant stack and returns its template as indented
// canonical JSON (keys sorted), ready to commit or upload.
func Synth() ([]byte, error) {
	dir, err := os.MkdirTemp("", "silo-tenantapp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	app := NewApp(dir)
	stack := NewStack(app, StackName)
	asm := app.Synth(nil)
	art := asm.GetStackArtifact(stack.ArtifactId())
	raw, err := os.ReadFile(filepath.Clean(*art.TemplateFullPath()))
	if err != nil {
		return nil, fmt.Errorf("read synthesized template: %w", err)
	}
	return Canonical(raw)
}

// Canonical re-encodes a JSON document with sorted keys and two-space
// indentation, so equal templates compare equal byte for byte.
func Canonical(raw []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
