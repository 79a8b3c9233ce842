package deployed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// The CDK bootstrap of an account, as `cdk bootstrap` leaves it with the
// default qualifier: the version parameter the deploy checks and the
// bucket file assets are published to.
const (
	BootstrapQualifier = "hnb659fds"
	// BootstrapVersion is what the harness records as the account's
	// bootstrap version (the CDK CLI refuses to deploy below the stack's
	// requiresBootstrapStackVersion).
	BootstrapVersion = 21
)

// BootstrapParameter is the SSM parameter holding the bootstrap version.
const BootstrapParameter = "/cdk-bootstrap/" + BootstrapQualifier + "/version"

// AssetsBucket is the bootstrap's file asset bucket of an account and
// region.
func AssetsBucket(account, region string) string {
	return "cdk-" + BootstrapQualifier + "-assets-" + account + "-" + region
}

// maxTemplateBody is the largest template CloudFormation takes inline;
// above it the CDK CLI deploys from the template it published to the
// assets bucket.
const maxTemplateBody = 51200

// deployment is what deploy needs.
type deployment struct {
	cfg             aws.Config // the management account (the operator's credentials)
	account, region string
	asm             *assembly
	parameters      map[string]string
	edit            func(*Template) error
}

// bootstrap makes the account look like one `cdk bootstrap` has run in:
// the version parameter and the assets bucket. It is safe to repeat.
func bootstrap(ctx context.Context, cfg aws.Config, account, region string) error {
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(BootstrapParameter), Value: aws.String(strconv.Itoa(BootstrapVersion)),
		Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true),
	}); err != nil {
		return fmt.Errorf("cdk bootstrap: version parameter: %w", err)
	}
	s := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(AssetsBucket(account, region))}); err != nil && !awsx.IsAlreadyExists(err) {
		return fmt.Errorf("cdk bootstrap: assets bucket: %w", err)
	}
	return nil
}

// deploy does what `cdk deploy` does for the control-plane stack in a
// bootstrapped account, with the operator's own credentials rather than
// the bootstrap's deploy role: it checks the bootstrap version, publishes
// every file asset where the asset manifest says, and creates the stack
// with the parameters, waiting until it is complete. It returns the
// stack's id.
func deploy(ctx context.Context, d deployment) (string, error) {
	if d.asm.bootstrapParameter != "" {
		out, err := ssm.NewFromConfig(d.cfg).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(d.asm.bootstrapParameter)})
		if err != nil {
			return "", fmt.Errorf("read the CDK bootstrap version (%s): %w", d.asm.bootstrapParameter, err)
		}
		if v, err := strconv.Atoi(aws.ToString(out.Parameter.Value)); err != nil || v < d.asm.bootstrapVersion {
			return "", fmt.Errorf("the account's CDK bootstrap version is %q; the stack needs %d or later", aws.ToString(out.Parameter.Value), d.asm.bootstrapVersion)
		}
	}
	s := s3.NewFromConfig(d.cfg, func(o *s3.Options) { o.UsePathStyle = true })
	for _, f := range d.asm.files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return "", err
		}
		bucket, key := d.substitute(f.bucket), d.substitute(f.object)
		if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b)}); err != nil {
			return "", fmt.Errorf("publish asset s3://%s/%s: %w", bucket, key, err)
		}
	}

	raw, err := os.ReadFile(d.asm.templateFile)
	if err != nil {
		return "", err
	}
	tpl, err := parseTemplate(raw)
	if err != nil {
		return "", err
	}
	if d.edit != nil {
		if err := d.edit(tpl); err != nil {
			return "", fmt.Errorf("edit the template: %w", err)
		}
	}
	body, err := tpl.bytes()
	if err != nil {
		return "", err
	}
	in := &cloudformation.CreateStackInput{
		StackName: aws.String(d.asm.stackName),
		Capabilities: []cfntypes.Capability{
			cfntypes.CapabilityCapabilityIam, cfntypes.CapabilityCapabilityNamedIam, cfntypes.CapabilityCapabilityAutoExpand,
		},
	}
	for _, k := range sortedKeys(d.parameters) {
		in.Parameters = append(in.Parameters, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(d.parameters[k])})
	}
	if len(body) > maxTemplateBody {
		key := "harness/" + d.asm.stackName + ".template.json"
		bucket := AssetsBucket(d.account, d.region)
		if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			return "", fmt.Errorf("publish the template: %w", err)
		}
		in.TemplateURL = aws.String(fmt.Sprintf("https://s3.%s.amazonaws.com/%s/%s", d.region, bucket, key))
	} else {
		in.TemplateBody = aws.String(string(body))
	}
	cfn := cloudformation.NewFromConfig(d.cfg)
	out, err := cfn.CreateStack(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create stack %s: %w", d.asm.stackName, err)
	}
	id := aws.ToString(out.StackId)
	w := cloudformation.NewStackCreateCompleteWaiter(cfn, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(id)}, 10*time.Minute); err != nil {
		return "", fmt.Errorf("stack %s did not reach CREATE_COMPLETE: %w%s", d.asm.stackName, err, failedResources(ctx, cfn, id))
	}
	return id, nil
}

// substitute fills the placeholders an environment-agnostic asset
// manifest leaves for the CLI.
func (d deployment) substitute(s string) string {
	return strings.NewReplacer("${AWS::AccountId}", d.account, "${AWS::Region}", d.region, "${AWS::Partition}", "aws").Replace(s)
}

// failedResources describes the stack events that failed, for an error.
func failedResources(ctx context.Context, cfn *cloudformation.Client, stack string) string {
	out, err := cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range out.StackEvents {
		if strings.HasSuffix(string(e.ResourceStatus), "_FAILED") {
			fmt.Fprintf(&b, "\n  %s (%s): %s", aws.ToString(e.LogicalResourceId), aws.ToString(e.ResourceType), aws.ToString(e.ResourceStatusReason))
		}
	}
	return b.String()
}

// stackResources lists the stack's resources by logical id: type and
// physical id.
func stackResources(ctx context.Context, cfn *cloudformation.Client, stack string) (map[string]cfntypes.StackResourceSummary, error) {
	out := map[string]cfntypes.StackResourceSummary{}
	p := cloudformation.NewListStackResourcesPaginator(cfn, &cloudformation.ListStackResourcesInput{StackName: aws.String(stack)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the resources of stack %s: %w", stack, err)
		}
		for _, r := range page.StackResourceSummaries {
			out[aws.ToString(r.LogicalResourceId)] = r
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the stack has no resources")
	}
	return out, nil
}
