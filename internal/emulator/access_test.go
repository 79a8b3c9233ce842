package emulator

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/grants"
)

// acc is an access, for brevity.
func acc(action, resource string) grants.Access {
	return grants.Access{Action: action, Resource: resource}
}

// TestAccessesRecorded makes calls through the real SDK and checks the
// IAM authorizations the proxy records for each, per caller: the action
// AWS checks (which is not always the operation: transactions, SQS
// batches, S3's names, GetCallerIdentity needing none) and the resource
// the request names.
func TestAccessesRecorded(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RetryMaxAttempts = 1 // one call, one record
	key, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	region, acct := o.Region, o.ManagementAccountID
	arn := func(service, res string) string { return "arn:aws:" + service + ":" + region + "::" + res }

	db := dynamodb.NewFromConfig(cfg)
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
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
	item := func(id string) map[string]ddbtypes.AttributeValue {
		return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: id}, "state": &ddbtypes.AttributeValueMemberS{Value: "ACTIVE"}}
	}
	q := sqs.NewFromConfig(cfg)
	made, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work")})
	if err != nil {
		t.Fatal(err)
	}
	queueURL := made.QueueUrl
	eb := eventbridge.NewFromConfig(cfg)
	if _, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String("bus-a")}); err != nil {
		t.Fatal(err)
	}
	s := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("art")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String("art"),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	put, err := s.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("art"), Key: aws.String("rel/app.zip"), Body: strings.NewReader("zip")})
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(cfg)
	secret, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("status-key"), SecretString: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	cfn := cloudformation.NewFromConfig(cfg)
	if _, err := cfn.CreateStackSet(ctx, &cloudformation.CreateStackSetInput{StackSetName: aws.String("tenants"),
		TemplateBody: aws.String(`{"Resources":{"T":{"Type":"AWS::SNS::Topic"}}}`)}); err != nil {
		t.Fatal(err)
	}
	role, err := iam.NewFromConfig(cfg).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("member"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	roleARN := aws.ToString(role.Role.Arn)

	cases := []struct {
		name string
		call func() error
		want []grants.Access
	}{
		{"a put by the table's name", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("reg"), Item: item("1")})
			return err
		}, []grants.Access{acc("dynamodb:PutItem", arn("dynamodb", "table/reg"))}},
		{"a query of an index", func() error {
			_, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("reg"), IndexName: aws.String("by-state"),
				KeyConditionExpression:    aws.String("#s = :s"),
				ExpressionAttributeNames:  map[string]string{"#s": "state"},
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":s": &ddbtypes.AttributeValueMemberS{Value: "ACTIVE"}}})
			return err
		}, []grants.Access{acc("dynamodb:Query", arn("dynamodb", "table/reg/index/by-state"))}},
		{"a transaction: its items' actions", func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
				{Put: &ddbtypes.Put{TableName: aws.String("reg"), Item: item("2")}},
				{Put: &ddbtypes.Put{TableName: aws.String("reg"), Item: item("3")}},
				{ConditionCheck: &ddbtypes.ConditionCheck{TableName: aws.String("reg"), Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "1"}},
					ConditionExpression: aws.String("attribute_exists(pk)")}},
			}})
			return err
		}, []grants.Access{acc("dynamodb:PutItem", arn("dynamodb", "table/reg")), acc("dynamodb:ConditionCheckItem", arn("dynamodb", "table/reg"))}},
		{"a batch write", func() error {
			_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{
				"reg": {{PutRequest: &ddbtypes.PutRequest{Item: item("4")}}}}})
			return err
		}, []grants.Access{acc("dynamodb:BatchWriteItem", arn("dynamodb", "table/reg"))}},
		{"a message: its queue by URL, in the URL's account", func() error {
			_, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("a")})
			return err
		}, []grants.Access{acc("sqs:SendMessage", "arn:aws:sqs:"+region+":"+acct+":work")}},
		{"a batch of messages: sqs:SendMessage", func() error {
			_, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: queueURL, Entries: []sqstypes.SendMessageBatchRequestEntry{
				{Id: aws.String("1"), MessageBody: aws.String("b")}}})
			return err
		}, []grants.Access{acc("sqs:SendMessage", "arn:aws:sqs:"+region+":"+acct+":work")}},
		{"a queue's URL by name", func() error {
			_, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("work")})
			return err
		}, []grants.Access{acc("sqs:GetQueueUrl", "arn:aws:sqs:"+region+"::work")}},
		{"events: each entry's bus", func() error {
			_, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
				{EventBusName: aws.String("bus-a"), Source: aws.String("t"), DetailType: aws.String("t"), Detail: aws.String("{}")},
				{Source: aws.String("t"), DetailType: aws.String("t"), Detail: aws.String("{}")},
				{EventBusName: aws.String("bus-a"), Source: aws.String("t"), DetailType: aws.String("t"), Detail: aws.String("{}")},
			}})
			return err
		}, []grants.Access{acc("events:PutEvents", arn("events", "event-bus/bus-a")), acc("events:PutEvents", arn("events", "event-bus/default"))}},
		{"an object's head: s3:GetObject", func() error {
			_, err := s.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("art"), Key: aws.String("rel/app.zip")})
			return err
		}, []grants.Access{acc("s3:GetObject", "arn:aws:s3:::art/rel/app.zip")}},
		{"a version of an object: s3:GetObjectVersion", func() error {
			_, err := s.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("art"), Key: aws.String("rel/app.zip"), VersionId: put.VersionId})
			return err
		}, []grants.Access{acc("s3:GetObjectVersion", "arn:aws:s3:::art/rel/app.zip")}},
		{"a listing: s3:ListBucket", func() error {
			_, err := s.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("art"), Prefix: aws.String("rel/")})
			return err
		}, []grants.Access{acc("s3:ListBucket", "arn:aws:s3:::art")}},
		{"a bucket's head: s3:ListBucket", func() error {
			_, err := s.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("art")})
			return err
		}, []grants.Access{acc("s3:ListBucket", "arn:aws:s3:::art")}},
		{"a copy: read its source, write its target", func() error {
			_, err := s.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("art"), Key: aws.String("rel/copy.zip"), CopySource: aws.String("art/rel/app.zip")})
			return err
		}, []grants.Access{acc("s3:PutObject", "arn:aws:s3:::art/rel/copy.zip"), acc("s3:GetObject", "arn:aws:s3:::art/rel/app.zip")}},
		{"bucket encryption: s3:PutEncryptionConfiguration", func() error {
			_, err := s.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String("art"), ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
				Rules: []s3types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256}}}}})
			return err
		}, []grants.Access{acc("s3:PutEncryptionConfiguration", "arn:aws:s3:::art")}},
		{"a secret by ARN", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: secret.ARN})
			return err
		}, []grants.Access{acc("secretsmanager:GetSecretValue", aws.ToString(secret.ARN))}},
		{"a stack set by name: any id", func() error {
			_, err := cfn.ListStackInstances(ctx, &cloudformation.ListStackInstancesInput{StackSetName: aws.String("tenants")})
			return err
		}, []grants.Access{acc("cloudformation:ListStackInstances", arn("cloudformation", "stackset/tenants:*"))}},
		{"organizations: no resource", func() error {
			_, err := organizations.NewFromConfig(cfg).ListRoots(ctx, &organizations.ListRootsInput{})
			return err
		}, []grants.Access{acc("organizations:ListRoots", "")}},
		{"who am I: no grant needed", func() error {
			_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}, nil},
		{"a role with session tags: sts:TagSession too", func() error {
			_, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s"),
				Tags: []ststypes.Tag{{Key: aws.String("tenant"), Value: aws.String("t1")}}})
			return err
		}, []grants.Access{acc("sts:AssumeRole", roleARN), acc("sts:TagSession", roleARN)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu.Proxy.Reset()
			if err := c.call(); err != nil {
				t.Fatal(err)
			}
			want := map[grants.Access]int64{}
			for _, a := range c.want {
				want[a]++
			}
			got := emu.Proxy.Stats().Accesses[key.AccessKeyID]
			if got == nil {
				got = map[grants.Access]int64{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("accesses (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAccessesOfRequests covers the requests silo's clients do not make
// today but the mapping names: S3's subresources, multipart uploads and
// deletions, SQS in the query protocol, Route 53's hosted zones, and
// CloudWatch's action prefix.
func TestAccessesOfRequests(t *testing.T) {
	signed := func(method, target, service string, body string, header map[string]string) *http.Request {
		r := httptest.NewRequest(method, target, bytes.NewBufferString(body))
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260105/eu-west-1/"+service+"/aws4_request, SignedHeaders=host, Signature=x")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		return r
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, c := range []struct {
		name string
		r    *http.Request
		want []grants.Access
	}{
		{"ListBuckets", signed("GET", "/", "s3", "", nil), []grants.Access{acc("s3:ListAllMyBuckets", "")}},
		{"GetBucketEncryption", signed("GET", "/b?encryption", "s3", "", nil), []grants.Access{acc("s3:GetEncryptionConfiguration", "arn:aws:s3:::b")}},
		{"DeletePublicAccessBlock", signed("DELETE", "/b?publicAccessBlock", "s3", "", nil), []grants.Access{acc("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::b")}},
		{"ListObjectVersions", signed("GET", "/b?versions&prefix=x", "s3", "", nil), []grants.Access{acc("s3:ListBucketVersions", "arn:aws:s3:::b")}},
		{"DeleteObjects", signed("POST", "/b?delete", "s3", "<Delete/>", nil), []grants.Access{acc("s3:DeleteObject", "arn:aws:s3:::b/*")}},
		{"CreateMultipartUpload", signed("POST", "/b/k?uploads", "s3", "", nil), []grants.Access{acc("s3:PutObject", "arn:aws:s3:::b/k")}},
		{"UploadPart", signed("PUT", "/b/k?partNumber=1&uploadId=u", "s3", "", nil), []grants.Access{acc("s3:PutObject", "arn:aws:s3:::b/k")}},
		{"AbortMultipartUpload", signed("DELETE", "/b/k?uploadId=u", "s3", "", nil), []grants.Access{acc("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")}},
		{"DeleteObject of a version", signed("DELETE", "/b/k?versionId=v", "s3", "", nil), []grants.Access{acc("s3:DeleteObjectVersion", "arn:aws:s3:::b/k")}},
		{"GetObjectTagging of a version", signed("GET", "/b/k?tagging&versionId=v", "s3", "", nil), []grants.Access{acc("s3:GetObjectVersionTagging", "arn:aws:s3:::b/k")}},
		{"DeleteMessageBatch, query protocol", signed("POST", "/", "sqs",
			url.Values{"Action": {"DeleteMessageBatch"}, "QueueUrl": {"https://sqs.eu-west-1.amazonaws.com/111122223333/jobs"}}.Encode(), form),
			[]grants.Access{acc("sqs:DeleteMessage", "arn:aws:sqs:eu-west-1:111122223333:jobs")}},
		{"ChangeResourceRecordSets", signed("POST", "/2013-04-01/hostedzone/Z123/rrset", "route53", "<x/>", nil),
			[]grants.Access{acc("route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z123")}},
		{"PutMetricData", signed("POST", "/", "monitoring", url.Values{"Action": {"PutMetricData"}, "Namespace": {"silo"}}.Encode(), form),
			[]grants.Access{acc("cloudwatch:PutMetricData", "")}},
		{"GetParameter by path name", signed("POST", "/", "ssm", `{"Name":"/cdk-bootstrap/v"}`, map[string]string{"X-Amz-Target": "AmazonSSM.GetParameter"}),
			[]grants.Access{acc("ssm:GetParameter", "arn:aws:ssm:eu-west-1::parameter/cdk-bootstrap/v")}},
		{"PutRule on a bus", signed("POST", "/", "events", `{"Name":"r","EventBusName":"silo-events"}`, map[string]string{"X-Amz-Target": "AWSEvents.PutRule"}),
			[]grants.Access{acc("events:PutRule", "arn:aws:events:eu-west-1::rule/silo-events/r")}},
		{"a REST call the proxy cannot name", signed("GET", "/2015-03-31/functions/f/configuration", "lambda", "", nil),
			[]grants.Access{acc("lambda:GET /2015-03-31/functions/f/configuration", "")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			call, err := identify(c.r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, accesses(call, c.r)); diff != "" {
				t.Errorf("accesses (-want +got):\n%s", diff)
			}
		})
	}
}
