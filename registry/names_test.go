package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/stacksets"
)

// templateRules holds every name-bearing property of the tenant template,
// by resource type and property path ("*" for any type). A property that
// carries the tenant id and is not here fails TestTemplateNamesFitEveryRegion.
var templateRules = map[string]awsx.NameRule{
	"AWS::S3::Bucket/BucketName":         awsx.BucketNameRule,
	"AWS::DynamoDB::Table/TableName":     awsx.TableNameRule,
	"AWS::Lambda::Function/FunctionName": awsx.FunctionNameRule,
	"AWS::Logs::LogGroup/LogGroupName":   awsx.LogGroupNameRule,
	"AWS::SecretsManager::Secret/Name":   awsx.SecretNameRule,
	"*/Tags/Value":                       awsx.TagValueRule,
	// AWS documents no limit on a REST API's name or description; 255
	// here is a bound of the test's own, so an id that grew would show.
	"AWS::ApiGateway::RestApi/Name":                           {What: "REST API name", Min: 1, Max: 255},
	"AWS::ApiGateway::RestApi/Description":                    {What: "REST API description", Max: 255},
	"AWS::ApiGateway::Deployment/Description":                 {What: "deployment description", Max: 255},
	"AWS::ApiGateway::Stage/StageName":                        {What: "stage name", Min: 1, Max: 128, Chars: regexp.MustCompile(`^[a-zA-Z0-9_]+$`)},
	"AWS::IAM::Role/Description":                              {What: "IAM role description", Max: awsx.RoleDescriptionMax, Chars: regexp.MustCompile(`^[\t\n\r\x20-\x7E\x{A1}-\x{FF}]*$`)},
	"AWS::IAM::Policy/PolicyName":                             {What: "IAM policy name", Min: 1, Max: 128, Chars: regexp.MustCompile(`^[\w+=,.@-]+$`)},
	"AWS::KMS::Key/Description":                               {What: "KMS key description", Max: 8192},
	"AWS::DynamoDB::Table/KeySchema/AttributeName":            {What: "attribute name", Min: 1, Max: 255},
	"AWS::DynamoDB::Table/AttributeDefinitions/AttributeName": {What: "attribute name", Min: 1, Max: 255},
	// The function's whole environment is at most 4 KB; the id is one value.
	"AWS::Lambda::Function/Environment/Variables/TENANT_ID": {What: "environment value", Min: 1, Max: 4096},
}

// A found name is one name-bearing value of the template, evaluated.
type foundName struct {
	where, rule, value string
}

// templateNames evaluates every name-bearing property of the template
// (properties named *Name or Name, and every value that carries the
// TenantId parameter) for one tenant id, account and region. Values
// CloudFormation computes from other resources (Fn::GetAtt, a Ref to a
// resource) are not names silo derives and are left out; a value that
// carries the id and cannot be evaluated is an error.
func templateNames(t *testing.T, tpl []byte, id, account, region string) []foundName {
	t.Helper()
	var doc struct {
		Resources map[string]struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(tpl, &doc); err != nil {
		t.Fatalf("parse template: %v", err)
	}
	eval := func(v any) (string, bool) {
		sub := func(s string) (string, bool) {
			s = Expand(s, id, account, region)
			s = strings.ReplaceAll(s, "${AWS::Partition}", "aws")
			return s, !strings.Contains(s, "${")
		}
		switch v := v.(type) {
		case string:
			return v, true
		case map[string]any:
			if len(v) != 1 {
				return "", false
			}
			if s, ok := v["Fn::Sub"].(string); ok {
				return sub(s)
			}
			if v["Ref"] == "TenantId" {
				return id, true
			}
		}
		return "", false
	}
	var out []foundName
	var walk func(typ, logical, path string, v any)
	walk = func(typ, logical, path string, v any) {
		raw, _ := json.Marshal(v)
		carriesID := strings.Contains(string(raw), "TenantId")
		last := path[strings.LastIndexByte(path, '/')+1:]
		// Keys of a policy document's conditions (sts:RoleSessionName)
		// are not names of things.
		inPolicy := strings.Contains(path, "PolicyDocument") || strings.HasPrefix(path, "KeyPolicy") || strings.HasPrefix(path, "PolicyDocument")
		if s, ok := eval(v); ok && (carriesID || strings.HasSuffix(last, "Name") && !inPolicy) {
			rule := typ + "/" + path
			if _, known := templateRules[rule]; !known && strings.HasPrefix(path, "Tags/") {
				rule = "*/" + path
			}
			out = append(out, foundName{where: logical + "." + path, rule: rule, value: s})
			return
		}
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(typ, logical, strings.TrimPrefix(path+"/"+k, "/"), x)
			}
		case []any:
			for _, x := range v {
				walk(typ, logical, path, x) // indexes left out: one rule per list
			}
		default:
			if carriesID {
				t.Errorf("%s.%s carries the tenant id in a form this test cannot evaluate: %s", logical, path, raw)
			}
		}
	}
	for logical, r := range doc.Resources {
		for k, v := range r.Properties {
			walk(r.Type, logical, k, v)
		}
	}
	slices.SortFunc(out, func(a, b foundName) int { return strings.Compare(a.where, b.where) })
	return out
}

// longestRegions are the longest region codes silo accepts.
func longestRegions(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range awsx.Regions() {
		switch {
		case len(out) == 0 || len(r) > len(out[0]):
			out = []string{r}
		case len(r) == len(out[0]):
			out = append(out, r)
		}
	}
	return out
}

// longestIDs are ids of n characters of every kind of character an id
// may hold, and one derived from a long name.
func longestIDs(n int) []string {
	return []string{
		strings.Repeat("z", n),
		strings.Repeat("9", n),
		("a" + strings.Repeat("-9", n))[:n-1] + "z",
	}
}

func TestMaxRegionLenIsTheLongestRegion(t *testing.T) {
	regions := longestRegions(t)
	if got := len(regions[0]); got != awsx.MaxRegionLen {
		t.Errorf("the longest regions %v have %d characters; awsx.MaxRegionLen is %d: set it (the id budget follows) and regenerate the template (make synth)", regions, got, awsx.MaxRegionLen)
	}
}

// TestTemplateNamesFitEveryRegion derives every name of the committed
// tenant template for the longest new id (the budget), a
// 12-digit account and the longest regions, and checks each against its
// service's rules. Raising the budget by one makes the bucket name 64
// characters and fails it.
func TestTemplateNamesFitEveryRegion(t *testing.T) {
	tpl := stacksets.TenantTemplate()
	var doc struct {
		Parameters map[string]struct{ AllowedPattern string }
	}
	if err := json.Unmarshal(tpl, &doc); err != nil {
		t.Fatal(err)
	}
	allowed := regexp.MustCompile(doc.Parameters["TenantId"].AllowedPattern)
	if got, want := doc.Parameters["TenantId"].AllowedPattern, TemplateIDPattern(); got != want {
		t.Fatalf("the committed template's TenantId pattern is %q, the registry's %q: run make synth", got, want)
	}
	// Every new id, and every id deployed before the budget, passes the
	// parameter check; nothing longer ever did.
	for _, n := range []int{MaxNewIDLen, MaxDeployedIDLen} {
		for _, id := range longestIDs(n) {
			if !allowed.MatchString(id) {
				t.Fatalf("the template refuses %q, an id of %d characters", id, n)
			}
		}
	}
	for _, id := range longestIDs(MaxDeployedIDLen + 1) {
		if allowed.MatchString(id) {
			t.Errorf("the template accepts %q, %d characters, longer than any id it ever deployed", id, len(id))
		}
	}

	const account = "123456789012"
	ids := append(longestIDs(MaxNewIDLen), NewTenantID(strings.Repeat("Internationale Maschinenbau Gesellschaft ", 6)))
	seen, missing := map[string]bool{}, map[string]string{}
	for _, region := range longestRegions(t) {
		for _, id := range ids {
			for _, n := range templateNames(t, tpl, id, account, region) {
				seen[n.rule] = true
				rule, ok := templateRules[n.rule]
				if !ok {
					missing[n.rule] = fmt.Sprintf("%s = %q", n.where, n.value)
					continue
				}
				if err := rule.Check(n.value); err != nil {
					t.Errorf("id %q in %s: %s: %v", id, region, n.where, err)
				}
			}
		}
	}
	for r, example := range missing {
		t.Errorf("%s (%s) has no naming rule in this test: add its service's limit", r, example)
	}
	// The names the budget is made of must all have been found.
	for _, r := range []string{"AWS::S3::Bucket/BucketName", "AWS::DynamoDB::Table/TableName", "AWS::Lambda::Function/FunctionName",
		"AWS::Logs::LogGroup/LogGroupName", "AWS::SecretsManager::Secret/Name", "AWS::ApiGateway::RestApi/Name", "*/Tags/Value"} {
		if !seen[r] {
			t.Errorf("no %s in the template: the test no longer sees it", r)
		}
	}
	// The role's name is CloudFormation's (stack name, logical id and a
	// random suffix, cut to IAM's 64 characters): no id in it.
	if strings.Contains(string(tpl), `"RoleName"`) {
		t.Error("the template names a role: add it to the budget and to templateRules")
	}
}

// TestBudgetIsTight: one character more than the budget makes some
// template name overflow in the longest region, so the budget gives away
// nothing; the bucket is the name that binds.
func TestBudgetIsTight(t *testing.T) {
	tpl := stacksets.TenantTemplate()
	id := strings.Repeat("z", MaxNewIDLen+1)
	var over []string
	for _, n := range templateNames(t, tpl, id, "123456789012", longestRegions(t)[0]) {
		if rule, ok := templateRules[n.rule]; ok && rule.Check(n.value) != nil {
			over = append(over, n.rule)
		}
	}
	if diff := cmp.Diff([]string{"AWS::S3::Bucket/BucketName"}, over); diff != "" {
		t.Errorf("names over their limit for a %d-character id (-want +got):\n%s", len(id), diff)
	}
	if MaxNewIDLen != 30 {
		t.Errorf("MaxNewIDLen = %d; docs/names.md and docs/api.md state 30", MaxNewIDLen)
	}
}

// TestDerivedNamesFitForLongestID checks the names made outside the
// template for the longest id any tenant may hold (ids from before the
// budget included): every StackSet operation id silo builds, the DNS
// label, and the account email and name with patterns the checks accept.
func TestDerivedNamesFitForLongestID(t *testing.T) {
	rollout := strings.Repeat("r", 64) // ValidateRolloutID's longest
	region := longestRegions(t)[0]
	release := strings.Repeat("f", 64)
	const n = 2147483647
	for _, id := range longestIDs(MaxIDLen) {
		ops := map[string]string{
			"deploy":            DeployOperationID(id, n),
			"remove":            RemoveOperationID(id, n),
			"update":            UpdateOperationID(id, release, n),
			"rollout wave":      RegionalOperationID(RolloutOperationID(rollout, n), region),
			"rollback":          RegionalOperationID(RollbackOperationID(rollout, n), region),
			"stacksets helper":  stacksets.OperationID(id, "deploy", n),
			"update, odd chars": UpdateOperationID(id, "v1.2.3+build", 1),
		}
		for what, op := range ops {
			if err := awsx.OperationIDRule.Check(op); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		label := strings.SplitN(DNSName(id, "tenants.example.com"), ".", 2)[0]
		if err := awsx.DNSLabelRule.Check(label); err != nil {
			t.Error(err)
		}
	}
	// The longest domain CheckTenantDomain accepts gives a valid name.
	domain := strings.Repeat(strings.Repeat("d", 63)+".", 4)[:253-MaxIDLen-1]
	domain = strings.TrimSuffix(domain, ".")
	if err := CheckTenantDomain(domain); err != nil {
		t.Fatalf("CheckTenantDomain(%d characters): %v", len(domain), err)
	}
	if name := DNSName(strings.Repeat("z", MaxIDLen), domain); len(name) > 253 {
		t.Errorf("DNS name of %d characters", len(name))
	}
	if err := CheckTenantDomain(domain + "x"); err == nil {
		t.Errorf("CheckTenantDomain accepts %d characters", len(domain)+1)
	}
	// The longest email pattern and account prefix the checks accept.
	pattern := strings.Repeat("p", 64-MaxIDLen) + EmailTenantPlaceholder + "@example.com"
	if err := CheckEmailPattern(pattern); err != nil {
		t.Fatal(err)
	}
	email := AccountEmail(pattern, strings.Repeat("z", MaxIDLen))
	if local := email[:strings.IndexByte(email, '@')]; len(local) != 64 {
		t.Errorf("email %q: %d characters before the @", email, len(local))
	}
	prefix := strings.Repeat("p", 50-MaxIDLen)
	if err := CheckAccountPrefix(prefix); err != nil {
		t.Fatal(err)
	}
	if name := AccountName(prefix, strings.Repeat("z", MaxIDLen)); len(name) != awsx.AccountNameMax || awsx.AccountNameRule.Check(name) != nil {
		t.Errorf("account name %q: %d characters", name, len(name))
	}
}

func TestNamingChecks(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		field string // "" when the check passes
		text  string
	}{
		{"default email pattern", CheckEmailPattern("silo+{tenant}@example.com"), "", ""},
		{"email pattern one over", CheckEmailPattern(strings.Repeat("p", 25) + "{tenant}@example.com"), "email_pattern", "65 characters before the @"},
		{"email pattern without placeholder", CheckEmailPattern("ops@example.com"), "email_pattern", "{tenant} exactly once"},
		{"email pattern twice", CheckEmailPattern("{tenant}+{tenant}@example.com"), "email_pattern", "{tenant} exactly once"},
		{"placeholder in the domain", CheckEmailPattern("ops@{tenant}.example.com"), "email_pattern", "before an @"},
		{"default account prefix", CheckAccountPrefix("silo-"), "", ""},
		{"account prefix one over", CheckAccountPrefix(strings.Repeat("p", 11)), "account_prefix", "would be 51"},
		{"account prefix not ASCII", CheckAccountPrefix("silø-"), "account_prefix", "printable ASCII"},
		{"tenant domain", CheckTenantDomain("tenants.example.com."), "", ""},
		{"tenant domain with an empty label", CheckTenantDomain("tenants..example.com"), "tenant_domain", "label of 0"},
		{"tenant domain label too long", CheckTenantDomain(strings.Repeat("l", 64) + ".com"), "tenant_domain", "label of 64"},
		{"new id at the budget", ValidateNewID(strings.Repeat("a", MaxNewIDLen)), "", ""},
		{"new id over the budget", ValidateNewID(strings.Repeat("a", MaxNewIDLen+1)), "id", "at most 30 characters for a new tenant"},
		{"new id invalid", ValidateNewID("Acme"), "id", "lowercase"},
		{"legacy id", ValidateID(strings.Repeat("a", MaxIDLen)), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.field == "" {
				if tc.err != nil {
					t.Fatalf("unexpected error: %v", tc.err)
				}
				return
			}
			fe, ok := tc.err.(*FieldError)
			if !ok {
				t.Fatalf("error %v (%T), want a *FieldError", tc.err, tc.err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Problem, tc.text) {
				t.Errorf("error %q, want field %s and %q", fe, tc.field, tc.text)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	tests := []struct{ name, want string }{
		{"Acme Corp", "acme-corp"},
		{"  --Acme   Corp!!  ", "acme-corp"},
		{"International Business Machines Corporation", "international-business"},
		{"Ünïcødé GmbH", "unicode-gmbh"},
		{"Müller & Söhne Bau", "muller-sohne-bau"},
		{"Straße AG", "strasse-ag"},
		{"Ørsted Æble Łódź", "orsted-aeble-lodz"},
		{"Œuvre Þing Đorđe", "oeuvre-thing-dorde"},
		{"O'Reilly Media", "oreilly-media"},
		{"McDonald’s", "mcdonalds"},
		{"Ａｃｍｅ ﬁnance™", "acme-finance"},
		{"株式会社テスト", "tenant"},
		{"株式会社 Acme 日本", "acme"},
		{"Ελληνική Εταιρεία", "elliniki-etaireia"},
		{"ООО Ромашка", "ooo-romashka"},
		{"Київська Зоря", "kiivska-zoria"},
		{"", "tenant"},
		{"!!!", "tenant"},
		{"A", "a"},
		{"3M", "3m"},
		// A first word longer than the room is cut inside.
		{"Supercalifragilisticexpialidocious Ltd", "supercalifragilisticexp"},
		// Whole words only: the third would pass 23 characters.
		{"The Quite Extraordinarily Long Company Name International", "the-quite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Slug(tc.name, maxSlugLen); got != tc.want {
				t.Errorf("Slug(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestNewTenantIDFitsTheBudget(t *testing.T) {
	names := []string{
		"Acme", "International Business Machines Corporation",
		strings.Repeat("Ünïcødé Gesellschaft mit beschränkter Haftung ", 5)[:200],
		strings.Repeat("x", MaxNameLen), "株式会社テスト", "Ελληνική Εταιρεία", "ООО Ромашка", "",
	}
	allowed := regexp.MustCompile(TemplateIDPattern())
	suffix := regexp.MustCompile(`-[a-z0-9]{6}$`)
	for _, name := range names {
		a, b := NewTenantID(name), NewTenantID(name)
		for _, id := range []string{a, b} {
			if err := ValidateNewID(id); err != nil || !allowed.MatchString(id) || !suffix.MatchString(id) {
				t.Errorf("NewTenantID(%.20q) = %q: %v (pattern %s)", name, id, err, allowed)
			}
		}
		if a == b {
			t.Errorf("NewTenantID(%.20q) gave %q twice: the suffix is not random", name, a)
		}
	}
}

func TestPreviewID(t *testing.T) {
	tests := []struct {
		repo string
		pr   int
		want string
	}{
		// Today's ids, unchanged wherever they fit (the values the
		// derivation gave before the budget).
		{"acme/web", 42, "pr42-web-86f279"},
		{"acme/Web.Site_2", 7, "pr7-web-site-2-bb7375"},
		{"acme/___", 1, "pr1-9c9019"},
		{"acme/a-very-long-repository-name", 9999, "pr9999-a-very-long-repo-b538b5"},
		// Over the budget: the repository's name is cut.
		{"acme/a-very-long-repository-name", 12345, "pr12345-a-very-long-rep-b538b5"},
		{"acme/a-very-long-repository-name", 9999999, "pr9999999-a-very-long-r-b538b5"},
		{"acme/abcdefghijkl-nopqrstuvwxyz", 9999999, "pr9999999-abcdefghijkl-d597b8"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s#%d", tc.repo, tc.pr), func(t *testing.T) {
			got := PreviewID(tc.repo, tc.pr)
			if got != tc.want {
				t.Errorf("PreviewID = %q, want %q", got, tc.want)
			}
			if err := ValidateNewID(got); err != nil {
				t.Error(err)
			}
			legacy := LegacyPreviewID(tc.repo, tc.pr)
			if (legacy == got) != (len(legacy) <= MaxNewIDLen) {
				t.Errorf("legacy id %q (%d characters) and id %q: the id must be the legacy one exactly when that fits", legacy, len(legacy), got)
			}
		})
	}
}

// TestLegacyPreviewIDIsTheOldDerivation pins LegacyPreviewID to the ids
// previews were given before the budget, so previews made then are found.
func TestLegacyPreviewIDIsTheOldDerivation(t *testing.T) {
	tests := []struct {
		repo string
		pr   int
		want string
	}{
		{"acme/web", 42, "pr42-web-86f279"},
		{"Acme/Web", 1, "pr1-web-86f279"},
		{"acme/a-very-long-repository-name", 12345, "pr12345-a-very-long-repo-b538b5"},
		{"acme/a-very-long-repository-name", 1234567, "pr1234567-a-very-long-repo-b538b5"},
	}
	for _, tc := range tests {
		if got := LegacyPreviewID(tc.repo, tc.pr); got != tc.want {
			t.Errorf("LegacyPreviewID(%s, %d) = %q, want %q", tc.repo, tc.pr, got, tc.want)
		}
	}
}

// TestCreateRefusesIDsOverTheBudget: a new tenant's id must be within the
// budget, with the field named; a tenant made before the budget, with a
// 40-character id, is still read, listed and moved on.
func TestCreateRefusesIDsOverTheBudget(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	before := f.snapshot(t)
	long := strings.Repeat("a", MaxNewIDLen+1)
	_, _, err := f.store.Create(ctx, spec(long), "key-over-budget", "signup")
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != "id" || !strings.Contains(fe.Problem, "at most 30") {
		t.Fatalf("Create(%d characters) = %v, want a field error on id", len(long), err)
	}
	if _, err := f.store.CreateWith(ctx, spec(long), "preview", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateWith(%d characters) = %v, want ErrInvalid", len(long), err)
	}
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("refused creates changed the table:\n%s", diff)
	}
	if _, _, err := f.store.Create(ctx, spec(strings.Repeat("a", MaxNewIDLen)), "key-at-budget", "signup"); err != nil {
		t.Fatalf("Create at the budget: %v", err)
	}

	legacy := strings.Repeat("l", MaxIDLen)
	if err := f.store.ImportTenants(ctx, []*Tenant{{Spec: spec(legacy), State: StateActive, AccountID: "123456789012"}}); err != nil {
		t.Fatal(err)
	}
	got, err := f.store.Get(ctx, legacy)
	if err != nil {
		t.Fatalf("Get of a legacy id: %v", err)
	}
	if _, err := f.store.Transition(ctx, got, StateSuspended, Change{Actor: "test", Reason: "legacy ids keep working"}); err != nil {
		t.Errorf("Transition of a legacy id: %v", err)
	}
}
