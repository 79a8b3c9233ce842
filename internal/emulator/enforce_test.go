package emulator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
)

// scoped is what enforceFixture builds in one member account: a table, a
// secret, a key and a bucket, and a role whose policy names exactly them.
type scoped struct {
	account, table, tableARN, secretARN, keyARN, bucket string
	// role acts as the scoped role (assumed before enforcement).
	role aws.Config
	// admin acts as the account's OrganizationAccountAccessRole.
	admin aws.Config
}

func enforceFixture(t *testing.T, ctx context.Context, o *Org, name string) scoped {
	t.Helper()
	acct, err := o.NewAccount(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	mgmt, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := awsx.NewAccounts(mgmt, sts.NewFromConfig(mgmt), awsx.AccountsOptions{})
	admin := accounts.Config(acct)
	s := scoped{account: acct, table: name + "-data", bucket: name + "-bucket-" + acct, admin: admin}

	tbl, err := dynamodb.NewFromConfig(admin).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.tableARN = aws.ToString(tbl.TableDescription.TableArn)
	sec, err := secretsmanager.NewFromConfig(admin).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name + "/signing"), SecretString: aws.String("s3cret"),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.secretARN = aws.ToString(sec.ARN)
	key, err := kms.NewFromConfig(admin).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	s.keyARN = aws.ToString(key.KeyMetadata.Arn)
	if _, err := s3.NewFromConfig(admin, func(o *s3.Options) { o.UsePathStyle = true }).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		t.Fatal(err)
	}

	im := iam.NewFromConfig(admin)
	if _, err := im.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName:                 aws.String("app"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`),
	}); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem"],"Resource":[%q]},
{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":%q},
{"Effect":"Allow","Action":["kms:Encrypt","kms:DescribeKey"],"Resource":%q},
{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`,
		s.tableARN, s.secretARN, s.keyARN, s.bucket, s.bucket)
	if _, err := im.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("own"), PolicyDocument: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	assumed, err := sts.NewFromConfig(admin).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::" + acct + ":role/app"), RoleSessionName: aws.String("probe"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := assumed.Credentials
	s.role = mgmt.Copy()
	s.role.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	return s
}

// TestEnforceIAM checks, through the Go SDK, what the isolation audit's
// probes rely on under enforcement (patches 6-8 of py/sitecustomize.py): a
// role scoped to its own resources may use them, is refused another
// account's with a decodable AccessDenied code, and the management user and
// the member accounts' OrganizationAccountAccessRole keep working.
func TestEnforceIAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	a := enforceFixture(t, ctx, o, "tenant-a")
	b := enforceFixture(t, ctx, o, "tenant-b")
	if _, err := s3.NewFromConfig(a.admin, func(o *s3.Options) { o.UsePathStyle = true }).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(a.bucket), Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}

	if err := emu.EnforceIAM(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := emu.RelaxIAM(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	}()

	ddb := dynamodb.NewFromConfig(a.role)
	sm := secretsmanager.NewFromConfig(a.role)
	km := kms.NewFromConfig(a.role)
	bucket := s3.NewFromConfig(a.role, func(o *s3.Options) { o.UsePathStyle = true })
	item := map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "x"}}
	calls := []struct {
		name    string
		call    func() error
		allowed bool
	}{
		{"own table by name", func() error {
			_, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(a.table), Key: item})
			return err
		}, true},
		{"own table by arn", func() error {
			_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(a.tableARN), Item: item})
			return err
		}, true},
		{"own secret by arn", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(a.secretARN)})
			return err
		}, true},
		{"own secret by name", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("tenant-a/signing")})
			return err
		}, true},
		{"own key", func() error {
			_, err := km.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(a.keyARN), Plaintext: []byte("x")})
			return err
		}, true},
		{"own bucket", func() error {
			_, err := bucket.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.bucket), Key: aws.String("k")})
			return err
		}, true},
		{"other table by arn", func() error {
			_, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(b.tableARN), Key: item})
			return err
		}, false},
		{"other table write", func() error {
			_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.tableARN), Item: item})
			return err
		}, false},
		{"other secret", func() error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(b.secretARN)})
			return err
		}, false},
		{"other key", func() error {
			_, err := km.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(b.keyARN), Plaintext: []byte("x")})
			return err
		}, false},
		{"other bucket", func() error {
			_, err := bucket.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String("k")})
			return err
		}, false},
		{"organizations", func() error {
			_, err := organizations.NewFromConfig(a.role).ListAccounts(ctx, &organizations.ListAccountsInput{})
			return err
		}, false},
		{"member admin role", func() error {
			_, err := dynamodb.NewFromConfig(b.admin).GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(b.table), Key: item})
			return err
		}, true},
		{"management user", func() error {
			mgmt, err := o.Config(ctx, nil)
			if err != nil {
				return err
			}
			_, err = organizations.NewFromConfig(mgmt).ListAccounts(ctx, &organizations.ListAccountsInput{})
			return err
		}, true},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			switch {
			case c.allowed && err != nil:
				t.Errorf("refused (%s): %v", awsx.ErrorCode(err), err)
			case !c.allowed && err == nil:
				t.Error("allowed, want refused")
			case !c.allowed && !awsx.IsAccessDenied(err):
				t.Errorf("refused with code %q, want an access-denied code: %v", awsx.ErrorCode(err), err)
			}
		})
	}
}

// TestStackBucketBlocksPublicAccess checks patch 9: a bucket created by
// CloudFormation keeps its PublicAccessBlockConfiguration.
func TestStackBucketBlocksPublicAccess(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := emu.ResetT(t)
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const tmpl = `{"Resources":{"B":{"Type":"AWS::S3::Bucket","Properties":{"BucketName":"blocked-bucket",
"PublicAccessBlockConfiguration":{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}}}}}`
	if _, err := cloudformation.NewFromConfig(cfg).CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("pab"), TemplateBody: aws.String(tmpl)}); err != nil {
		t.Fatal(err)
	}
	out, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String("blocked-bucket")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.PublicAccessBlockConfiguration
	if !aws.ToBool(c.BlockPublicAcls) || !aws.ToBool(c.BlockPublicPolicy) || !aws.ToBool(c.IgnorePublicAcls) || !aws.ToBool(c.RestrictPublicBuckets) {
		t.Errorf("public access block = %+v, want all four on", *c)
	}
}

// TestEnforceIAMWindowsNest: enforcement stays on until the last of two
// overlapping windows ends (two audits at once must not relax each other's
// probes into passing).
func TestEnforceIAMWindowsNest(t *testing.T) {
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
		{"first window", emu.EnforceIAM, true},
		{"second window", emu.EnforceIAM, true},
		{"first relaxed", emu.RelaxIAM, true},
		{"second relaxed", emu.RelaxIAM, false},
		{"relaxed again", emu.RelaxIAM, false},
	}
	for _, s := range steps {
		if err := s.do(ctx); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := enforced(); got != s.want {
			t.Errorf("after %s: enforced %v, want %v", s.name, got, s.want)
		}
	}
}
