package guardrails

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/silo-saas/silo/internal/awsx"
)

func TestPolicies(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "one region", opts: Options{AllowedRegions: []string{"eu-west-1"}}},
		{name: "every known region", opts: Options{AllowedRegions: awsx.Regions()}},
		{name: "custom role and partition", opts: Options{AllowedRegions: []string{"us-east-1"}, MemberRole: "SiloAdmin", Partition: "aws-us-gov"}},
		{name: "no regions", opts: Options{}, wantErr: true},
		{name: "unknown region", opts: Options{AllowedRegions: []string{"mars-north-1"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := Policies(tc.opts)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, p := range ps {
				if names[p.Name] {
					t.Errorf("duplicate policy name %s", p.Name)
				}
				names[p.Name] = true
				if p.Description == "" || len(p.Description) > 512 {
					t.Errorf("%s: description %q must be 1-512 characters", p.Name, p.Description)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: no targets", p.Name)
				}
				s, err := p.JSON()
				if err != nil {
					t.Fatal(err)
				}
				if !json.Valid([]byte(s)) {
					t.Errorf("%s: invalid JSON", p.Name)
				}
				if len(s) > MaxPolicySize {
					t.Errorf("%s: %d characters, over %d", p.Name, len(s), MaxPolicySize)
				}
				var generic map[string]any
				if err := json.Unmarshal([]byte(s), &generic); err != nil {
					t.Fatal(err)
				}
				if generic["Version"] != "2012-10-17" {
					t.Errorf("%s: version %v", p.Name, generic["Version"])
				}
				sids := map[string]bool{}
				for _, st := range p.Document.Statement {
					if st.Sid == "" || sids[st.Sid] {
						t.Errorf("%s: empty or duplicate Sid %q", p.Name, st.Sid)
					}
					sids[st.Sid] = true
					if st.Effect != "Deny" {
						t.Errorf("%s/%s: effect %s, want Deny", p.Name, st.Sid, st.Effect)
					}
					if (len(st.Action) == 0) == (len(st.NotAction) == 0) {
						t.Errorf("%s/%s: want exactly one of Action and NotAction", p.Name, st.Sid)
					}
					if len(st.Resource) == 0 {
						t.Errorf("%s/%s: no Resource", p.Name, st.Sid)
					}
				}
			}
		})
	}
}

func TestSidsUniqueAcrossPolicies(t *testing.T) {
	ps, err := Policies(Options{AllowedRegions: []string{"us-east-1"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, p := range ps {
		for _, st := range p.Document.Statement {
			if other, ok := seen[st.Sid]; ok {
				t.Errorf("Sid %s in both %s and %s", st.Sid, other, p.Name)
			}
			seen[st.Sid] = p.Name
		}
	}
}

// TestPolicyIntent pins the decisions that are easy to get subtly wrong.
func TestPolicyIntent(t *testing.T) {
	ps, err := Policies(Options{AllowedRegions: []string{"us-east-1", "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Policy{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	tests := []struct {
		name, policy, want string
	}{
		{"leave org denied", "silo-deny-leave-organization", `"Action":["organizations:LeaveOrganization"]`},
		{"cloudtrail stop denied", "silo-protect-security-services", `"cloudtrail:StopLogging"`},
		{"config recorder stop denied", "silo-protect-security-services", `"config:StopConfigurationRecorder"`},
		{"guardduty delete denied", "silo-protect-security-services", `"guardduty:DeleteDetector"`},
		{"regions sorted", "silo-allowed-regions", `"aws:RequestedRegion":["eu-west-1","us-east-1"]`},
		{"iam exempt from regions", "silo-allowed-regions", `"iam:*"`},
		{"sts exempt from regions", "silo-allowed-regions", `"sts:*"`},
		{"member role only changed by itself", "silo-protect-member-role", `"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::*:role/OrganizationAccountAccessRole"]}`},
		{"member role pass denied", "silo-protect-member-role", `"iam:PassRole"`},
		{"member role is the resource", "silo-protect-member-role", `"Resource":["arn:aws:iam::*:role/OrganizationAccountAccessRole"]`},
		{"root denied", "silo-deny-root-user", `"ArnLike":{"aws:PrincipalArn":["arn:aws:iam::*:root"]}`},
		{"preview: no instances", PreviewSpendGuard, `"ec2:RunInstances"`},
		{"preview: no NAT gateways", PreviewSpendGuard, `"ec2:CreateNatGateway"`},
		{"preview: no provisioned concurrency", PreviewSpendGuard, `"lambda:PutProvisionedConcurrencyConfig"`},
		{"preview: no savings plans", PreviewSpendGuard, `"savingsplans:CreateSavingsPlan"`},
		{"preview: no object lock", PreviewSpendGuard, `"s3:PutBucketObjectLockConfiguration"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := byName[tc.policy]
			if !ok {
				t.Fatalf("no policy %s", tc.policy)
			}
			s, _ := p.JSON()
			if !strings.Contains(s, tc.want) {
				t.Errorf("%s does not contain %s:\n%s", tc.policy, tc.want, s)
			}
		})
	}
}

func TestNoRegionsSentinel(t *testing.T) {
	if _, err := Policies(Options{}); !errors.Is(err, ErrNoRegions) {
		t.Errorf("err = %v, want ErrNoRegions", err)
	}
}
