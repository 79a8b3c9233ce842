// Package controlplane defines the management-account stack: the tenant
// registry table, the artifact bucket the organization reads releases from,
// the api, reconciler and prober functions with their triggers, the
// silo-events bus and the alarms. It is deployed with `cdk deploy` (see
// cdk.json), so it uses the default synthesizer and file assets.
package controlplane

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// StackName is the stack's name.
const StackName = "SiloControlPlane"

// AuditSchedule is when the isolation audit runs in AWS: daily at 03:17
// UTC. AuditTask is the task of the event it sends the reconciler
// (lambdas/reconciler knows it by the same name).
const (
	AuditSchedule = "cron(17 3 * * ? *)"
	AuditTask     = "audit-isolation"
)

// ReconcilerTimeout bounds one reconciler invocation, the daily isolation
// audit included: about 1 s per tenant at the audit's concurrency of 8, so
// some 250 tenants (docs/isolation.md). The reconcile queue's visibility
// timeout is six times it, as Lambda's SQS integration advises.
const ReconcilerTimeout = 5 // minutes

// EventBusName is the bus tenant lifecycle and health events go to.
const EventBusName = "silo-events"

// Functions are the control-plane Lambdas; each is built from
// lambdas/<name> into <CodeDir>/<name>.zip by `make build`.
var Functions = []string{"api", "reconciler", "prober", "console"}

// AuditOrganizationActions are the Organizations reads the isolation audit
// makes: OU paths to ids, an account's parents, the SCPs and where they
// are attached.
var AuditOrganizationActions = []string{
	"organizations:ListRoots", "organizations:ListOrganizationalUnitsForParent", "organizations:ListParents",
	"organizations:ListPolicies", "organizations:DescribePolicy", "organizations:ListPoliciesForTarget",
}

// AllowedRegionsPattern is what the AllowedRegions parameter accepts: region
// codes separated by commas, no spaces.
const AllowedRegionsPattern = `^[a-z]{2}(-[a-z]+)+-[0-9]+(,[a-z]{2}(-[a-z]+)+-[0-9]+)*$`

// timeout is a function's timeout in minutes.
func timeout(name string) float64 {
	if name == "reconciler" {
		return ReconcilerTimeout
	}
	return 1
}

// DefaultCodeDir is where `make build` writes the Lambda zips.
const DefaultCodeDir = "dist/lambda"

// Lambda instruction set architectures, as CloudFormation names them.
const (
	ArchARM64  = "arm64"
	ArchX86_64 = "x86_64"
)

// Props configure the stack.
type Props struct {
	// CodeDir holds <function>.zip for every name in Functions.
	CodeDir string
	// Env pins account and region; empty for an environment-agnostic stack.
	Env *awscdk.Environment
	// Architecture is the functions' instruction set: ArchARM64 (the
	// default; what `make build` compiles for AWS) or ArchX86_64. The
	// deployed-mode harness (internal/deployed) builds the zips for the
	// machine it runs on and says so here, since the Lambda runtime
	// interface emulator runs them natively.
	Architecture string
}

// ArchitectureOf returns the Lambda architecture of a Go GOARCH (amd64 is
// x86_64), or an error for one Lambda does not run.
func ArchitectureOf(goarch string) (string, error) {
	switch goarch {
	case "arm64":
		return ArchARM64, nil
	case "amd64":
		return ArchX86_64, nil
	}
	return "", fmt.Errorf("lambda runs arm64 and x86_64 (GOARCH arm64 or amd64), not GOARCH %s", goarch)
}

// lambdaArchitecture maps Props.Architecture to CDK's.
func lambdaArchitecture(a string) (awslambda.Architecture, error) {
	switch a {
	case "", ArchARM64:
		return awslambda.Architecture_ARM_64(), nil
	case ArchX86_64:
		return awslambda.Architecture_X86_64(), nil
	}
	return nil, fmt.Errorf("architecture %q: want %s or %s", a, ArchARM64, ArchX86_64)
}

// CheckCode reports which zips are missing from dir, before CDK fails with
// a less helpful message.
func CheckCode(dir string) error {
	for _, fn := range Functions {
		if _, err := os.Stat(filepath.Join(dir, fn+".zip")); err != nil {
			return fmt.Errorf("lambda code %s: %w (run `make build`)", fn, err)
		}
	}
	return nil
}

// NewStack adds the control-plane stack to scope. It panics on an unknown
// Props.Architecture (Synth checks it first).
func NewStack(scope constructs.Construct, id string, p Props) awscdk.Stack {
	arch, err := lambdaArchitecture(p.Architecture)
	if err != nil {
		panic(err)
	}
	stack := awscdk.NewStack(scope, jsii.String(id), &awscdk.StackProps{
		Env:         p.Env,
		Description: jsii.String("silo control plane (management account)"),
	})
	orgID := awscdk.NewCfnParameter(stack, jsii.String("OrganizationId"), &awscdk.CfnParameterProps{
		Type:           jsii.String("String"),
		Description:    jsii.String("AWS Organizations id (o-...) whose accounts may read release artifacts"),
		AllowedPattern: jsii.String("^o-[a-z0-9]{10,32}$"),
	}).ValueAsString()
	// Operators sign in with the organization's identity provider; the API
	// trusts its RS256 tokens (audience silo-api, a role claim).
	operatorIssuer := awscdk.NewCfnParameter(stack, jsii.String("OperatorIssuer"), &awscdk.CfnParameterProps{
		Type:        jsii.String("String"),
		Description: jsii.String("issuer (iss) of operator tokens the API accepts"),
	}).ValueAsString()
	operatorKey := awscdk.NewCfnParameter(stack, jsii.String("OperatorPublicKey"), &awscdk.CfnParameterProps{
		Type:        jsii.String("String"),
		Description: jsii.String("the operator token issuer's RS256 public key, PEM"),
	}).ValueAsString()
	// The regions of the guardrail SCPs attached to the tenant OUs: the
	// isolation audit rebuilds the SCPs from them and compares.
	allowedRegions := awscdk.NewCfnParameter(stack, jsii.String("AllowedRegions"), &awscdk.CfnParameterProps{
		Type:           jsii.String("String"),
		Description:    jsii.String("regions tenants may use, comma-separated (us-east-1,eu-west-1): the regions the attached guardrail SCPs were written with"),
		AllowedPattern: jsii.String(AllowedRegionsPattern),
	}).ValueAsString()

	// The registry: built from the one schema the Go code uses. RETAIN and
	// deletion protection: it is the source of truth for every tenant.
	s := registry.Schema()
	table := awsdynamodb.NewTable(stack, jsii.String("Registry"), &awsdynamodb.TableProps{
		TableName:           jsii.String(registry.DefaultTable),
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String(s.PartitionKey), Type: awsdynamodb.AttributeType_STRING},
		SortKey:             &awsdynamodb.Attribute{Name: jsii.String(s.SortKey), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		Stream:              awsdynamodb.StreamViewType_NEW_AND_OLD_IMAGES,
		TimeToLiveAttribute: jsii.String(s.TTLAttribute),
		DeletionProtection:  jsii.Bool(true),
		Encryption:          awsdynamodb.TableEncryption_AWS_MANAGED,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	for _, ix := range s.Indexes {
		gsi := &awsdynamodb.GlobalSecondaryIndexProps{
			IndexName:      jsii.String(ix.Name),
			PartitionKey:   &awsdynamodb.Attribute{Name: jsii.String(ix.PartitionKey), Type: awsdynamodb.AttributeType_STRING},
			ProjectionType: awsdynamodb.ProjectionType_ALL,
		}
		if ix.SortKey != "" {
			gsi.SortKey = &awsdynamodb.Attribute{Name: jsii.String(ix.SortKey), Type: awsdynamodb.AttributeType_STRING}
		}
		table.AddGlobalSecondaryIndex(gsi)
	}

	// Release artifacts (Lambda zips) read by CloudFormation in every tenant
	// account. S3-managed encryption: a KMS key would need a key policy for
	// every member account and Lambda's code fetch.
	artifacts := awss3.NewBucket(stack, jsii.String("Artifacts"), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		Versioned:         jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
	})
	artifacts.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("OrganizationReadsArtifacts"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
		Actions:    jsii.Strings("s3:GetObject", "s3:GetObjectVersion"),
		Resources:  jsii.Strings(*artifacts.ArnForObjects(jsii.String("*"))),
		Conditions: &map[string]any{"StringEquals": map[string]any{"aws:PrincipalOrgID": orgID}},
	}))

	bus := awsevents.NewEventBus(stack, jsii.String("Events"), &awsevents.EventBusProps{EventBusName: jsii.String(EventBusName)})

	dlq := awssqs.NewQueue(stack, jsii.String("ReconcileDLQ"), &awssqs.QueueProps{
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})
	queue := awssqs.NewQueue(stack, jsii.String("ReconcileQueue"), &awssqs.QueueProps{
		// Six times the function timeout, as Lambda's SQS integration advises.
		VisibilityTimeout: awscdk.Duration_Minutes(jsii.Number(6 * ReconcilerTimeout)),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: dlq, MaxReceiveCount: jsii.Number(5)},
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
	})

	fns := map[string]awslambda.Function{}
	for _, name := range Functions {
		fns[name] = awslambda.NewFunction(stack, jsii.String("Fn-"+name), &awslambda.FunctionProps{
			FunctionName: jsii.String("silo-" + name),
			Role:         executionRole(stack, name),
			Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
			Architecture: arch,
			Handler:      jsii.String("bootstrap"),
			Code:         awslambda.Code_FromAsset(jsii.String(filepath.Join(p.CodeDir, name+".zip")), nil),
			MemorySize:   jsii.Number(512),
			Timeout:      awscdk.Duration_Minutes(jsii.Number(timeout(name))),
			LogGroup: awslogs.NewLogGroup(stack, jsii.String("Logs-"+name), &awslogs.LogGroupProps{
				LogGroupName:  jsii.String("/aws/lambda/silo-" + name),
				Retention:     awslogs.RetentionDays_THREE_MONTHS,
				RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
			}),
			Environment: &map[string]*string{
				"SILO_REGISTRY_TABLE":  table.TableName(),
				"SILO_EVENT_BUS":       bus.EventBusName(),
				"SILO_RECONCILE_QUEUE": queue.QueueUrl(),
				"SILO_ARTIFACT_BUCKET": artifacts.BucketName(),
				"SILO_ORGANIZATION_ID": orgID,
			},
		})
	}
	// The key of signup status tokens: generated once, never leaves AWS.
	statusSecret := awssecretsmanager.NewSecret(stack, jsii.String("StatusTokenKey"), &awssecretsmanager.SecretProps{
		Description:          jsii.String("keys the status tokens the signup API hands out"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{PasswordLength: jsii.Number(64), ExcludePunctuation: jsii.Bool(true)},
		RemovalPolicy:        awscdk.RemovalPolicy_RETAIN,
	})
	fns["api"].AddEnvironment(jsii.String("SILO_STATUS_SECRET_ARN"), statusSecret.SecretArn(), nil)
	fns["api"].AddEnvironment(jsii.String("SILO_OPERATOR_ISSUER"), operatorIssuer, nil)
	fns["api"].AddEnvironment(jsii.String("SILO_OPERATOR_PUBLIC_KEY"), operatorKey, nil)
	// The isolation audit (lambdas/reconciler): it reads the organization
	// (OUs, SCPs), finds each tenant's stack instance, and acts in tenant
	// accounts through the member role only; AWS enforces what that role
	// and the tenants' own policies allow.
	fns["reconciler"].AddEnvironment(jsii.String("SILO_ALLOWED_REGIONS"), allowedRegions, nil)
	// The console reads; it trusts the same operator tokens as the API, and
	// asks Cost Explorer and Organizations for costs and OU paths.
	fns["console"].AddEnvironment(jsii.String("SILO_OPERATOR_ISSUER"), operatorIssuer, nil)
	fns["console"].AddEnvironment(jsii.String("SILO_OPERATOR_PUBLIC_KEY"), operatorKey, nil)
	fns["console"].AddEnvironment(jsii.String("SILO_CONSOLE_PREFIX"), jsii.String("/console"), nil)
	grant(fns, resources{table: table, bus: bus, queue: queue, statusSecret: statusSecret})
	awsapigateway.NewLambdaRestApi(stack, jsii.String("Console"), &awsapigateway.LambdaRestApiProps{
		Handler:        fns["console"],
		RestApiName:    jsii.String("silo-console"),
		CloudWatchRole: jsii.Bool(false),
		// The stage name is the console's path prefix (SILO_CONSOLE_PREFIX).
		DeployOptions: &awsapigateway.StageOptions{StageName: jsii.String("console")},
	})

	awsapigateway.NewLambdaRestApi(stack, jsii.String("Api"), &awsapigateway.LambdaRestApiProps{
		Handler:        fns["api"],
		RestApiName:    jsii.String("silo"),
		CloudWatchRole: jsii.Bool(false),
		DeployOptions:  &awsapigateway.StageOptions{StageName: jsii.String("v1")},
	})

	// A mapping of its own rather than CDK's SqsEventSource, which grants
	// the role sqs:ChangeMessageVisibility and sqs:GetQueueUrl besides
	// what Lambda's polling uses (grant gives exactly that).
	fns["reconciler"].AddEventSourceMapping(jsii.String("ReconcileQueueSource"), &awslambda.EventSourceMappingOptions{
		EventSourceArn:          queue.QueueArn(),
		BatchSize:               jsii.Number(10),
		ReportBatchItemFailures: jsii.Bool(true),
	})
	everyMinute := awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1)))
	for _, name := range []string{"reconciler", "prober"} {
		awsevents.NewRule(stack, jsii.String("Schedule-"+name), &awsevents.RuleProps{
			Description: jsii.String("every minute: " + name + " sweep"),
			Schedule:    everyMinute,
			Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fns[name], nil)},
		})
	}

	// Daily, at a quiet minute: the isolation audit of every active tenant,
	// run by the reconciler (which keeps each report in the registry and
	// sends a violation event for each failure).
	awsevents.NewRule(stack, jsii.String("Schedule-audit-isolation"), &awsevents.RuleProps{
		Description: jsii.String("daily: isolation audit of every active tenant"),
		Schedule:    awsevents.Schedule_Expression(jsii.String(AuditSchedule)),
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fns["reconciler"], &awseventstargets.LambdaFunctionProps{
			Event: awsevents.RuleTargetInput_FromObject(map[string]any{"task": AuditTask}),
		})},
	})

	awscloudwatch.NewAlarm(stack, jsii.String("DLQDepth"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String("reconcile messages failed five times and wait in the dead-letter queue"),
		Metric:             dlq.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5))}),
		Threshold:          jsii.Number(0),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	awscloudwatch.NewAlarm(stack, jsii.String("ReconcilerErrors"), &awscloudwatch.AlarmProps{
		AlarmDescription:   jsii.String("the reconciler function failed in 3 of the last 5 minutes"),
		Metric:             fns["reconciler"].MetricErrors(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(1))}),
		Threshold:          jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(5),
		DatapointsToAlarm:  jsii.Number(3),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	return stack
}

// resources are what the functions are granted actions on.
type resources struct {
	table        awsdynamodb.Table
	bus          awsevents.EventBus
	queue        awssqs.Queue
	statusSecret awssecretsmanager.Secret
}

// grant gives each function exactly the actions its code calls, on the
// resources it calls them on, and nothing else: no CDK grant helper
// (they grant a table's streams, scans and batch calls, a secret's
// description, a queue's URL and attributes, a bucket's every read).
// The deployed-mode harness records every call each function makes
// under IAM enforcement, and TestGrantsMatchCalls (internal/deployed)
// fails on a call without a grant here and on a grant here that no test
// calls, unless docs/security.md says why it stays: a grant added here
// needs a journey that exercises it or a line there.
func grant(fns map[string]awslambda.Function, r resources) {
	allow := func(fn, sid string, actions []string, on ...*string) {
		fns[fn].AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: &on,
		}))
	}
	table := r.table.TableArn()
	// A query of a global secondary index is authorized on the index.
	indexes := awscdk.Fn_Join(jsii.String(""), &[]*string{table, jsii.String("/index/*")})
	// DynamoDB transactions, silo's every registry write, are authorized
	// by their items' actions: a Put item needs dynamodb:PutItem.
	allow("api", "ReadRegistry", []string{"dynamodb:GetItem", "dynamodb:Query"}, table)
	allow("api", "QueryRegistryIndexes", []string{"dynamodb:Query"}, indexes)
	allow("api", "WriteRegistry", []string{"dynamodb:PutItem"}, table)
	allow("api", "KickReconciler", []string{"sqs:SendMessage"}, r.queue.QueueArn())
	allow("api", "ReadStatusTokenKey", []string{"secretsmanager:GetSecretValue"}, r.statusSecret.SecretArn())

	allow("console", "ReadRegistry", []string{"dynamodb:GetItem", "dynamodb:Query"}, table)
	allow("console", "QueryRegistryIndexes", []string{"dynamodb:Query"}, indexes)
	// Cost Explorer and Organizations' reads take no resource narrower
	// than *.
	allow("console", "ReadCostsAndOUs", []string{"ce:GetCostAndUsage", "organizations:ListParents", "organizations:DescribeOrganizationalUnit"}, jsii.String("*"))

	allow("prober", "QueryRegistryIndexes", []string{"dynamodb:Query"}, indexes)
	allow("prober", "RecordHealth", []string{"dynamodb:PutItem", "dynamodb:BatchWriteItem"}, table)
	allow("prober", "PutHealthEvents", []string{"events:PutEvents"}, r.bus.EventBusArn())

	allow("reconciler", "ReadRegistry", []string{"dynamodb:GetItem", "dynamodb:Query"}, table)
	allow("reconciler", "QueryRegistryIndexes", []string{"dynamodb:Query"}, indexes)
	allow("reconciler", "WriteRegistry", []string{"dynamodb:PutItem"}, table)
	allow("reconciler", "PutTenantEvents", []string{"events:PutEvents"}, r.bus.EventBusArn())
	// What Lambda's polling of the reconcile queue does with the role.
	allow("reconciler", "ConsumeReconcileQueue", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}, r.queue.QueueArn())
	allow("reconciler", "AssumeMemberRole", []string{"sts:AssumeRole"},
		awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:iam::*:role/"+awsx.MemberRole), nil))
	// Organizations' read calls take no resource narrower than *.
	allow("reconciler", "ReadOrganization", AuditOrganizationActions, jsii.String("*"))
	allow("reconciler", "ListTenantStackInstances", []string{"cloudformation:ListStackInstances"},
		awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stackset/"+stacksets.DefaultStackSetName+":*"), nil))
}

// executionRole is a function's role: Lambda may assume it, and it may
// write the function's own log, which the stack creates. It has no
// managed policy: AWSLambdaBasicExecutionRole, which CDK attaches by
// default, allows creating any log group and writing to every one.
// Each function's grants are added to it as statements of its default
// policy (docs/security.md lists them).
func executionRole(stack awscdk.Stack, name string) awsiam.Role {
	role := awsiam.NewRole(stack, jsii.String("Role-"+name), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("execution role of silo-" + name),
	})
	// The log group NewStack gives the function (its LogGroupName), by
	// ARN: the function's own log streams and no other group's.
	role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:     jsii.String("WriteOwnLog"),
		Actions: jsii.Strings("logs:CreateLogStream", "logs:PutLogEvents"),
		Resources: jsii.Strings(*awscdk.Fn_Sub(jsii.String(
			"arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/silo-"+name+":*"), nil)),
	}))
	return role
}

// Synth synthesizes the stack into outdir (a cloud assembly, with assets)
// and returns the template's path.
func Synth(outdir string, p Props) (string, error) {
	if err := CheckCode(p.CodeDir); err != nil {
		return "", err
	}
	if _, err := lambdaArchitecture(p.Architecture); err != nil {
		return "", err
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir)})
	stack := NewStack(app, StackName, p)
	asm := app.Synth(nil)
	return *asm.GetStackArtifact(stack.ArtifactId()).TemplateFullPath(), nil
}
