package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
	app "github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

// probeKey is the item and object key the probes ask for.
const probeKey = "silo-isolation-probe"

// probeAll runs the cross-tenant probes of every target, each as its own
// application role against its ring partner. The roles are assumed first;
// then IAM enforcement (where it is optional) is on for the probes only.
func (a *Auditor) probeAll(ctx context.Context, targets []*registry.Tenant, subjects map[string]*subject, partner map[string]string) []Check {
	checks := make([]Check, len(targets))
	roles := make([]aws.Config, len(targets))
	ready := make([]bool, len(targets))
	a.eachIndex(ctx, len(targets), func(ctx context.Context, i int) {
		s := subjects[targets[i].ID]
		c := &checks[i]
		c.Name = CheckCrossTenant
		if s.err != nil {
			c.Status, c.Summary = StatusError, "could not find the tenant's resources: "+s.err.Error()
			return
		}
		if p := partner[s.t.ID]; p != "" && subjects[p].err != nil {
			c.Status, c.Summary = StatusError, "could not find the resources of "+p+", the tenant to probe: "+subjects[p].err.Error()
			return
		}
		cfg, err := a.assumeAppRole(ctx, s.res)
		if err != nil {
			c.Status, c.Summary = StatusError, "could not assume the application role: "+err.Error()
			c.Evidence = []Evidence{{Call: "sts:AssumeRole", Target: s.res.roleARN, Expected: "allowed", Outcome: outcome(err)}}
			return
		}
		roles[i], ready[i] = cfg, true
	})

	if a.d.Enforcer != nil {
		if err := a.d.Enforcer.EnforceIAM(ctx); err != nil {
			for i := range checks {
				if ready[i] {
					checks[i].Status, checks[i].Summary = StatusError, "could not switch IAM enforcement on: "+err.Error()
					ready[i] = false
				}
			}
			return checks
		}
		defer func() {
			// Always off again, also when ctx ended: enforcement is
			// emulator-wide.
			relax, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := a.d.Enforcer.RelaxIAM(relax); err != nil {
				a.d.Log.ErrorContext(ctx, "IAM enforcement left on", "error", err)
			}
		}()
	}
	a.eachIndex(ctx, len(targets), func(ctx context.Context, i int) {
		if !ready[i] {
			return
		}
		s := subjects[targets[i].ID]
		var other *resources
		if p := partner[s.t.ID]; p != "" {
			other = subjects[p].res
		}
		checks[i] = a.probe(ctx, roles[i], s.res, other, partner[s.t.ID])
	})
	return checks
}

// assumeAppRole returns a config acting as r's application role, assumed
// from the account's member role.
func (a *Auditor) assumeAppRole(ctx context.Context, r *resources) (aws.Config, error) {
	out, err := sts.NewFromConfig(r.cfg).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(r.roleARN), RoleSessionName: aws.String(SessionName), DurationSeconds: aws.Int32(900),
	})
	if err != nil {
		return aws.Config{}, err
	}
	c := out.Credentials
	cfg := r.cfg.Copy()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	return cfg, nil
}

// attempt is one probe call.
type attempt struct {
	call, target string
	do           func(context.Context) error
}

// probe runs one tenant's probes as its application role (cfg): the
// positive controls on its own resources, which must be allowed, and the
// attempts on the other tenant's resources, Organizations and the
// registry, which must all be denied.
func (a *Auditor) probe(ctx context.Context, cfg aws.Config, own, other *resources, otherID string) Check {
	c := Check{Name: CheckCrossTenant}
	ddb := dynamodb.NewFromConfig(cfg)
	sm := secretsmanager.NewFromConfig(cfg)
	km := kms.NewFromConfig(cfg)
	s3c := s3Client(cfg)
	item := func(table string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table),
				Key: map[string]ddbtypes.AttributeValue{app.TableKey: &ddbtypes.AttributeValueMemberS{Value: probeKey}}})
			return err
		}
	}
	controls := []attempt{
		{"dynamodb:GetItem", own.tableARN, item(own.tableARN)},
		{"secretsmanager:GetSecretValue", own.secretARN, func(ctx context.Context) error {
			_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(own.secretARN)})
			return err
		}},
	}
	var denied []attempt
	if other != nil {
		denied = append(denied,
			attempt{"dynamodb:GetItem", other.tableARN, item(other.tableARN)},
			attempt{"dynamodb:PutItem", other.tableARN, func(ctx context.Context) error {
				_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(other.tableARN),
					Item: map[string]ddbtypes.AttributeValue{app.TableKey: &ddbtypes.AttributeValueMemberS{Value: probeKey}}})
				return err
			}},
			attempt{"s3:GetObject", "arn:" + a.o.Partition + ":s3:::" + other.bucket + "/" + probeKey, func(ctx context.Context) error {
				out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(other.bucket), Key: aws.String(probeKey)})
				if err == nil {
					out.Body.Close()
				}
				return err
			}},
			attempt{"s3:PutObject", "arn:" + a.o.Partition + ":s3:::" + other.bucket + "/" + probeKey, func(ctx context.Context) error {
				_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(other.bucket), Key: aws.String(probeKey), Body: strings.NewReader("probe")})
				return err
			}},
			attempt{"secretsmanager:GetSecretValue", other.secretARN, func(ctx context.Context) error {
				_, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(other.secretARN)})
				return err
			}},
			attempt{"secretsmanager:PutSecretValue", other.secretARN, func(ctx context.Context) error {
				_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(other.secretARN), SecretString: aws.String("probe")})
				return err
			}},
			attempt{"kms:DescribeKey", other.keyARN, func(ctx context.Context) error {
				_, err := km.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(other.keyARN)})
				return err
			}},
			attempt{"kms:Encrypt", other.keyARN, func(ctx context.Context) error {
				_, err := km.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(other.keyARN), Plaintext: []byte("probe")})
				return err
			}},
		)
	}
	registryARN := fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", a.o.Partition, a.d.Management.Region, a.o.ManagementAccountID, a.o.RegistryTable)
	registryKey := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "AUDIT#probe"}, "sk": &ddbtypes.AttributeValueMemberS{Value: probeKey}}
	denied = append(denied,
		attempt{"organizations:ListAccounts", "organization", func(ctx context.Context) error {
			_, err := organizations.NewFromConfig(cfg).ListAccounts(ctx, &organizations.ListAccountsInput{})
			return err
		}},
		attempt{"dynamodb:GetItem", registryARN, func(ctx context.Context) error {
			_, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(registryARN), Key: registryKey})
			return err
		}},
		attempt{"dynamodb:PutItem", registryARN, func(ctx context.Context) error {
			_, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(registryARN), Item: registryKey})
			return err
		}},
	)

	var controlFailed, allowed, undecided []string
	for _, p := range controls {
		err := p.do(ctx)
		e := Evidence{Call: p.call, Target: p.target, Expected: "allowed", Outcome: "allowed", OK: err == nil}
		if err != nil {
			e.Outcome = outcome(err)
			controlFailed = append(controlFailed, p.call+" "+p.target+": "+e.Outcome)
		}
		c.Evidence = append(c.Evidence, e)
	}
	for _, p := range denied {
		err := p.do(ctx)
		e := Evidence{Call: p.call, Target: p.target, Expected: "denied"}
		switch {
		case err == nil:
			e.Outcome = "allowed"
			allowed = append(allowed, p.call+" "+p.target)
		case awsx.IsAccessDenied(err):
			e.Outcome, e.OK = awsx.ErrorCode(err), true
		case awsx.ErrorCode(err) != "":
			// Answered, but not refused: the call got past IAM.
			e.Outcome = awsx.ErrorCode(err)
			allowed = append(allowed, p.call+" "+p.target+" ("+e.Outcome+")")
		default:
			e.Outcome = err.Error()
			undecided = append(undecided, p.call+" "+p.target+": "+err.Error())
		}
		c.Evidence = append(c.Evidence, e)
	}
	switch {
	case len(controlFailed) > 0:
		// If the role cannot use its own resources, its refusals prove
		// nothing about isolation.
		c.Status, c.Summary = StatusError, "positive control refused, so the denials prove nothing: "+strings.Join(controlFailed, "; ")
	case len(allowed) > 0:
		c.Status, c.Summary = StatusFail, "not denied: "+strings.Join(allowed, "; ")
	case len(undecided) > 0:
		c.Status, c.Summary = StatusError, "could not decide: "+strings.Join(undecided, "; ")
	case other == nil:
		c.Status, c.Summary = StatusPass, fmt.Sprintf("no other ACTIVE tenant to probe; all %d attempts on Organizations and the registry denied, own resources allowed", len(denied))
	default:
		c.Status, c.Summary = StatusPass, fmt.Sprintf("all %d attempts on %s, Organizations and the registry denied; own resources allowed", len(denied), otherID)
	}
	return c
}
