package tenantapp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/cfnlint"
	app "github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/stacksets"
)

type resource struct {
	Type           string
	Properties     map[string]any
	DeletionPolicy string
	Metadata       map[string]any
}

type cfnTemplate struct {
	Parameters map[string]map[string]any
	Mappings   map[string]map[string]map[string]any
	Resources  map[string]resource
	Outputs    map[string]any
	Rules      map[string]any
	Conditions map[string]any
	Metadata   map[string]any
}

func parse(t *testing.T) cfnTemplate {
	t.Helper()
	var tpl cfnTemplate
	if err := json.Unmarshal(template, &tpl); err != nil {
		t.Fatalf("parse template: %v", err)
	}
	return tpl
}

// only returns the one resource of type typ and its logical id.
func only(t *testing.T, tpl cfnTemplate, typ string) (string, resource) {
	t.Helper()
	var ids []string
	for id, r := range tpl.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("%d resources of type %s, want 1: %v", len(ids), typ, ids)
	}
	return ids[0], tpl.Resources[ids[0]]
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestCommittedTemplateIsFresh(t *testing.T) {
	path := filepath.Join("..", "..", filepath.FromSlash(stacksets.TenantTemplateFile))
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (run `make synth`)", path, err)
	}
	canon, err := Canonical(committed)
	if err != nil {
		t.Fatalf("%s: %v (run `make synth`)", path, err)
	}
	if !bytes.Equal(canon, template) {
		t.Errorf("%s is stale: run `make synth` and commit it; diff (-committed +fresh):\n%s",
			stacksets.TenantTemplateFile, cmp.Diff(string(canon), string(template)))
	}
	if !bytes.Equal(stacksets.TenantTemplate(), committed) {
		t.Errorf("stacksets.TenantTemplate() differs from %s", path)
	}
}

func TestSelfContained(t *testing.T) {
	tpl := parse(t)
	if _, ok := tpl.Parameters["BootstrapVersion"]; ok {
		t.Error("BootstrapVersion parameter present")
	}
	if len(tpl.Rules) != 0 {
		t.Errorf("rules present: %v", tpl.Rules)
	}
	if len(tpl.Metadata) != 0 || len(tpl.Conditions) != 0 {
		t.Errorf("template metadata or conditions present: %v %v", tpl.Metadata, tpl.Conditions)
	}
	for id, r := range tpl.Resources {
		if r.Type == "AWS::CDK::Metadata" {
			t.Errorf("%s: CDK metadata resource", id)
		}
		if len(r.Metadata) != 0 {
			t.Errorf("%s: metadata %v", id, r.Metadata)
		}
	}
	for name := range tpl.Parameters {
		if strings.Contains(name, "AssetParameters") || strings.HasPrefix(name, "Asset") {
			t.Errorf("asset parameter %s", name)
		}
	}
	s := string(template)
	for _, bad := range []string{"cdk-hnb659fds", "cdk-assets", "aws:cdk:path", "aws:asset:"} {
		if strings.Contains(s, bad) {
			t.Errorf("template mentions %q", bad)
		}
	}
}

func TestParameters(t *testing.T) {
	tpl := parse(t)
	var names []string
	for n := range tpl.Parameters {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"AppVersion", "CodeBucket", "CodeKey", "JwtAudience", "JwtIssuer", "TenantId", "Tier"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("parameters (-want +got):\n%s", diff)
	}
	if got := jsonOf(tpl.Parameters["Tier"]["AllowedValues"]); got != `["basic","standard","enterprise"]` {
		t.Errorf("Tier allowed values = %s", got)
	}
	tests := []struct {
		tier        string
		rate, burst float64
	}{
		{"basic", 10, 20}, {"standard", 50, 100}, {"enterprise", 200, 400},
	}
	for _, tc := range tests {
		t.Run(tc.tier, func(t *testing.T) {
			row := tpl.Mappings["TierThrottle"][tc.tier]
			if row["Rate"] != tc.rate || row["Burst"] != tc.burst {
				t.Errorf("throttle %v, want rate %v burst %v", row, tc.rate, tc.burst)
			}
		})
	}
	_, stage := only(t, tpl, "AWS::ApiGateway::Stage")
	if s := jsonOf(stage.Properties["MethodSettings"]); !strings.Contains(s, `"ThrottlingRateLimit":{"Fn::FindInMap":["TierThrottle",{"Ref":"Tier"},"Rate"]}`) ||
		!strings.Contains(s, `"ThrottlingBurstLimit":{"Fn::FindInMap":["TierThrottle",{"Ref":"Tier"},"Burst"]}`) {
		t.Errorf("stage throttling not driven by Tier: %s", s)
	}
	if _, ok := tpl.Outputs[OutputAPIURL]; !ok {
		t.Errorf("output %s missing", OutputAPIURL)
	}
}

func TestDataStoresUseTenantKey(t *testing.T) {
	tpl := parse(t)
	keyID, key := only(t, tpl, "AWS::KMS::Key")
	if key.Properties["EnableKeyRotation"] != true {
		t.Error("key rotation off")
	}
	keyArn := jsonOf(map[string]any{"Fn::GetAtt": []string{keyID, "Arn"}})
	keyRef := jsonOf(map[string]any{"Ref": keyID})
	tests := []struct {
		typ  string
		path func(p map[string]any) any
	}{
		{"AWS::DynamoDB::Table", func(p map[string]any) any { return dig(p, "SSESpecification", "KMSMasterKeyId") }},
		{"AWS::S3::Bucket", func(p map[string]any) any {
			return dig(p, "BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "KMSMasterKeyID")
		}},
		{"AWS::SecretsManager::Secret", func(p map[string]any) any { return dig(p, "KmsKeyId") }},
		{"AWS::Logs::LogGroup", func(p map[string]any) any { return dig(p, "KmsKeyId") }},
		{"AWS::Lambda::Function", func(p map[string]any) any { return dig(p, "KmsKeyArn") }},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			_, r := only(t, tpl, tc.typ)
			got := jsonOf(tc.path(r.Properties))
			if got != keyArn && got != keyRef {
				t.Errorf("encrypted with %s, want the tenant key %s", got, keyID)
			}
		})
	}
	_, table := only(t, tpl, "AWS::DynamoDB::Table")
	if dig(table.Properties, "SSESpecification", "SSEEnabled") != true {
		t.Error("table SSE not enabled")
	}
	if dig(table.Properties, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true {
		t.Error("table PITR off")
	}
	if table.Properties["BillingMode"] != "PAY_PER_REQUEST" {
		t.Errorf("table billing %v", table.Properties["BillingMode"])
	}
	// The table must have exactly the key schema the app reads and writes.
	if got, want := jsonOf(table.Properties["KeySchema"]), `[{"AttributeName":"`+app.TableKey+`","KeyType":"HASH"}]`; got != want {
		t.Errorf("table keys %s", got)
	}
}

func TestBucketLockedDown(t *testing.T) {
	tpl := parse(t)
	_, b := only(t, tpl, "AWS::S3::Bucket")
	pab, _ := b.Properties["PublicAccessBlockConfiguration"].(map[string]any)
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if pab[k] != true {
			t.Errorf("%s not true", k)
		}
	}
	if dig(b.Properties, "VersioningConfiguration", "Status") != "Enabled" {
		t.Error("versioning off")
	}
	_, pol := only(t, tpl, "AWS::S3::BucketPolicy")
	if s := jsonOf(pol.Properties); !strings.Contains(s, `"aws:SecureTransport":"false"`) || !strings.Contains(s, `"Effect":"Deny"`) {
		t.Errorf("bucket policy does not deny plain HTTP: %s", s)
	}
}

func TestRemovalPolicies(t *testing.T) {
	tpl := parse(t)
	tests := map[string]string{
		"AWS::KMS::Key": "Retain", "AWS::DynamoDB::Table": "Retain", "AWS::S3::Bucket": "Retain",
		"AWS::SecretsManager::Secret": "Retain", "AWS::Logs::LogGroup": "Delete",
	}
	for typ, want := range tests {
		t.Run(typ, func(t *testing.T) {
			_, r := only(t, tpl, typ)
			if r.DeletionPolicy != want {
				t.Errorf("DeletionPolicy %q, want %q", r.DeletionPolicy, want)
			}
		})
	}
}

func TestFunction(t *testing.T) {
	tpl := parse(t)
	_, fn := only(t, tpl, "AWS::Lambda::Function")
	p := fn.Properties
	if got := jsonOf(p["FunctionName"]); got != `{"Fn::Sub":"silo-${TenantId}-app"}` {
		t.Errorf("FunctionName = %s, want derived from TenantId", got)
	}
	for k, want := range map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": []any{"arm64"}} {
		if diff := cmp.Diff(want, p[k]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	if got := jsonOf(p["Code"]); got != `{"S3Bucket":{"Ref":"CodeBucket"},"S3Key":{"Ref":"CodeKey"}}` {
		t.Errorf("Code = %s", got)
	}
	vars, _ := dig(p, "Environment", "Variables").(map[string]any)
	var names []string
	for k := range vars {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{"APP_VERSION", "BUCKET_NAME", "JWT_AUDIENCE", "JWT_ISSUER", "KMS_KEY_ID", "SECRET_ARN", "TABLE_NAME", "TENANT_ID"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
	if len(dig(fn.Properties, "Role").(map[string]any)) == 0 {
		t.Error("no role")
	}
}

// TestLeastPrivilege: the function's policies name resources, never "*",
// and no policy anywhere allows a "*" principal. The bucket's TLS-only
// statement is a Deny on "*", which is what it must be.
func TestLeastPrivilege(t *testing.T) {
	tpl := parse(t)
	for id, r := range tpl.Resources {
		switch r.Type {
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			for _, st := range statements(r.Properties["PolicyDocument"]) {
				if res := jsonOf(st["Resource"]); strings.Contains(res, `"*"`) {
					t.Errorf("%s: statement %s has a * resource", id, jsonOf(st))
				}
				if strings.Contains(jsonOf(st["Action"]), `"*"`) {
					t.Errorf("%s: statement allows every action", id)
				}
			}
		case "AWS::IAM::Role":
			if mp := r.Properties["ManagedPolicyArns"]; mp != nil {
				t.Errorf("%s: managed policies %v (they grant on *)", id, mp)
			}
		}
	}
	walk(tpl.Resources, func(st map[string]any) {
		if st["Effect"] != "Allow" {
			return
		}
		if p := jsonOf(st["Principal"]); p == `"*"` || strings.Contains(p, `"AWS":"*"`) {
			t.Errorf("statement allows any principal: %s", jsonOf(st))
		}
	})
}

func TestNoHardCodedAccountOrRegion(t *testing.T) {
	digits := regexp.MustCompile(`\b\d{12}\b`)
	strs := map[string]bool{}
	collect(parse(t).Resources, strs)
	for s := range strs {
		if digits.MatchString(s) {
			t.Errorf("hard-coded account id in %q", s)
		}
		for _, r := range awsx.Regions() {
			if strings.Contains(s, r) {
				t.Errorf("hard-coded region %s in %q", r, s)
			}
		}
	}
}

func TestEverythingTagged(t *testing.T) {
	tpl := parse(t)
	taggable := []string{"AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret",
		"AWS::Logs::LogGroup", "AWS::IAM::Role", "AWS::Lambda::Function", "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Stage"}
	for _, typ := range taggable {
		t.Run(typ, func(t *testing.T) {
			_, r := only(t, tpl, typ)
			tags := jsonOf(r.Properties["Tags"])
			for _, want := range []string{`{"Key":"silo:tenant","Value":{"Ref":"TenantId"}}`, `{"Key":"silo:version","Value":{"Ref":"AppVersion"}}`} {
				if !strings.Contains(tags, want) {
					t.Errorf("tags %s lack %s", tags, want)
				}
			}
		})
	}
}

func TestCfnLint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenantapp.template.json")
	if err := os.WriteFile(path, template, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cfnlint.Lint(ctx, path); err != nil {
		t.Fatal(err)
	}
}

// dig follows map keys and slice indexes; nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func statements(doc any) []map[string]any {
	var out []map[string]any
	list, _ := dig(doc, "Statement").([]any)
	for _, s := range list {
		if m, ok := s.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// walk calls f on every policy statement anywhere in v.
func walk(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]resource:
		for _, r := range x {
			walk(r.Properties, f)
		}
	case map[string]any:
		if st, ok := x["Statement"].([]any); ok {
			for _, s := range st {
				if m, ok := s.(map[string]any); ok {
					f(m)
				}
			}
		}
		for _, c := range x {
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

// collect gathers every string in v, map keys included.
func collect(v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]resource:
		for k, r := range x {
			out[k] = true
			out[r.Type] = true
			collect(r.Properties, out)
		}
	case map[string]any:
		for k, c := range x {
			out[k] = true
			collect(c, out)
		}
	case []any:
		for _, c := range x {
			collect(c, out)
		}
	case string:
		out[x] = true
	}
}

// TestStageThrottleEveryMethodByTier: the stage's one method setting covers
// every resource and method, with the TierThrottle row the Tier parameter
// picks; every allowed tier has a row (the local app host reads the same
// mapping and throttles an unknown tier not at all), and no row is extra.
func TestStageThrottleEveryMethodByTier(t *testing.T) {
	tpl := parse(t)
	var rows []string
	for tier := range tpl.Mappings["TierThrottle"] {
		rows = append(rows, tier)
	}
	slices.Sort(rows)
	want := slices.Clone(Tiers)
	slices.Sort(want)
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("TierThrottle rows (-tiers +rows):\n%s", diff)
	}
	for tier, th := range TierThrottles {
		if row := tpl.Mappings["TierThrottle"][tier]; row["Rate"] != float64(th.Rate) || row["Burst"] != float64(th.Burst) || th.Burst < th.Rate {
			t.Errorf("tier %s: row %v, TierThrottles %+v", tier, row, th)
		}
	}
	_, stage := only(t, tpl, "AWS::ApiGateway::Stage")
	settings, ok := stage.Properties["MethodSettings"].([]any)
	if !ok || len(settings) != 1 {
		t.Fatalf("stage method settings %s, want one", jsonOf(stage.Properties["MethodSettings"]))
	}
	s := settings[0].(map[string]any)
	if s["HttpMethod"] != "*" || s["ResourcePath"] != "/*" {
		t.Errorf("method setting covers %v %v, want every method of every resource", s["HttpMethod"], s["ResourcePath"])
	}
}

// TestAuditCanAssumeFunctionRole pins the function role's trust statement
// for the isolation audit: only the account's own member role, only under
// the audit's session name.
func TestAuditCanAssumeFunctionRole(t *testing.T) {
	if AuditSessionName != audit.SessionName || MemberRole != awsx.MemberRole {
		t.Fatalf("AuditSessionName %q, MemberRole %q; want %q and %q", AuditSessionName, MemberRole, audit.SessionName, awsx.MemberRole)
	}
	_, role := only(t, parse(t), "AWS::IAM::Role")
	var found []map[string]any
	for _, st := range statements(role.Properties["AssumeRolePolicyDocument"]) {
		if st["Sid"] == "SiloIsolationAudit" {
			found = append(found, st)
		}
	}
	want := `{"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:RoleSessionName":"silo-isolation-audit"}},"Effect":"Allow",` +
		`"Principal":{"AWS":{"Fn::Sub":"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/OrganizationAccountAccessRole"}},"Sid":"SiloIsolationAudit"}`
	if len(found) != 1 || jsonOf(found[0]) != want {
		t.Errorf("audit trust statements = %s, want one: %s", jsonOf(found), want)
	}
}
