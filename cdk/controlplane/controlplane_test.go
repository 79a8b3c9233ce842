package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/jsii-runtime-go"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/cfnlint"
	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/registry"
)

// templatePath is the stack synthesized as `make synth` does (arm64);
// x86Path the same stack for x86_64, as the deployed-mode harness makes it
// on an amd64 machine.
var templatePath, x86Path string

// codeDir holds the placeholder zips.
var codeDir string

// TestMain synthesizes once (a Node process through jsii) into a temporary
// directory, with placeholder zips so tests need no `make build`.
func TestMain(m *testing.M) {
	code, err := synthOnce()
	jsii.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: synthesize control plane: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code(m))
}

func synthOnce() (func(*testing.M) int, error) {
	dir, err := os.MkdirTemp("", "silo-controlplane-")
	if err != nil {
		return nil, err
	}
	codeDir = filepath.Join(dir, "lambda")
	z, err := lambdazip.Pack([]byte("placeholder"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(codeDir, 0o755); err != nil {
		return nil, err
	}
	for _, fn := range Functions {
		if err := os.WriteFile(filepath.Join(codeDir, fn+".zip"), z, 0o644); err != nil {
			return nil, err
		}
	}
	templatePath, err = Synth(filepath.Join(dir, "out"), Props{CodeDir: codeDir})
	if err != nil {
		return nil, err
	}
	x86Path, err = Synth(filepath.Join(dir, "out-x86"), Props{CodeDir: codeDir, Architecture: ArchX86_64})
	if err != nil {
		return nil, err
	}
	return func(m *testing.M) int {
		defer os.RemoveAll(dir)
		return m.Run()
	}, nil
}

type resource struct {
	Type           string
	Properties     map[string]any
	DeletionPolicy string
}

func load(t *testing.T) map[string]resource {
	t.Helper()
	b, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct{ Resources map[string]resource }
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	return tpl.Resources
}

func ofType(rs map[string]resource, typ string) []resource {
	var out []resource
	for _, r := range rs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRegistryTableFromSchema(t *testing.T) {
	tables := ofType(load(t), "AWS::DynamoDB::Table")
	if len(tables) != 1 {
		t.Fatalf("%d tables, want 1", len(tables))
	}
	tb := tables[0]
	p := tb.Properties
	s := registry.Schema()
	checks := []struct{ name, got, want string }{
		{"name", js(p["TableName"]), js(registry.DefaultTable)},
		{"keys", js(p["KeySchema"]), js([]map[string]string{{"AttributeName": s.PartitionKey, "KeyType": "HASH"}, {"AttributeName": s.SortKey, "KeyType": "RANGE"}})},
		{"billing", js(p["BillingMode"]), `"PAY_PER_REQUEST"`},
		{"stream", js(p["StreamSpecification"]), `{"StreamViewType":"NEW_AND_OLD_IMAGES"}`},
		{"ttl", js(p["TimeToLiveSpecification"]), js(map[string]any{"AttributeName": s.TTLAttribute, "Enabled": true})},
		{"pitr", js(p["PointInTimeRecoverySpecification"]), `{"PointInTimeRecoveryEnabled":true}`},
		{"deletion protection", js(p["DeletionProtectionEnabled"]), "true"},
		{"retain", tb.DeletionPolicy, "Retain"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %s, want %s", c.got, c.want)
			}
		})
	}
	// Every schema index exists with its keys.
	var gsis []struct {
		IndexName string
		KeySchema []struct{ AttributeName, KeyType string }
	}
	_ = json.Unmarshal([]byte(js(p["GlobalSecondaryIndexes"])), &gsis)
	got := map[string]registry.Index{}
	for _, g := range gsis {
		ix := registry.Index{Name: g.IndexName}
		for _, k := range g.KeySchema {
			if k.KeyType == "HASH" {
				ix.PartitionKey = k.AttributeName
			} else {
				ix.SortKey = k.AttributeName
			}
		}
		got[g.IndexName] = ix
	}
	want := map[string]registry.Index{}
	for _, ix := range s.Indexes {
		want[ix.Name] = ix
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("indexes (-schema +template):\n%s", diff)
	}
}

func TestArtifactBucketOrgOnly(t *testing.T) {
	rs := load(t)
	buckets := ofType(rs, "AWS::S3::Bucket")
	if len(buckets) != 1 {
		t.Fatalf("%d buckets, want 1", len(buckets))
	}
	b := buckets[0].Properties
	if !strings.Contains(js(b["BucketEncryption"]), "SSEAlgorithm") {
		t.Error("bucket not encrypted")
	}
	if js(b["PublicAccessBlockConfiguration"]) != `{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}` {
		t.Errorf("public access block %s", js(b["PublicAccessBlockConfiguration"]))
	}
	pols := ofType(rs, "AWS::S3::BucketPolicy")
	if len(pols) != 1 {
		t.Fatalf("%d bucket policies", len(pols))
	}
	var doc struct{ Statement []map[string]any }
	_ = json.Unmarshal([]byte(js(pols[0].Properties["PolicyDocument"])), &doc)
	var tls, org bool
	for _, st := range doc.Statement {
		cond := js(st["Condition"])
		switch {
		case st["Effect"] == "Deny" && strings.Contains(cond, `"aws:SecureTransport":"false"`):
			tls = true
		case st["Effect"] == "Allow":
			// Any Allow must be fenced by the organization.
			if !strings.Contains(cond, `"aws:PrincipalOrgID":{"Ref":"OrganizationId"}`) {
				t.Errorf("allow statement without org condition: %s", js(st))
			}
			org = true
		}
	}
	if !tls || !org {
		t.Errorf("enforce TLS %v, org read %v", tls, org)
	}
}

func TestFunctionsAndTriggers(t *testing.T) {
	rs := load(t)
	fns := ofType(rs, "AWS::Lambda::Function")
	names := map[string]bool{}
	for _, f := range fns {
		p := f.Properties
		names[js(p["FunctionName"])] = true
		if p["Runtime"] != "provided.al2023" || js(p["Architectures"]) != `["arm64"]` || p["Handler"] != "bootstrap" {
			t.Errorf("function %s: %v %v %v", p["FunctionName"], p["Runtime"], p["Architectures"], p["Handler"])
		}
	}
	for _, fn := range Functions {
		if !names[js("silo-"+fn)] {
			t.Errorf("function silo-%s missing (have %v)", fn, names)
		}
	}
	if n := len(ofType(rs, "AWS::Lambda::EventSourceMapping")); n != 1 {
		t.Errorf("%d SQS event sources, want 1", n)
	}
	rules := ofType(rs, "AWS::Events::Rule")
	if len(rules) != 3 {
		t.Errorf("%d schedules, want 3", len(rules))
	}
	for _, r := range rules {
		if s := r.Properties["ScheduleExpression"]; s != "rate(1 minute)" && s != AuditSchedule {
			t.Errorf("schedule %v", s)
		}
	}
	queues := ofType(rs, "AWS::SQS::Queue")
	var redrive bool
	for _, q := range queues {
		redrive = redrive || q.Properties["RedrivePolicy"] != nil
	}
	if len(queues) != 2 || !redrive {
		t.Errorf("%d queues, redrive %v; want a queue with a DLQ", len(queues), redrive)
	}
	var bus bool
	for _, b := range ofType(rs, "AWS::Events::EventBus") {
		bus = bus || b.Properties["Name"] == EventBusName
	}
	if !bus {
		t.Errorf("event bus %s missing", EventBusName)
	}
	apis := map[string]bool{}
	for _, a := range ofType(rs, "AWS::ApiGateway::RestApi") {
		apis[js(a.Properties["Name"])] = true
	}
	if len(apis) != 2 || !apis[js("silo")] || !apis[js("silo-console")] {
		t.Errorf("REST APIs %v, want silo and silo-console", apis)
	}
	stages := map[string]bool{}
	for _, st := range ofType(rs, "AWS::ApiGateway::Stage") {
		stages[js(st.Properties["StageName"])] = true
	}
	if !stages[js("console")] {
		t.Errorf("stages %v: the console's stage must be named console (its path prefix)", stages)
	}
	if n := len(ofType(rs, "AWS::ApiGateway::Account")); n != 0 {
		t.Error("stack owns the account-wide API Gateway settings")
	}
	alarms := ofType(rs, "AWS::CloudWatch::Alarm")
	metrics := map[string]bool{}
	for _, a := range alarms {
		metrics[js(a.Properties["MetricName"])] = true
	}
	if !metrics[`"ApproximateNumberOfMessagesVisible"`] || !metrics[`"Errors"`] {
		t.Errorf("alarms on %v, want DLQ depth and reconciler errors", metrics)
	}
}

func TestCfnLint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cfnlint.Lint(ctx, templatePath); err != nil {
		t.Fatal(err)
	}
}

// TestDailyIsolationAudit: one rule, daily at 03:17 UTC, invokes the
// reconciler with the constant input {"task":"audit-isolation"}, and the
// function lets EventBridge invoke it from that rule.
func TestDailyIsolationAudit(t *testing.T) {
	rs := load(t)
	var reconciler string
	for id, r := range rs {
		if r.Type == "AWS::Lambda::Function" && r.Properties["FunctionName"] == "silo-reconciler" {
			reconciler = id
		}
	}
	var daily []string
	for id, r := range rs {
		if r.Type == "AWS::Events::Rule" && r.Properties["ScheduleExpression"] == "cron(17 3 * * ? *)" {
			daily = append(daily, id)
		}
	}
	if reconciler == "" || len(daily) != 1 {
		t.Fatalf("reconciler %q, daily rules %v", reconciler, daily)
	}
	rule := rs[daily[0]].Properties
	if rule["State"] != "ENABLED" {
		t.Errorf("the rule is %v", rule["State"])
	}
	targets, _ := rule["Targets"].([]any)
	if len(targets) != 1 {
		t.Fatalf("targets %s", js(rule["Targets"]))
	}
	target := targets[0].(map[string]any)
	if js(target["Arn"]) != js(map[string]any{"Fn::GetAtt": []string{reconciler, "Arn"}}) {
		t.Errorf("the rule invokes %s, not the reconciler", js(target["Arn"]))
	}
	var input map[string]any
	if s, ok := target["Input"].(string); !ok || json.Unmarshal([]byte(s), &input) != nil || js(input) != `{"task":"audit-isolation"}` {
		t.Errorf("input %s, want the constant {\"task\":\"audit-isolation\"}", js(target["Input"]))
	}
	var allowed bool
	for _, r := range ofType(rs, "AWS::Lambda::Permission") {
		p := r.Properties
		allowed = allowed || p["Principal"] == "events.amazonaws.com" &&
			js(p["FunctionName"]) == js(map[string]any{"Fn::GetAtt": []string{reconciler, "Arn"}}) &&
			js(p["SourceArn"]) == js(map[string]any{"Fn::GetAtt": []string{daily[0], "Arn"}})
	}
	if !allowed {
		t.Error("no permission for the daily rule to invoke the reconciler")
	}
}

// TestReconcilerRunsTheAudit: the AllowedRegions parameter reaches the
// reconciler (only) as SILO_ALLOWED_REGIONS; the reconciler may assume the
// member role, read the organization and list the tenant stack set's
// instances (nothing else on *), and no other function may assume anything; its timeout fits
// the audit and the queue's visibility timeout is six times it.
func TestReconcilerRunsTheAudit(t *testing.T) {
	b, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Parameters map[string]map[string]any
		Resources  map[string]resource
	}
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	p := tpl.Parameters["AllowedRegions"]
	if p == nil || p["Type"] != "String" || p["AllowedPattern"] != AllowedRegionsPattern || p["Default"] != nil {
		t.Errorf("parameter AllowedRegions %s, want a required String with the pattern", js(p))
	}
	pattern := regexp.MustCompile(AllowedRegionsPattern)
	for v, ok := range map[string]bool{"us-east-1": true, "us-east-1,eu-west-1": true, "us-gov-west-1": true,
		"": false, "us-east-1, eu-west-1": false, "us-east-1,": false, "US-EAST-1": false, "*": false} {
		if pattern.MatchString(v) != ok {
			t.Errorf("AllowedRegions %q accepted %v, want %v", v, !ok, ok)
		}
	}

	roles := map[string]string{} // role logical id → function name
	for id, r := range tpl.Resources {
		if r.Type != "AWS::Lambda::Function" {
			continue
		}
		name, _ := r.Properties["FunctionName"].(string)
		env, _ := r.Properties["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		got, set := vars["SILO_ALLOWED_REGIONS"]
		if name == "silo-reconciler" {
			if js(got) != `{"Ref":"AllowedRegions"}` {
				t.Errorf("reconciler SILO_ALLOWED_REGIONS %s", js(got))
			}
			if r.Properties["Timeout"] != float64(ReconcilerTimeout*60) {
				t.Errorf("reconciler timeout %v s, want %d", r.Properties["Timeout"], ReconcilerTimeout*60)
			}
		} else if set {
			t.Errorf("%s (%s) gets SILO_ALLOWED_REGIONS", name, id)
		}
		var role struct {
			GetAtt []string `json:"Fn::GetAtt"`
		}
		_ = json.Unmarshal([]byte(js(r.Properties["Role"])), &role)
		if len(role.GetAtt) == 2 {
			roles[role.GetAtt[0]] = name
		}
	}
	for _, q := range ofType(tpl.Resources, "AWS::SQS::Queue") {
		if q.Properties["RedrivePolicy"] != nil && q.Properties["VisibilityTimeout"] != float64(6*ReconcilerTimeout*60) {
			t.Errorf("reconcile queue visibility timeout %v s, want 6 × the reconciler's %d", q.Properties["VisibilityTimeout"], ReconcilerTimeout*60)
		}
	}

	type statement struct {
		Sid      string
		Effect   string
		Action   any
		Resource any
	}
	var reconciler []statement
	for _, pol := range ofType(tpl.Resources, "AWS::IAM::Policy") {
		var attached []struct{ Ref string }
		_ = json.Unmarshal([]byte(js(pol.Properties["Roles"])), &attached)
		var doc struct{ Statement []statement }
		_ = json.Unmarshal([]byte(js(pol.Properties["PolicyDocument"])), &doc)
		for _, r := range attached {
			fn := roles[r.Ref]
			for _, st := range doc.Statement {
				if fn == "silo-reconciler" {
					reconciler = append(reconciler, st)
				} else if strings.Contains(js(st.Action), "sts:") {
					t.Errorf("%s may %s", fn, js(st.Action))
				}
			}
		}
	}
	want := map[string]statement{
		"AssumeMemberRole": {Sid: "AssumeMemberRole", Effect: "Allow", Action: "sts:AssumeRole",
			Resource: map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/OrganizationAccountAccessRole"}},
		"ReadOrganization": {Sid: "ReadOrganization", Effect: "Allow", Action: []any{
			"organizations:ListRoots", "organizations:ListOrganizationalUnitsForParent", "organizations:ListParents",
			"organizations:ListPolicies", "organizations:DescribePolicy", "organizations:ListPoliciesForTarget"}, Resource: "*"},
		"ListTenantStackInstances": {Sid: "ListTenantStackInstances", Effect: "Allow", Action: "cloudformation:ListStackInstances",
			Resource: map[string]any{"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stackset/silo-tenant-app:*"}},
	}
	got := map[string]statement{}
	for _, st := range reconciler {
		if _, ok := want[st.Sid]; ok {
			got[st.Sid] = st
		}
		if st.Resource == "*" && st.Sid != "ReadOrganization" {
			t.Errorf("reconciler statement on *: %s", js(st))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the reconciler's audit statements (-want +got):\n%s", diff)
	}
}

// TestArchitecture: the functions run on arm64 unless the props say
// x86_64 (the harness on an amd64 machine), and nothing else about them
// changes; a GOARCH Lambda does not run is refused.
func TestArchitecture(t *testing.T) {
	for goarch, want := range map[string]string{"arm64": ArchARM64, "amd64": ArchX86_64, "386": "", "riscv64": ""} {
		got, err := ArchitectureOf(goarch)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ArchitectureOf(%q) = %q, %v; want %q", goarch, got, err, want)
		}
	}
	if _, err := Synth(t.TempDir(), Props{CodeDir: codeDir, Architecture: "sparc"}); err == nil || !strings.Contains(err.Error(), "sparc") {
		t.Errorf("Synth with architecture sparc: %v, want an error naming it", err)
	}
	functions := func(path string) map[string]map[string]any {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var tpl struct{ Resources map[string]resource }
		if err := json.Unmarshal(b, &tpl); err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]any{}
		for _, r := range ofType(tpl.Resources, "AWS::Lambda::Function") {
			out[r.Properties["FunctionName"].(string)] = r.Properties
		}
		return out
	}
	arm, x86 := functions(templatePath), functions(x86Path)
	if len(x86) != len(Functions) {
		t.Fatalf("%d functions for x86_64, want %d", len(x86), len(Functions))
	}
	for name, p := range x86 {
		if js(p["Architectures"]) != `["x86_64"]` {
			t.Errorf("%s: architectures %s, want [\"x86_64\"]", name, js(p["Architectures"]))
		}
		// Only the architecture and the code (another zip hash) differ.
		a, x := maps.Clone(arm[name]), maps.Clone(p)
		for _, k := range []string{"Architectures", "Code"} {
			delete(a, k)
			delete(x, k)
		}
		if diff := cmp.Diff(a, x); diff != "" {
			t.Errorf("%s differs beyond its architecture (-arm64 +x86_64):\n%s", name, diff)
		}
	}
}

// TestExecutionRolesGrantExactly: each function's role is its own, with
// no managed policy (AWSLambdaBasicExecutionRole would allow every log
// group), and holds exactly the statements grant writes: the actions its
// code calls (TestGrantsMatchCalls in internal/deployed holds them to the
// calls), no wildcard action, and "*" only where the service takes no
// narrower resource. The reconcile queue's mapping is not CDK's
// SqsEventSource, which would add its own consume grants.
func TestExecutionRolesGrantExactly(t *testing.T) {
	rs := load(t)
	want := map[string]map[string][]string{
		"silo-api": {
			"WriteOwnLog":          {"logs:CreateLogStream", "logs:PutLogEvents"},
			"ReadRegistry":         {"dynamodb:GetItem", "dynamodb:Query"},
			"QueryRegistryIndexes": {"dynamodb:Query"},
			"WriteRegistry":        {"dynamodb:PutItem"},
			"KickReconciler":       {"sqs:SendMessage"},
			"ReadStatusTokenKey":   {"secretsmanager:GetSecretValue"},
		},
		"silo-console": {
			"WriteOwnLog":          {"logs:CreateLogStream", "logs:PutLogEvents"},
			"ReadRegistry":         {"dynamodb:GetItem", "dynamodb:Query"},
			"QueryRegistryIndexes": {"dynamodb:Query"},
			"ReadCostsAndOUs":      {"ce:GetCostAndUsage", "organizations:ListParents", "organizations:DescribeOrganizationalUnit"},
		},
		"silo-prober": {
			"WriteOwnLog":          {"logs:CreateLogStream", "logs:PutLogEvents"},
			"QueryRegistryIndexes": {"dynamodb:Query"},
			"RecordHealth":         {"dynamodb:PutItem", "dynamodb:BatchWriteItem"},
			"PutHealthEvents":      {"events:PutEvents"},
		},
		"silo-reconciler": {
			"WriteOwnLog":              {"logs:CreateLogStream", "logs:PutLogEvents"},
			"ReadRegistry":             {"dynamodb:GetItem", "dynamodb:Query"},
			"QueryRegistryIndexes":     {"dynamodb:Query"},
			"WriteRegistry":            {"dynamodb:PutItem"},
			"PutTenantEvents":          {"events:PutEvents"},
			"ConsumeReconcileQueue":    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
			"AssumeMemberRole":         {"sts:AssumeRole"},
			"ReadOrganization":         AuditOrganizationActions,
			"ListTenantStackInstances": {"cloudformation:ListStackInstances"},
		},
	}
	// Where a statement's resource is "*": the services take no narrower.
	anywhere := map[string]bool{"ReadCostsAndOUs": true, "ReadOrganization": true}
	// What each statement's resources refer to, by the logical id prefix
	// of the resource they name (a Sub names none).
	on := map[string]string{
		"ReadRegistry": "Registry", "QueryRegistryIndexes": "Registry", "WriteRegistry": "Registry",
		"RecordHealth": "Registry", "KickReconciler": "ReconcileQueue", "ConsumeReconcileQueue": "ReconcileQueue",
		"ReadStatusTokenKey": "StatusTokenKey", "PutHealthEvents": "Events", "PutTenantEvents": "Events",
	}

	roles := map[string]string{}     // role logical id → function name
	logGroups := map[string]string{} // function name → its log group's name
	for _, f := range ofType(rs, "AWS::Lambda::Function") {
		var role struct {
			GetAtt []string `json:"Fn::GetAtt"`
		}
		_ = json.Unmarshal([]byte(js(f.Properties["Role"])), &role)
		name, _ := f.Properties["FunctionName"].(string)
		if len(role.GetAtt) != 2 {
			t.Fatalf("function %s: role %s", name, js(f.Properties["Role"]))
		}
		if other, ok := roles[role.GetAtt[0]]; ok {
			t.Errorf("functions %s and %s share role %s", other, name, role.GetAtt[0])
		}
		roles[role.GetAtt[0]] = name
		var logging struct{ LogGroup struct{ Ref string } }
		_ = json.Unmarshal([]byte(js(f.Properties["LoggingConfig"])), &logging)
		logGroups[name], _ = rs[logging.LogGroup.Ref].Properties["LogGroupName"].(string)
		r := rs[role.GetAtt[0]]
		if r.Type != "AWS::IAM::Role" || r.Properties["ManagedPolicyArns"] != nil || r.Properties["Policies"] != nil {
			t.Errorf("function %s's role: %s, want one with no managed or inline policies", name, js(r))
		}
	}
	got := map[string]map[string][]string{}
	for _, pol := range ofType(rs, "AWS::IAM::Policy") {
		var attached []struct{ Ref string }
		_ = json.Unmarshal([]byte(js(pol.Properties["Roles"])), &attached)
		var doc struct {
			Statement []struct {
				Sid, Effect string
				Action      any
				Resource    any
				Condition   any
			}
		}
		_ = json.Unmarshal([]byte(js(pol.Properties["PolicyDocument"])), &doc)
		for _, r := range attached {
			fn, ok := roles[r.Ref]
			if !ok {
				continue
			}
			if got[fn] == nil {
				got[fn] = map[string][]string{}
			}
			for _, st := range doc.Statement {
				var actions []string
				if a, ok := st.Action.(string); ok {
					actions = []string{a}
				} else {
					_ = json.Unmarshal([]byte(js(st.Action)), &actions)
				}
				if _, dup := got[fn][st.Sid]; dup || st.Sid == "" {
					t.Errorf("%s: statement %q (a Sid each, once)", fn, st.Sid)
				}
				got[fn][st.Sid] = actions
				for _, a := range actions {
					if strings.ContainsAny(a, "*?") {
						t.Errorf("%s %s: wildcard action %s", fn, st.Sid, a)
					}
				}
				if st.Effect != "Allow" || st.Condition != nil {
					t.Errorf("%s %s: %s", fn, st.Sid, js(st))
				}
				res := js(st.Resource)
				switch {
				case anywhere[st.Sid]:
					if res != `"*"` {
						t.Errorf("%s %s on %s, want *", fn, st.Sid, res)
					}
				case res == `"*"` || strings.Contains(res, `"*"`):
					t.Errorf("%s %s on *", fn, st.Sid)
				case on[st.Sid] != "" && !strings.Contains(res, `"`+on[st.Sid]):
					t.Errorf("%s %s on %s, want the %s", fn, st.Sid, res, on[st.Sid])
				}
				if st.Sid == "WriteOwnLog" && (res != js(map[string]any{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + logGroups[fn] + ":*"}) || logGroups[fn] == "") {
					t.Errorf("%s %s on %s, want its own log group %q", fn, st.Sid, res, logGroups[fn])
				}
				if st.Sid == "QueryRegistryIndexes" && !strings.Contains(res, "/index/*") {
					t.Errorf("%s %s on %s, want the table's indexes", fn, st.Sid, res)
				}
				if st.Sid == "ReadRegistry" && strings.Contains(res, "/index/") {
					t.Errorf("%s %s on %s, want the table only", fn, st.Sid, res)
				}
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statements by function and Sid (-want +got):\n%s", diff)
	}
	for _, m := range ofType(rs, "AWS::Lambda::EventSourceMapping") {
		if js(m.Properties["FunctionResponseTypes"]) != `["ReportBatchItemFailures"]` || m.Properties["BatchSize"] != float64(10) ||
			!strings.Contains(js(m.Properties["EventSourceArn"]), "ReconcileQueue") {
			t.Errorf("event source mapping %s", js(m.Properties))
		}
	}
}
