package deployed

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const twoFunctions = `{"Resources": {
 "FnA": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn-a", "Role": {"Fn::GetAtt": ["RoleA", "Arn"]}, "Timeout": 60}},
 "FnB": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn-b", "Role": {"Fn::GetAtt": ["RoleB", "Arn"]},
   "Environment": {"Variables": {"X": "1"}}}},
 "PolicyA": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "RoleA"}], "PolicyDocument": {"Statement": [
   {"Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:GetItem"], "Resource": "*"},
   {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}]}}},
 "PolicyB": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "RoleB"}], "PolicyDocument": {"Statement": [
   {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}]}}}
}}`

// TestTemplateEdits: a grant goes from the statements of its function's
// role only (a statement left with no action goes too), a grant that is
// not there is an error, and timeouts and variables are set on the named
// function.
func TestTemplateEdits(t *testing.T) {
	tpl, err := parseTemplate([]byte(twoFunctions))
	if err != nil {
		t.Fatal(err)
	}
	statements := func(policy string) []any {
		doc := tpl.Resources()[policy]["Properties"].(map[string]any)["PolicyDocument"].(map[string]any)
		var out []any
		b, _ := json.Marshal(doc["Statement"])
		_ = json.Unmarshal(b, &out)
		return out
	}
	if err := tpl.RemoveGrant("fn-a", "events:PutEvents"); err != nil {
		t.Fatal(err)
	}
	if err := tpl.RemoveGrant("fn-a", "dynamodb:Query"); err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"Effect": "Allow", "Action": []any{"dynamodb:GetItem"}, "Resource": "*"}}
	if diff := cmp.Diff(want, statements("PolicyA")); diff != "" {
		t.Errorf("fn-a's policy (-want +got):\n%s", diff)
	}
	if len(statements("PolicyB")) != 1 {
		t.Errorf("fn-b's policy lost its statement: %v", statements("PolicyB"))
	}
	for _, c := range []struct{ fn, action string }{{"fn-a", "events:PutEvents"}, {"fn-a", "s3:GetObject"}, {"fn-c", "events:PutEvents"}} {
		if err := tpl.RemoveGrant(c.fn, c.action); err == nil {
			t.Errorf("RemoveGrant(%s, %s) did not fail", c.fn, c.action)
		}
	}
	if err := tpl.SetFunctionTimeout("fn-b", 2); err != nil {
		t.Fatal(err)
	}
	if err := tpl.SetFunctionEnvironment("fn-a", "Y", "2"); err != nil {
		t.Fatal(err)
	}
	props := func(id string) map[string]any { return tpl.Resources()[id]["Properties"].(map[string]any) }
	if props("FnB")["Timeout"] != 2 || props("FnA")["Timeout"] != float64(60) {
		t.Errorf("timeouts: fn-a %v, fn-b %v", props("FnA")["Timeout"], props("FnB")["Timeout"])
	}
	if v := props("FnA")["Environment"].(map[string]any)["Variables"].(map[string]any)["Y"]; v != "2" {
		t.Errorf("fn-a's Y = %v", v)
	}
}

// TestFindSource: the checkout is found from any directory inside it, and
// nowhere else.
func TestFindSource(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module "+Module+"\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "e2e", "x")
	other := filepath.Join(t.TempDir(), "elsewhere")
	for _, d := range []string{deep, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindSource(deep); err != nil || got != root {
		t.Errorf("FindSource(%s) = %q, %v; want %s", deep, got, err, root)
	}
	if got, err := FindSource(other); err != ErrNoSource {
		t.Errorf("FindSource(%s) = %q, %v; want ErrNoSource", other, got, err)
	}
}

// TestPrune: the cache keeps the entries used last, and leaves alone
// another harness's work in progress.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i, name := range []string{"a", "b", "c", "d", ".synth-in-progress"} {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		used := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, used, used); err != nil {
			t.Fatal(err)
		}
	}
	touch(filepath.Join(dir, "a")) // used again: now the latest
	if err := prune(dir, 2); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff([]string{".synth-in-progress", "a", "d"}, got); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}
