package deployed

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/grants"
)

// policyTemplate has a function whose role holds a policy of the shapes
// CDK writes (GetAtt, Join, Sub, a Ref to a secret, a list and a single
// resource), an inline policy of its own, and a managed policy of the
// template attached both ways (it names the role, the role names it).
const policyTemplate = `{"Resources": {
 "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
 "Role": {"Type": "AWS::IAM::Role", "Properties": {"ManagedPolicyArns": [{"Ref": "Managed"}], "Policies": [{"PolicyName": "logs", "PolicyDocument": {"Statement": [
   {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": {"Fn::GetAtt": ["Logs", "Arn"]}}]}}]}},
 "Managed": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement":
   {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}}}},
 "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement": [
   {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": [{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Join": ["", [{"Fn::GetAtt": ["Table", "Arn"]}, "/index/*"]]}]},
   {"Sid": "Member", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/Member"}},
   {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}},
   {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": "Secret"}},
   {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": {"Fn::Sub": ["${B}/${!literal}/*", {"B": {"Fn::GetAtt": ["Bucket", "Arn"]}}]}},
   {"Effect": "Allow", "Action": "ce:GetCostAndUsage", "Resource": "*"}]}}},
 "Other": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "OtherRole"}], "PolicyDocument": {"Statement": [
   {"Effect": "Allow", "Action": "*", "Resource": "*"}]}}}
}}`

func testRefs() *stackRefs {
	res := func(typ, phys string) cfntypes.StackResourceSummary {
		return cfntypes.StackResourceSummary{ResourceType: aws.String(typ), PhysicalResourceId: aws.String(phys)}
	}
	return &stackRefs{partition: "aws", region: "eu-west-1", account: "111122223333", resources: map[string]cfntypes.StackResourceSummary{
		"Table":  res("AWS::DynamoDB::Table", "silo-registry"),
		"Queue":  res("AWS::SQS::Queue", "https://sqs.eu-west-1.amazonaws.com/111122223333/Stack-Queue-ABC"),
		"Secret": res("AWS::SecretsManager::Secret", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:key-AbCdEf"),
		"Bucket": res("AWS::S3::Bucket", "stack-artifacts-xyz"),
		"Logs":   res("AWS::Logs::LogGroup", "/aws/lambda/fn"),
		"Alarm":  res("AWS::CloudWatch::Alarm", "alarm-1"),
	}}
}

// TestTemplateGrants: a function's grants are every statement of every
// policy attached to its role (inline ones too), one per action and
// resource, each written as the template writes it and resolved against
// the stack; another role's policy is not its.
func TestTemplateGrants(t *testing.T) {
	tpl, err := parseTemplate([]byte(policyTemplate))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.Grants("fn", testRefs())
	if err != nil {
		t.Fatal(err)
	}
	table := "arn:aws:dynamodb:eu-west-1:111122223333:table/silo-registry"
	logs := "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/fn:*"
	g := func(action, resource, written, where string) grants.Grant {
		return grants.Grant{Function: "fn", Action: action, Resource: resource, Written: written, Where: where}
	}
	want := []grants.Grant{
		g("logs:CreateLogStream", logs, "${Logs.Arn}", "Role/logs/0"),
		g("logs:PutLogEvents", logs, "${Logs.Arn}", "Role/logs/0"),
		g("kms:Decrypt", "*", "*", "Managed/0"),
		g("dynamodb:Query", table, "${Table.Arn}", "Policy/0"),
		g("dynamodb:Query", table+"/index/*", "${Table.Arn}/index/*", "Policy/0"),
		g("sts:AssumeRole", "arn:aws:iam::*:role/Member", "arn:${AWS::Partition}:iam::*:role/Member", "Policy/Member"),
		g("sqs:SendMessage", "arn:aws:sqs:eu-west-1:111122223333:Stack-Queue-ABC", "${Queue.Arn}", "Policy/2"),
		g("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:key-AbCdEf", "${Secret}", "Policy/3"),
		g("s3:GetObject", "arn:aws:s3:::stack-artifacts-xyz/${literal}/*", "${Bucket.Arn}/${!literal}/*", "Policy/4"),
		g("ce:GetCostAndUsage", "*", "*", "Policy/5"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grants (-want +got):\n%s", diff)
	}
	if err := tpl.AddGrant("fn", "sqs:PurgeQueue", map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}); err != nil {
		t.Fatal(err)
	}
	got, err = tpl.Grants("fn", nil)
	if err != nil {
		t.Fatal(err)
	}
	if last := got[len(got)-1]; last != (grants.Grant{Function: "fn", Action: "sqs:PurgeQueue", Resource: "${Queue.Arn}", Written: "${Queue.Arn}", Where: "Policy/Added"}) {
		t.Errorf("the added grant reads %+v", last)
	}
}

// TestTemplateGrantsRefused: what the check cannot judge as IAM would is
// an error naming it, not a guess.
func TestTemplateGrantsRefused(t *testing.T) {
	for _, c := range []struct{ name, statement, role, want string }{
		{"a deny", `{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}`, "", "Effect Deny"},
		{"a condition", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}`, "", "has Condition"},
		{"NotAction", `{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}`, "", "has NotAction"},
		{"no resource", `{"Effect": "Allow", "Action": "s3:GetObject"}`, "", "no Resource"},
		{"an unknown intrinsic", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::ImportValue": "x"}}`, "", "cannot read Fn::ImportValue"},
		{"an attribute other than Arn", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::GetAtt": ["Bucket", "DomainName"]}}`, "", "only the Arn attribute"},
		{"the ARN of a type not known", `{"Effect": "Allow", "Action": "cloudwatch:*", "Resource": {"Fn::GetAtt": ["Alarm", "Arn"]}}`, "", "the ARN of a AWS::CloudWatch::Alarm is not known"},
		{"a missing resource", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::GetAtt": ["Nothing", "Arn"]}}`, "", "no resource or parameter Nothing"},
		{"an AWS managed policy", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}`,
			`"ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}]`,
			"has the managed policy arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole, whose statements are not in the template"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := `{"Resources": {
 "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
 "Role": {"Type": "AWS::IAM::Role", "Properties": {` + c.role + `}},
 "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement": [` + c.statement + `]}}}}}`
			tpl, err := parseTemplate([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			_, err = tpl.Grants("fn", testRefs())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}
