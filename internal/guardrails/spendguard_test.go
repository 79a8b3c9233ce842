package guardrails

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// previewsDoc is where the spend guard's actions are listed with a reason.
const previewsDoc = "../../docs/previews.md"

func TestSpendGuardDocument(t *testing.T) {
	p := spendGuard()
	if diff := cmp.Diff([]string{OUPreview}, p.Targets); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	s, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(s) > MaxPolicySize {
		t.Errorf("%d characters, over %d", len(s), MaxPolicySize)
	}
	if strings.ContainsAny(s, " \n\t") {
		t.Error("document is not minified")
	}
	var back Document
	if err := json.Unmarshal([]byte(s), &back); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	if diff := cmp.Diff(p.Document, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	sids := map[string]bool{}
	seen := map[string]string{}
	action := regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9]+\*?$`)
	for _, st := range p.Document.Statement {
		if st.Sid == "" || sids[st.Sid] {
			t.Errorf("empty or duplicate Sid %q", st.Sid)
		}
		sids[st.Sid] = true
		if st.Effect != "Deny" || len(st.NotAction) != 0 || st.Condition != nil {
			t.Errorf("%s: want an unconditional Deny of listed actions", st.Sid)
		}
		if diff := cmp.Diff([]string{"*"}, st.Resource); diff != "" {
			t.Errorf("%s: resource (-want +got):\n%s", st.Sid, diff)
		}
		for _, a := range st.Action {
			if !action.MatchString(a) {
				t.Errorf("%s: malformed action %q", st.Sid, a)
			}
			if other, ok := seen[a]; ok {
				t.Errorf("%s in both %s and %s", a, other, st.Sid)
			}
			seen[a] = st.Sid
		}
	}
}

// TestSpendGuardNeverDeniesTheApp pins that the guard leaves alone what the
// tenant stack deploys and what the reset deletes. A wildcard that grows to
// cover one of these would break previews without any test of the stack
// noticing: the emulator does not enforce SCPs.
func TestSpendGuardNeverDeniesTheApp(t *testing.T) {
	needed := []string{
		"lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:DeleteFunction", "lambda:PutFunctionConcurrency",
		"apigateway:POST", "apigateway:PATCH", "apigateway:DELETE",
		"dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups", "dynamodb:DeleteTable",
		"s3:CreateBucket", "s3:PutBucketVersioning", "s3:PutBucketPublicAccessBlock", "s3:PutEncryptionConfiguration",
		"s3:PutBucketPolicy", "s3:DeleteBucket", "s3:DeleteObjectVersion",
		"kms:CreateKey", "kms:PutKeyPolicy", "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion",
		"secretsmanager:CreateSecret", "secretsmanager:DeleteSecret",
		"logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteLogGroup",
		"iam:CreateRole", "iam:PutRolePolicy", "iam:PassRole", "iam:DeleteRole",
		"cloudformation:CreateStack", "cloudformation:UpdateStack",
		"rds:DeleteDBInstance", "ec2:TerminateInstances", "sagemaker:DeleteEndpoint",
	}
	for _, st := range spendGuard().Document.Statement {
		for _, pattern := range st.Action {
			for _, a := range needed {
				if matchAction(pattern, a) {
					t.Errorf("%s denies %s (by %s)", st.Sid, a, pattern)
				}
			}
		}
	}
}

// matchAction reports whether an IAM action pattern (with a trailing *)
// covers action; IAM matches actions case-insensitively.
func matchAction(pattern, action string) bool {
	pattern, action = strings.ToLower(pattern), strings.ToLower(action)
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(action, prefix)
	}
	return pattern == action
}

// TestSpendGuardDocumented keeps the table in docs/previews.md ("Spend
// guard") and the policy listing the same actions, each once, with a reason.
func TestSpendGuardDocumented(t *testing.T) {
	var want []string
	for _, st := range spendGuard().Document.Statement {
		want = append(want, st.Action...)
	}
	slices.Sort(want)

	f, err := os.Open(previewsDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([^`]+)` \\| (.*) \\|$")
	var got []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			in = line == "## Spend guard"
			continue
		}
		if !in {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if strings.TrimSpace(m[2]) == "" {
			t.Errorf("%s: no reason given", m[1])
		}
		got = append(got, m[1])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("denied actions, policy (-) vs %s (+):\n%s", previewsDoc, diff)
	}
}
