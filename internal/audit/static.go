package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/registry"
)

// resources are what a tenant's stack made, found by DescribeStackResources
// in the tenant's account, with the config that acts there.
type resources struct {
	cfg             aws.Config
	account, region string
	stack           string
	table, tableARN string
	bucket          string
	keyID, keyARN   string
	secretARN       string
	function        string
	role, roleARN   string
	logGroup        string
}

// discover finds t's stack resources.
func (a *Auditor) discover(ctx context.Context, t *registry.Tenant) (*resources, error) {
	region := a.region(t)
	cfg := a.d.Accounts.Config(t.AccountID)
	cfg.Region = region
	r := &resources{cfg: cfg, account: t.AccountID, region: region}
	stack, err := a.d.Stacks.InstanceStack(ctx, t.AccountID, region)
	if err != nil {
		return nil, fmt.Errorf("find the stack of %s: %w", t.ID, err)
	}
	r.stack = stack
	out, err := cloudformation.NewFromConfig(cfg).DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(stack)})
	if err != nil {
		return nil, fmt.Errorf("list the resources of stack %s of %s: %w", stack, t.ID, err)
	}
	p := a.o.Partition
	for _, res := range out.StackResources {
		id := aws.ToString(res.PhysicalResourceId)
		switch aws.ToString(res.ResourceType) {
		case "AWS::DynamoDB::Table":
			r.table = id
			r.tableARN = fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", p, region, t.AccountID, id)
		case "AWS::S3::Bucket":
			r.bucket = id
		case "AWS::KMS::Key":
			r.keyID = id
			r.keyARN = id
			if !strings.HasPrefix(id, "arn:") {
				r.keyARN = fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", p, region, t.AccountID, id)
			}
		case "AWS::SecretsManager::Secret":
			r.secretARN = id
		case "AWS::Lambda::Function":
			r.function = id
		case "AWS::IAM::Role":
			r.role = id
			if strings.HasPrefix(id, "arn:") {
				r.role = id[strings.LastIndex(id, "/")+1:]
			}
			r.roleARN = fmt.Sprintf("arn:%s:iam::%s:role/%s", p, t.AccountID, r.role)
		case "AWS::Logs::LogGroup":
			r.logGroup = id
		}
	}
	var missing []string
	for name, v := range map[string]string{"table": r.table, "bucket": r.bucket, "key": r.keyID, "secret": r.secretARN, "function": r.function, "role": r.role} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("stack %s of %s has no %s", stack, t.ID, strings.Join(missing, ", "))
	}
	return r, nil
}

// static runs the static checks on one tenant.
func (a *Auditor) static(ctx context.Context, s *subject, scps map[string]scp, scpErr error) []Check {
	ouPath := guardrails.OUProduction
	if s.t.Kind == registry.KindPreview {
		ouPath = guardrails.OUPreview
	}
	checks := []Check{a.checkOU(ctx, s.t, ouPath), a.checkGuardrails(ctx, s.t, ouPath, scps, scpErr)}
	names := []string{CheckResourcePolicies, CheckKMSKeyPolicy, CheckS3PublicAccess, CheckAppRoleScope}
	if s.err != nil {
		for _, n := range names {
			checks = append(checks, Check{Name: n, Status: StatusError, Summary: "could not find the tenant's resources: " + s.err.Error()})
		}
		return checks
	}
	sc := scope{account: s.t.AccountID, organizationID: a.o.OrganizationID}
	return append(checks,
		a.checkResourcePolicies(ctx, s.res, sc),
		a.checkKeyPolicy(ctx, s.res, sc),
		a.checkPublicAccess(ctx, s.res),
		a.checkAppRole(ctx, s.res),
	)
}

// checkOU: the account sits in its expected OU.
func (a *Auditor) checkOU(ctx context.Context, t *registry.Tenant, path string) Check {
	c := Check{Name: CheckOU}
	want := a.o.OUs[path]
	parent, err := a.parent(ctx, t.AccountID)
	if err != nil {
		c.Status, c.Summary = StatusError, "could not read the account's parent: "+err.Error()
		return c
	}
	ok := parent == want
	c.Evidence = []Evidence{{Call: "organizations:ListParents", Target: t.AccountID, Expected: want + " (" + path + ")", Outcome: parent, OK: ok}}
	if ok {
		c.Status, c.Summary = StatusPass, "the account is in "+path
	} else {
		c.Status, c.Summary = StatusFail, fmt.Sprintf("the account is in %s, not in %s (%s)", parent, path, want)
	}
	return c
}

func (a *Auditor) parent(ctx context.Context, child string) (string, error) {
	out, err := a.org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(child)})
	if err != nil {
		return "", err
	}
	if len(out.Parents) == 0 {
		return "", fmt.Errorf("%s has no parent", child)
	}
	return aws.ToString(out.Parents[0].Id), nil
}

// scp is a guardrail as Organizations holds it.
type scp struct {
	id      string
	content string
}

// guardrailPolicies reads silo's SCPs from Organizations by name, once per
// run.
func (a *Auditor) guardrailPolicies(ctx context.Context) (map[string]scp, error) {
	out := map[string]scp{}
	if len(a.o.Guardrails) == 0 {
		return out, nil
	}
	p := organizations.NewListPoliciesPaginator(a.org, &organizations.ListPoliciesInput{Filter: orgtypes.PolicyTypeServiceControlPolicy})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list SCPs: %w", err)
		}
		for _, s := range page.Policies {
			name := aws.ToString(s.Name)
			if !slices.ContainsFunc(a.o.Guardrails, func(g guardrails.Policy) bool { return g.Name == name }) {
				continue
			}
			d, err := a.org.DescribePolicy(ctx, &organizations.DescribePolicyInput{PolicyId: s.Id})
			if err != nil {
				return nil, fmt.Errorf("describe SCP %s: %w", name, err)
			}
			out[name] = scp{id: aws.ToString(s.Id), content: aws.ToString(d.Policy.Content)}
		}
	}
	return out, nil
}

// checkGuardrails: every guardrail meant for the tenant's OU is attached
// to the account or an OU above it, with the content silo wrote.
func (a *Auditor) checkGuardrails(ctx context.Context, t *registry.Tenant, path string, scps map[string]scp, scpErr error) Check {
	c := Check{Name: CheckGuardrails}
	if scpErr != nil {
		c.Status, c.Summary = StatusError, "could not read the SCPs: "+scpErr.Error()
		return c
	}
	// The account and everything above it, up to the root.
	attached := map[string]string{} // policy id -> where
	target := t.AccountID
	for range 8 {
		p := organizations.NewListPoliciesForTargetPaginator(a.org, &organizations.ListPoliciesForTargetInput{
			TargetId: aws.String(target), Filter: orgtypes.PolicyTypeServiceControlPolicy,
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				c.Status, c.Summary = StatusError, "could not list the SCPs of "+target+": "+err.Error()
				return c
			}
			for _, s := range page.Policies {
				if _, ok := attached[aws.ToString(s.Id)]; !ok {
					attached[aws.ToString(s.Id)] = target
				}
			}
		}
		if strings.HasPrefix(target, "r-") {
			break
		}
		parent, err := a.parent(ctx, target)
		if err != nil {
			c.Status, c.Summary = StatusError, "could not read the parent of "+target+": "+err.Error()
			return c
		}
		target = parent
	}
	var bad []string
	for _, g := range a.o.Guardrails {
		if !slices.Contains(g.Targets, path) {
			continue
		}
		e := Evidence{Call: "organizations:ListPoliciesForTarget", Target: g.Name, Expected: "attached to " + t.AccountID + " or an OU above it, content as written"}
		have, found := scps[g.Name]
		want, err := g.JSON()
		switch {
		case err != nil:
			e.Outcome = err.Error()
		case !found:
			e.Outcome = "no such policy"
		case !sameJSON(have.content, want):
			e.Outcome = "content differs from what silo wrote"
		case attached[have.id] == "":
			e.Outcome = "not attached"
		default:
			e.Outcome, e.OK = "attached to "+attached[have.id], true
		}
		if !e.OK {
			bad = append(bad, g.Name+": "+e.Outcome)
		}
		c.Evidence = append(c.Evidence, e)
	}
	if len(bad) > 0 {
		c.Status, c.Summary = StatusFail, strings.Join(bad, "; ")
	} else {
		c.Status, c.Summary = StatusPass, fmt.Sprintf("all %d guardrails are attached as written", len(c.Evidence))
	}
	return c
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// policyEvidence checks one resource policy (raw may be empty: none).
func policyEvidence(call, target, raw string, sc scope) (Evidence, []string) {
	e := Evidence{Call: call, Target: target, Expected: "no grant outside account " + sc.account}
	if raw == "" {
		e.Outcome, e.OK = "no policy", true
		return e, nil
	}
	d, err := parseDocument(raw)
	if err != nil {
		e.Outcome = err.Error()
		return e, []string{target + ": " + err.Error()}
	}
	grants := sc.foreignGrants(d)
	if len(grants) == 0 {
		e.Outcome, e.OK = fmt.Sprintf("%d statements, none grants outside the account", len(d.Statement)), true
		return e, nil
	}
	e.Outcome = strings.Join(grants, "; ")
	out := make([]string, len(grants))
	for i, g := range grants {
		out[i] = target + ": " + g
	}
	return e, out
}

// checkResourcePolicies: the bucket policy, the secret's resource policy,
// the function's policy and the application role's trust policy grant
// nothing outside the account.
func (a *Auditor) checkResourcePolicies(ctx context.Context, r *resources, sc scope) Check {
	c := Check{Name: CheckResourcePolicies}
	var bad, errs []string
	add := func(call, target, raw string, err error) {
		if err != nil && !awsx.IsNotFound(err) {
			c.Evidence = append(c.Evidence, Evidence{Call: call, Target: target, Expected: "readable", Outcome: outcome(err)})
			errs = append(errs, target+": "+outcome(err))
			return
		}
		e, b := policyEvidence(call, target, raw, sc)
		c.Evidence = append(c.Evidence, e)
		bad = append(bad, b...)
	}
	bp, err := s3Client(r.cfg).GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(r.bucket)})
	raw := ""
	if err == nil {
		raw = aws.ToString(bp.Policy)
	}
	add("s3:GetBucketPolicy", "arn:"+a.o.Partition+":s3:::"+r.bucket, raw, err)

	sp, err := secretsmanager.NewFromConfig(r.cfg).GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: aws.String(r.secretARN)})
	raw = ""
	if err == nil {
		raw = aws.ToString(sp.ResourcePolicy)
	}
	add("secretsmanager:GetResourcePolicy", r.secretARN, raw, err)

	fp, err := lambda.NewFromConfig(r.cfg).GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(r.function)})
	raw = ""
	if err == nil {
		raw = aws.ToString(fp.Policy)
	}
	add("lambda:GetPolicy", r.function, raw, err)

	role, err := iam.NewFromConfig(r.cfg).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r.role)})
	raw = ""
	if err == nil {
		raw = aws.ToString(role.Role.AssumeRolePolicyDocument)
	}
	add("iam:GetRole (trust policy)", r.roleARN, raw, err)

	switch {
	case len(bad) > 0:
		c.Status, c.Summary = StatusFail, strings.Join(bad, "; ")
	case len(errs) > 0:
		c.Status, c.Summary = StatusError, "could not read: "+strings.Join(errs, "; ")
	default:
		c.Status, c.Summary = StatusPass, "no resource policy grants a principal outside the account"
	}
	return c
}

// checkKeyPolicy: the key policy grants only principals of the account
// (and AWS services acting for it).
func (a *Auditor) checkKeyPolicy(ctx context.Context, r *resources, sc scope) Check {
	c := Check{Name: CheckKMSKeyPolicy}
	out, err := kms.NewFromConfig(r.cfg).GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(r.keyARN), PolicyName: aws.String("default")})
	if err != nil {
		c.Status, c.Summary = StatusError, "could not read the key policy: "+outcome(err)
		return c
	}
	raw := aws.ToString(out.Policy)
	if raw == "" {
		c.Status, c.Summary = StatusFail, "the key has no key policy"
		return c
	}
	e, bad := policyEvidence("kms:GetKeyPolicy", r.keyARN, raw, sc)
	c.Evidence = []Evidence{e}
	if len(bad) > 0 {
		c.Status, c.Summary = StatusFail, strings.Join(bad, "; ")
	} else {
		c.Status, c.Summary = StatusPass, "the key policy is scoped to the account"
	}
	return c
}

// checkPublicAccess: all four S3 public access block settings are on.
func (a *Auditor) checkPublicAccess(ctx context.Context, r *resources) Check {
	c := Check{Name: CheckS3PublicAccess}
	target := "arn:" + a.o.Partition + ":s3:::" + r.bucket
	out, err := s3Client(r.cfg).GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(r.bucket)})
	if awsx.IsNotFound(err) {
		c.Evidence = []Evidence{{Call: "s3:GetPublicAccessBlock", Target: target, Expected: "all four settings on", Outcome: outcome(err)}}
		c.Status, c.Summary = StatusFail, "the bucket has no public access block"
		return c
	}
	if err != nil {
		c.Status, c.Summary = StatusError, "could not read the public access block: "+outcome(err)
		return c
	}
	cfg := out.PublicAccessBlockConfiguration
	settings := []struct {
		name string
		on   *bool
	}{
		{"BlockPublicAcls", cfg.BlockPublicAcls}, {"IgnorePublicAcls", cfg.IgnorePublicAcls},
		{"BlockPublicPolicy", cfg.BlockPublicPolicy}, {"RestrictPublicBuckets", cfg.RestrictPublicBuckets},
	}
	var off []string
	for _, s := range settings {
		ok := aws.ToBool(s.on)
		c.Evidence = append(c.Evidence, Evidence{Call: "s3:GetPublicAccessBlock", Target: target + " " + s.name, Expected: "true", Outcome: fmt.Sprint(ok), OK: ok})
		if !ok {
			off = append(off, s.name)
		}
	}
	if len(off) > 0 {
		c.Status, c.Summary = StatusFail, "public access block settings off: "+strings.Join(off, ", ")
	} else {
		c.Status, c.Summary = StatusPass, "all four public access block settings are on"
	}
	return c
}

// checkAppRole: every Allow statement of the application role names only
// the tenant's own table, bucket, key, secret and log group.
func (a *Auditor) checkAppRole(ctx context.Context, r *resources) Check {
	c := Check{Name: CheckAppRoleScope}
	im := iam.NewFromConfig(r.cfg)
	type named struct{ name, doc string }
	var docs []named
	fail := func(err error) Check {
		c.Status, c.Summary = StatusError, "could not read the role's policies: "+outcome(err)
		return c
	}
	inline := iam.NewListRolePoliciesPaginator(im, &iam.ListRolePoliciesInput{RoleName: aws.String(r.role)})
	for inline.HasMorePages() {
		page, err := inline.NextPage(ctx)
		if err != nil {
			return fail(err)
		}
		for _, n := range page.PolicyNames {
			p, err := im.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(r.role), PolicyName: aws.String(n)})
			if err != nil {
				return fail(err)
			}
			docs = append(docs, named{"inline " + n, aws.ToString(p.PolicyDocument)})
		}
	}
	attached := iam.NewListAttachedRolePoliciesPaginator(im, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(r.role)})
	for attached.HasMorePages() {
		page, err := attached.NextPage(ctx)
		if err != nil {
			return fail(err)
		}
		for _, ap := range page.AttachedPolicies {
			p, err := im.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: ap.PolicyArn})
			if err != nil {
				return fail(err)
			}
			v, err := im.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: ap.PolicyArn, VersionId: p.Policy.DefaultVersionId})
			if err != nil {
				return fail(err)
			}
			docs = append(docs, named{"attached " + aws.ToString(ap.PolicyArn), aws.ToString(v.PolicyVersion.Document)})
		}
	}
	own := a.ownResources(r)
	var bad []string
	statements := 0
	for _, d := range docs {
		doc, err := parseDocument(d.doc)
		if err != nil {
			bad = append(bad, d.name+": "+err.Error())
			continue
		}
		for i, st := range doc.Statement {
			if !strings.EqualFold(st.Effect, "Allow") {
				continue
			}
			statements++
			target := fmt.Sprintf("%s statement %d", d.name, i)
			if st.Sid != "" {
				target = d.name + " " + st.Sid
			}
			var problems []string
			if len(st.NotAction) > 0 {
				problems = append(problems, "NotAction")
			}
			if len(st.NotResource) > 0 {
				problems = append(problems, "NotResource")
			}
			for _, res := range st.Resource {
				if !own(res) {
					problems = append(problems, "resource "+res)
				}
			}
			e := Evidence{Call: "iam policy statement", Target: target, Expected: "only the tenant's own table, bucket, key, secret and log group",
				Outcome: strings.Join(st.Action, ", ") + " on " + strings.Join(st.Resource, ", "), OK: len(problems) == 0}
			if !e.OK {
				e.Outcome = strings.Join(problems, "; ")
				bad = append(bad, target+": "+e.Outcome)
			}
			c.Evidence = append(c.Evidence, e)
		}
	}
	switch {
	case len(bad) > 0:
		c.Status, c.Summary = StatusFail, strings.Join(bad, "; ")
	case statements == 0:
		c.Status, c.Summary = StatusError, "the role has no Allow statement to check (its policies were not found)"
	default:
		c.Status, c.Summary = StatusPass, fmt.Sprintf("all %d Allow statements name only the tenant's own resources", statements)
	}
	return c
}

// ownResources returns whether a policy resource is one of r's own.
func (a *Auditor) ownResources(r *resources) func(string) bool {
	p := a.o.Partition
	bucketARN := "arn:" + p + ":s3:::" + r.bucket
	exact := map[string]bool{
		r.tableARN: true, bucketARN: true, bucketARN + "/*": true, r.keyARN: true, r.secretARN: true,
	}
	logGroup := fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s", p, r.region, r.account, r.logGroup)
	return func(res string) bool {
		if exact[res] {
			return true
		}
		return r.logGroup != "" && (res == logGroup || res == logGroup+":*")
	}
}

func s3Client(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = awsx.Emulated(cfg) })
}
