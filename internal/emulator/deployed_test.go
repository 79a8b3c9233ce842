package emulator

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/lambdazip"
)

// restTemplate is a function whose environment names an event bus, behind
// a REST API with a deployment and a stage, as the control-plane stack
// makes them (LambdaRestApi).
const restTemplate = `{
 "Resources": {
  "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "bus-x"}},
  "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn-x", "Runtime": "provided.al2023",
    "Handler": "bootstrap", "Role": {"Fn::GetAtt": ["Role", "Arn"]},
    "Code": {"S3Bucket": "code-x", "S3Key": "fn.zip"},
    "Environment": {"Variables": {"BUS": {"Ref": "Bus"}}}}},
  "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "api-x"}},
  "Proxy": {"Type": "AWS::ApiGateway::Resource", "Properties": {"RestApiId": {"Ref": "Api"},
    "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]}, "PathPart": "{proxy+}"}},
  "Any": {"Type": "AWS::ApiGateway::Method", "Properties": {"RestApiId": {"Ref": "Api"}, "ResourceId": {"Ref": "Proxy"},
    "HttpMethod": "ANY", "AuthorizationType": "NONE",
    "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST",
      "Uri": {"Fn::Join": ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", {"Fn::GetAtt": ["Fn", "Arn"]}, "/invocations"]]}}}},
  "Deployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}}, "DependsOn": ["Any"]},
  "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"RestApiId": {"Ref": "Api"}, "DeploymentId": {"Ref": "Deployment"},
    "StageName": "v1", "Description": "the first", "Variables": {"tier": "gold"},
    "MethodSettings": [{"HttpMethod": "*", "ResourcePath": "/*", "ThrottlingBurstLimit": 20, "ThrottlingRateLimit": 10}]}}
 },
 "Outputs": {
  "Url": {"Value": {"Fn::Join": ["", ["https://", {"Ref": "Api"}, ".execute-api.us-east-1.amazonaws.com/", {"Ref": "Stage"}, "/"]]}}
 }
}`

// TestStackFunctionsAndStages checks patches 11 and 12 of
// py/sitecustomize.py through the SDK: a function whose environment
// refers to an event bus holds the bus's name (ListFunctions and
// GetFunctionConfiguration answer), and a template's REST API has its
// stage, on the template's deployment, with its settings.
func TestStackFunctionsAndStages(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	zip, err := lambdazip.Pack([]byte("#!/bin/sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("code-x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("code-x"), Key: aws.String("fn.zip"), Body: bytes.NewReader(zip)}); err != nil {
		t.Fatal(err)
	}
	cfn := cloudformation.NewFromConfig(cfg)
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("rest"), TemplateBody: aws.String(restTemplate),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam}}); err != nil {
		t.Fatal(err)
	}

	l := lambda.NewFromConfig(cfg)
	fn, err := l.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fn-x")})
	if err != nil {
		t.Fatalf("GetFunctionConfiguration: %v", err)
	}
	if got := fn.Environment.Variables["BUS"]; got != "bus-x" {
		t.Errorf("BUS = %q, want the bus's name bus-x", got)
	}
	if list, err := l.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil || len(list.Functions) != 1 {
		t.Errorf("ListFunctions: %v, %v", list, err)
	}

	res, err := cfn.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String("rest")})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range res.StackResources {
		ids[aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
	}
	if ids["Stage"] != "v1" || ids["Deployment"] == "" {
		t.Errorf("physical ids: stage %q, deployment %q", ids["Stage"], ids["Deployment"])
	}
	stages, err := apigateway.NewFromConfig(cfg).GetStages(ctx, &apigateway.GetStagesInput{RestApiId: aws.String(ids["Api"])})
	if err != nil {
		t.Fatal(err)
	}
	if len(stages.Item) != 1 {
		t.Fatalf("%d stages, want v1 only", len(stages.Item))
	}
	st := stages.Item[0]
	type stage struct {
		Name, Deployment, Description string
		Variables                     map[string]string
		Burst                         int32
		Rate                          float64
	}
	got := stage{Name: aws.ToString(st.StageName), Deployment: aws.ToString(st.DeploymentId), Description: aws.ToString(st.Description), Variables: st.Variables}
	if m, ok := st.MethodSettings["*/*"]; ok {
		got.Burst, got.Rate = m.ThrottlingBurstLimit, m.ThrottlingRateLimit
	}
	want := stage{Name: "v1", Deployment: ids["Deployment"], Description: "the first", Variables: map[string]string{"tier": "gold"}, Burst: 20, Rate: 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stage (-want +got):\n%s", diff)
	}
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("rest")})
	if err != nil {
		t.Fatal(err)
	}
	if url := aws.ToString(out.Stacks[0].Outputs[0].OutputValue); !strings.HasSuffix(url, ".amazonaws.com/v1/") {
		t.Errorf("invoke URL %s, want it to end in the stage /v1/", url)
	}
}

// narrowRole makes a role in the management account allowed exactly
// policy, and returns credentials of it (assumed before enforcement: under
// it, moto refuses an assume through a trust policy naming a service).
func narrowRole(t *testing.T, ctx context.Context, o *Org, name, policy string) aws.Config {
	t.Helper()
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	im := iam.NewFromConfig(cfg)
	role, err := im.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("narrow"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	as, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: role.Role.Arn, RoleSessionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	c := as.Credentials
	out := cfg.Copy()
	out.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	out.RetryMaxAttempts = 1
	return out
}

// TestNamedResourcesUnderEnforcement checks patch 13: under enforcement, a
// role granted events:PutEvents on one bus and
// cloudformation:ListStackInstances on one stack set may use those, is
// refused the others (each bus of a PutEvents is checked), and the proxy
// counts the role's calls and its refusals by its access key.
func TestNamedResourcesUnderEnforcement(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	eb := eventbridge.NewFromConfig(cfg)
	cfn := cloudformation.NewFromConfig(cfg)
	for _, name := range []string{"bus-a", "bus-b"} {
		if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"set-a", "set-b"} {
		if _, err := cfn.CreateStackSet(ctx, &cloudformation.CreateStackSetInput{StackSetName: aws.String(name),
			TemplateBody: aws.String(`{"Resources":{"T":{"Type":"AWS::SNS::Topic"}}}`)}); err != nil {
			t.Fatal(err)
		}
	}
	acct, region := o.ManagementAccountID, o.Region
	role := narrowRole(t, ctx, o, "narrow", fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"events:PutEvents","Resource":"arn:aws:events:%s:%s:event-bus/bus-a"},
{"Effect":"Allow","Action":"cloudformation:ListStackInstances","Resource":"arn:aws:cloudformation:%s:%s:stackset/set-a:*"}]}`,
		region, acct, region, acct))
	key, err := role.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	emu.Proxy.Reset()
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()

	events := eventbridge.NewFromConfig(role)
	put := func(buses ...string) error {
		var entries []ebtypes.PutEventsRequestEntry
		for _, b := range buses {
			entries = append(entries, ebtypes.PutEventsRequestEntry{EventBusName: aws.String(b), Source: aws.String("silo.test"), DetailType: aws.String("t"), Detail: aws.String("{}")})
		}
		out, err := events.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		if err == nil && out.FailedEntryCount > 0 {
			return fmt.Errorf("%d entries failed", out.FailedEntryCount)
		}
		return err
	}
	stacks := cloudformation.NewFromConfig(role)
	list := func(set string) error {
		_, err := stacks.ListStackInstances(ctx, &cloudformation.ListStackInstancesInput{StackSetName: aws.String(set)})
		return err
	}
	cases := []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"its bus", func() error { return put("bus-a") }, true},
		{"its bus by arn", func() error { return put("arn:aws:events:" + region + ":" + acct + ":event-bus/bus-a") }, true},
		{"another bus", func() error { return put("bus-b") }, false},
		{"its bus and another", func() error { return put("bus-a", "bus-b") }, false},
		{"the default bus", func() error { return put("default") }, false},
		{"its stack set", func() error { return list("set-a") }, true},
		{"another stack set", func() error { return list("set-b") }, false},
		{"a stack set that does not exist", func() error { return list("set-c") }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			switch {
			case c.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !c.allowed && !awsx.IsAccessDenied(err):
				t.Errorf("got %v, want AccessDenied", err)
			}
		})
	}
	st := emu.Proxy.Stats()
	wantCalls := map[string]int64{"EventBridge.PutEvents": 5, "CloudFormation.ListStackInstances": 3}
	wantDenied := map[string]int64{"EventBridge.PutEvents": 3, "CloudFormation.ListStackInstances": 2}
	if diff := cmp.Diff(wantCalls, st.Callers[key.AccessKeyID]); diff != "" {
		t.Errorf("calls of the role (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDenied, st.Denied[key.AccessKeyID]); diff != "" {
		t.Errorf("refusals of the role (-want +got):\n%s", diff)
	}
}

// TestControlAPINotProxied: moto's control API is not reachable through
// the proxy, so nothing that talks AWS (a function under the deployed
// harness) can switch enforcement off or reset the emulator.
func TestControlAPINotProxied(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	emu.ResetT(t)
	for _, path := range []string{"/moto-api/reset-auth", "/moto-api/reset", "/moto-api/data.json"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, emu.Endpoint+path, strings.NewReader("inf"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s through the proxy: %d, want 403", path, resp.StatusCode)
		}
	}
}

// TestLockIAM: enforcement stays on from LockIAM to UnlockIAM, whatever
// windows open and close meanwhile (an in-process audit's RelaxIAM does not
// switch it off), and Reset ends the lock.
func TestLockIAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	emu.ResetT(t)
	stranger, err := awsx.Load(ctx, awsx.Options{Endpoint: emu.Endpoint, Region: Region, AccessKeyID: "unknown", SecretAccessKey: "unknown", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	enforced := func() bool {
		_, err := sts.NewFromConfig(stranger).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err != nil
	}
	steps := []struct {
		name string
		do   func(context.Context) error
		want bool
	}{
		{"locked", emu.LockIAM, true},
		{"a window opens", emu.EnforceIAM, true},
		{"the window closes", emu.RelaxIAM, true},
		{"locked again", emu.LockIAM, true},
		{"unlocked", emu.UnlockIAM, false},
		{"a window opens", emu.EnforceIAM, true},
		{"locked in the window", emu.LockIAM, true},
		{"unlocked in the window", emu.UnlockIAM, true},
		{"the window closes", emu.RelaxIAM, false},
		{"locked before a reset", emu.LockIAM, true},
		{"reset", func(ctx context.Context) error { _, err := emu.Reset(ctx); return err }, false},
	}
	for _, s := range steps {
		if err := s.do(ctx); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := enforced(); got != s.want || emu.IAMEnforced() != s.want {
			t.Fatalf("after %s: enforced %v (IAMEnforced %v), want %v", s.name, got, emu.IAMEnforced(), s.want)
		}
	}
}

// TestReadsWithoutBodyUnderEnforcement checks patch 14: under enforcement,
// requests with neither a body nor a query string (Lambda's and API
// Gateway's list and get calls) are checked for what they are, not
// refused for a signature moto computed over its own fallback.
func TestReadsWithoutBodyUnderEnforcement(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RetryMaxAttempts = 1
	role := narrowRole(t, ctx, o, "reader", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:ListQueues","Resource":"*"}]}`)
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()
	cases := []struct {
		name string
		call func() error
		// want is the error class: "" for none.
		want string
	}{
		{"admin lists functions", func() error {
			_, err := lambda.NewFromConfig(cfg).ListFunctions(ctx, &lambda.ListFunctionsInput{})
			return err
		}, ""},
		{"admin lists REST APIs", func() error {
			_, err := apigateway.NewFromConfig(cfg).GetRestApis(ctx, &apigateway.GetRestApisInput{})
			return err
		}, ""},
		{"admin gets a missing function", func() error {
			_, err := lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("missing")})
			return err
		}, "not found"},
		{"a role without Lambda grants lists functions", func() error {
			_, err := lambda.NewFromConfig(role).ListFunctions(ctx, &lambda.ListFunctionsInput{})
			return err
		}, "access denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			got := ""
			if err != nil {
				got = awsx.Classify(err).String()
			}
			if got != c.want {
				t.Errorf("got %q (%v), want %q", got, err, c.want)
			}
		})
	}
}

// TestTransactionsAuthorizedByTheirItems checks patch 15: a transaction is
// allowed by its items' own actions on their tables, as in AWS, not by a
// dynamodb:TransactWriteItems action no policy grants.
func TestTransactionsAuthorizedByTheirItems(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := dynamodb.NewFromConfig(cfg)
	for _, name := range []string{"table-a", "table-b"} {
		if _, err := admin.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String(name),
			AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
			KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
			BillingMode:          ddbtypes.BillingModePayPerRequest,
		}); err != nil {
			t.Fatal(err)
		}
	}
	a := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/table-a", o.Region, o.ManagementAccountID)
	role := narrowRole(t, ctx, o, "writer", `{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["dynamodb:PutItem","dynamodb:ConditionCheckItem","dynamodb:GetItem"],"Resource":"`+a+`"}]}`)
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()
	db := dynamodb.NewFromConfig(role)
	key := func(id string) map[string]ddbtypes.AttributeValue {
		return map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: id}}
	}
	write := func(items ...ddbtypes.TransactWriteItem) func() error {
		return func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
			return err
		}
	}
	put := func(table, id string) ddbtypes.TransactWriteItem {
		return ddbtypes.TransactWriteItem{Put: &ddbtypes.Put{TableName: aws.String(table), Item: key(id)}}
	}
	cases := []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"puts on its table", write(put("table-a", "1"), put("table-a", "2")), true},
		{"a put by the table's arn and a condition check", write(put(a, "3"),
			ddbtypes.TransactWriteItem{ConditionCheck: &ddbtypes.ConditionCheck{TableName: aws.String("table-a"), Key: key("1"), ConditionExpression: aws.String("attribute_exists(id)")}}), true},
		{"an update it may not make", write(put("table-a", "4"),
			ddbtypes.TransactWriteItem{Update: &ddbtypes.Update{TableName: aws.String("table-a"), Key: key("1"), UpdateExpression: aws.String("SET v = :v"),
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":v": &ddbtypes.AttributeValueMemberS{Value: "x"}}}}), false},
		{"a put on another table", write(put("table-a", "5"), put("table-b", "5")), false},
		{"a transactional get on its table", func() error {
			_, err := db.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []ddbtypes.TransactGetItem{{Get: &ddbtypes.Get{TableName: aws.String("table-a"), Key: key("1")}}}})
			return err
		}, true},
		{"a transactional get on another table", func() error {
			_, err := db.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []ddbtypes.TransactGetItem{{Get: &ddbtypes.Get{TableName: aws.String("table-b"), Key: key("1")}}}})
			return err
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			switch {
			case c.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !c.allowed && !awsx.IsAccessDenied(err):
				t.Errorf("got %v, want AccessDenied", err)
			}
		})
	}
	// A refused transaction wrote nothing.
	if err := emu.RelaxIAM(ctx); err != nil {
		t.Fatal(err)
	}
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"4", "5"} {
		out, err := admin.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("table-a"), Key: key(id)})
		if err != nil || out.Item != nil {
			t.Errorf("item %s of a refused transaction: %v %v", id, out.Item, err)
		}
	}
}

// queueTemplate is a queue whose messages a function consumes through an
// event source mapping.
const queueTemplate = `{
 "Resources": {
  "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "consumer", "Runtime": "provided.al2023",
    "Handler": "bootstrap", "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Code": {"S3Bucket": "code-q", "S3Key": "fn.zip"}}},
  "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "work", "VisibilityTimeout": 1800}},
  "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {"BatchSize": 10,
    "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]}, "FunctionName": {"Ref": "Fn"}}}
 }
}`

// TestQueueLeftToItsConsumer checks patch 16: a message sent to a queue
// with an event source mapping waits for its consumer (the deployed
// harness, as Lambda in AWS), which receives it first, not after moto
// received it for a function it cannot run.
func TestQueueLeftToItsConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	zip, err := lambdazip.Pack([]byte("#!/bin/sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("code-q")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("code-q"), Key: aws.String("fn.zip"), Body: bytes.NewReader(zip)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cloudformation.NewFromConfig(cfg).CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("queue"), TemplateBody: aws.String(queueTemplate),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam}}); err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromConfig(cfg)
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("work")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: u.QueueUrl, MessageBody: aws.String("job")}); err != nil {
		t.Fatal(err)
	}
	out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: u.QueueUrl, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || out.Messages[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("received %+v, want the message on its first receive", out.Messages)
	}
}

// TestQueueBatchesAuthorizedAsSingleCalls checks patch 17: under
// enforcement, a role granted sqs:SendMessage, sqs:DeleteMessage and
// sqs:ChangeMessageVisibility on its queue may make the batch forms of
// those calls (there are no batch actions in IAM), and is refused them on
// another queue.
func TestQueueBatchesAuthorizedAsSingleCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := sqs.NewFromConfig(cfg)
	urls := map[string]string{}
	for _, name := range []string{"queue-a", "queue-b"} {
		out, err := admin.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		urls[name] = aws.ToString(out.QueueUrl)
	}
	role := narrowRole(t, ctx, o, "consumer", fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["sqs:SendMessage","sqs:ReceiveMessage","sqs:DeleteMessage","sqs:ChangeMessageVisibility"],"Resource":"arn:aws:sqs:%s:%s:queue-a"}]}`,
		o.Region, o.ManagementAccountID))
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()
	q := sqs.NewFromConfig(role)
	// receipts sends two messages to queue with the batch call (the
	// role's own to queue-a, the management user's to the other) and
	// receives them as the management user.
	receipts := func(t *testing.T, queue string) []string {
		t.Helper()
		sender := q
		if queue != "queue-a" {
			sender = admin
		}
		if _, err := sender.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(urls[queue]), Entries: []sqstypes.SendMessageBatchRequestEntry{
			{Id: aws.String("1"), MessageBody: aws.String("one")}, {Id: aws.String("2"), MessageBody: aws.String("two")}}}); err != nil {
			t.Fatal(err)
		}
		out, err := admin.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(urls[queue]), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) != 2 {
			t.Fatalf("received %d messages, %v", len(out.Messages), err)
		}
		return []string{aws.ToString(out.Messages[0].ReceiptHandle), aws.ToString(out.Messages[1].ReceiptHandle)}
	}
	del := func(queue string, rs []string) error {
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(urls[queue])}
		for i, r := range rs {
			in.Entries = append(in.Entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: aws.String(r)})
		}
		out, err := q.DeleteMessageBatch(ctx, in)
		if err == nil && len(out.Failed) > 0 {
			err = fmt.Errorf("%d deletions failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		return err
	}
	hide := func(queue string, rs []string) error {
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(urls[queue])}
		for i, r := range rs {
			in.Entries = append(in.Entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: aws.String(r), VisibilityTimeout: 60})
		}
		out, err := q.ChangeMessageVisibilityBatch(ctx, in)
		if err == nil && len(out.Failed) > 0 {
			err = fmt.Errorf("%d changes failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		return err
	}
	for _, c := range []struct {
		name, queue string
		call        func(string, []string) error
		allowed     bool
	}{
		{"its queue: visibility", "queue-a", hide, true},
		{"its queue: deletion", "queue-a", del, true},
		{"another queue: visibility", "queue-b", hide, false},
		{"another queue: deletion", "queue-b", del, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(c.queue, receipts(t, c.queue))
			switch {
			case c.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !c.allowed && !awsx.IsAccessDenied(err):
				t.Errorf("got %v, want AccessDenied", err)
			}
		})
	}
	t.Run("another queue: sending", func(t *testing.T) {
		_, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(urls["queue-b"]),
			Entries: []sqstypes.SendMessageBatchRequestEntry{{Id: aws.String("1"), MessageBody: aws.String("one")}}})
		if !awsx.IsAccessDenied(err) {
			t.Errorf("got %v, want AccessDenied", err)
		}
	})
}

// TestForwardedCallsUnderEnforcement: a call the proxy forwards itself
// (CreateAccount, at once or replayed when its delay is over) keeps the
// host its signature covers, so under IAM enforcement the management
// user's creation succeeds, and a role without organizations:CreateAccount
// is refused for want of the grant, not for a signature. (A delayed
// creation is answered IN_PROGRESS by the proxy before moto judges it:
// the refusal would come as the request's failure, not at once.)
func TestForwardedCallsUnderEnforcement(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	role := narrowRole(t, ctx, o, "reader", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"organizations:ListAccounts","Resource":"*"}]}`)
	if err := emu.LockIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.UnlockIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()
	if _, err := o.NewAccount(ctx, "now"); err != nil {
		t.Errorf("create an account at once: %v", err)
	}
	_, err := organizations.NewFromConfig(role).CreateAccount(ctx, &organizations.CreateAccountInput{AccountName: aws.String("refused"), Email: aws.String("refused@accounts.example.com")})
	if !awsx.IsAccessDenied(err) {
		t.Errorf("a role without the grant: %v, want AccessDenied", err)
	}
	emu.Proxy.Configure(Faults{CreateAccountDelay: 100 * time.Millisecond})
	if _, err := o.NewAccount(ctx, "later"); err != nil {
		t.Errorf("create an account after a delay: %v", err)
	}
}

// TestIndexQueriesAuthorizedOnTheIndex checks patch 6 for indexes: a
// Query or Scan of a global secondary index is authorized on the index's
// ARN, as in AWS, so a role granted the table alone is refused its
// indexes and a role granted the indexes alone is refused the table.
func TestIndexQueriesAuthorizedOnTheIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dynamodb.NewFromConfig(cfg).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("reg"),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("state"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		GlobalSecondaryIndexes: []ddbtypes.GlobalSecondaryIndex{{IndexName: aws.String("by-state"),
			KeySchema:  []ddbtypes.KeySchemaElement{{AttributeName: aws.String("state"), KeyType: ddbtypes.KeyTypeHash}},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll}}},
		BillingMode: ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/reg", o.Region, o.ManagementAccountID)
	tableOnly := narrowRole(t, ctx, o, "table-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:Query","dynamodb:Scan"],"Resource":"`+table+`"}]}`)
	indexOnly := narrowRole(t, ctx, o, "index-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:Query","dynamodb:Scan"],"Resource":"`+table+`/index/*"}]}`)
	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()
	query := func(role aws.Config, index string) func() error {
		return func() error {
			in := &dynamodb.QueryInput{TableName: aws.String("reg"), KeyConditionExpression: aws.String("pk = :v"),
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":v": &ddbtypes.AttributeValueMemberS{Value: "x"}}}
			if index != "" {
				in.IndexName, in.KeyConditionExpression = aws.String(index), aws.String("#s = :v")
				in.ExpressionAttributeNames = map[string]string{"#s": "state"}
			}
			_, err := dynamodb.NewFromConfig(role).Query(ctx, in)
			return err
		}
	}
	scan := func(role aws.Config, index string) func() error {
		return func() error {
			in := &dynamodb.ScanInput{TableName: aws.String("reg")}
			if index != "" {
				in.IndexName = aws.String(index)
			}
			_, err := dynamodb.NewFromConfig(role).Scan(ctx, in)
			return err
		}
	}
	for _, c := range []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"table grant: query the table", query(tableOnly, ""), true},
		{"table grant: query an index", query(tableOnly, "by-state"), false},
		{"table grant: scan an index", scan(tableOnly, "by-state"), false},
		{"index grant: query an index", query(indexOnly, "by-state"), true},
		{"index grant: scan an index", scan(indexOnly, "by-state"), true},
		{"index grant: query the table", query(indexOnly, ""), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			switch {
			case c.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !c.allowed && !awsx.IsAccessDenied(err):
				t.Errorf("got %v, want AccessDenied", err)
			}
		})
	}
}
