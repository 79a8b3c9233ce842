package registry

// Names derived from a tenant id, and the length budget of new ids.
//
// A tenant id names resources in the tenant's own account (through the
// tenant template's TenantId parameter) and things in the management
// account. Each name has its service's limit:
//
//	name                     derived as                                 limit
//	S3 bucket                silo-<id>-<account id>-<region>            3–63, a-z 0-9 . -
//	DynamoDB table           silo-<id>-data                             3–255, a-z A-Z 0-9 _ . -
//	Lambda function          silo-<id>-app                              1–64, a-z A-Z 0-9 _ -
//	CloudWatch log group     /aws/lambda/silo-<id>-app                  1–512, a-z A-Z 0-9 . - _ / #
//	Secrets Manager secret   silo/<id>/signing                          1–512, a-z A-Z 0-9 / _ + = . @ -
//	API Gateway REST API     silo-<id>                                  none documented
//	tags, descriptions       silo:tenant = <id>; "silo tenant <id>: …"  256 (tag value), 1000 (IAM role description)
//	StackSet operation ids   silo-<id>-deploy-<n>, silo-<id>-remove-<n>,
//	                         silo-<id>-update-<release>-<n>,
//	                         silo-rollout-<rollout>-w<n>[-<region>],
//	                         silo-rollout-<rollout>-back<n>[-<region>]  1–128, [a-zA-Z0-9][-a-zA-Z0-9]*
//	DNS name                 <id>.<tenant domain>                       63 per label, 253 in all
//	account email            Config.EmailPattern, {tenant} = <id>       64 before the @
//	account name             Config.AccountPrefix + <id>                1–50
//
// The tightest of these, for a 12-digit account id and the longest region
// code silo accepts (awsx.MaxRegionLen), is the bucket: 63 - len("silo-")
// - 1 - 12 - 1 - 14 leaves 30 characters for the id. That is MaxNewIDLen,
// the budget every new id is derived within (NewTenantID, PreviewID) and
// that Store.Create enforces. Ids made before the budget (up to MaxIDLen)
// stay valid for every lookup, and every name above except the template's
// fits them too; the template's TenantId parameter accepts every new id and
// every id that was ever deployed (TemplateIDPattern). A test derives each name of the committed template for the
// longest id and region and checks it against its service's rules.
//
// The account email and name depend on configuration; vending's Config
// checks them with CheckEmailPattern and CheckAccountPrefix for the longest
// id any tenant may have.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/silo-saas/silo/internal/awsx"
)

// Lengths of ids.
const (
	// MinIDLen and MaxIDLen bound every id ValidateID accepts. Ids of up to
	// MaxIDLen were handed out before the budget; they keep working.
	MinIDLen = 3
	MaxIDLen = 40

	// MaxNewIDLen is the budget: the longest id a new tenant, preview or
	// pool account may get, so that every name derived from it fits its
	// service's limit in every region silo accepts.
	MaxNewIDLen = min(
		awsx.BucketNameMax-(len(BucketNamePattern)-len(subTenantID)-len(subAccountID)-len(subRegion))-awsx.AccountIDLen-awsx.MaxRegionLen,
		awsx.TableNameMax-(len(TableNamePattern)-len(subTenantID)),
		awsx.FunctionNameMax-(len(FunctionNamePattern)-len(subTenantID)),
		awsx.LogGroupNameMax-(len(LogGroupNamePattern)-len(subTenantID)),
		awsx.SecretNameMax-(len(SecretNamePattern)-len(subTenantID)),
		awsx.DNSLabelMax,
		MaxIDLen,
	)
)

// The template's names, in CloudFormation's Fn::Sub syntax. The tenant
// stack (cdk/tenantapp) names its resources with these, and the budget is
// computed from them, so a longer pattern shrinks the budget.
const (
	subTenantID  = "${TenantId}"
	subAccountID = "${AWS::AccountId}"
	subRegion    = "${AWS::Region}"

	TableNamePattern    = "silo-" + subTenantID + "-data"
	BucketNamePattern   = "silo-" + subTenantID + "-" + subAccountID + "-" + subRegion
	SecretNamePattern   = "silo/" + subTenantID + "/signing"
	FunctionNamePattern = "silo-" + subTenantID + "-app"
	// LogGroupNamePattern is the group Lambda writes the function's logs to.
	LogGroupNamePattern = "/aws/lambda/" + FunctionNamePattern
	RestAPINamePattern  = "silo-" + subTenantID
)

// Expand fills a name pattern in as CloudFormation's Fn::Sub does for the
// three variables the patterns use.
func Expand(pattern, id, account, region string) string {
	return strings.NewReplacer(subTenantID, id, subAccountID, account, subRegion, region).Replace(pattern)
}

// FunctionName is the name of the tenant app's function in its account.
func FunctionName(id string) string { return Expand(FunctionNamePattern, id, "", "") }

// TableName is the name of the tenant app's table in its account.
func TableName(id string) string { return Expand(TableNamePattern, id, "", "") }

// MaxDeployedIDLen is the longest id the tenant template's TenantId
// parameter has ever accepted (2–32 characters). Tenants created before the
// budget with ids of 31 or 32 characters run in regions whose names are
// short enough for their bucket name; their stack instances are updated
// with every release, and an update whose parameter fails the pattern
// fails. So the template keeps accepting them, while new ids stay within
// MaxNewIDLen, which is what makes every name fit in every region.
const MaxDeployedIDLen = 32

// TemplateIDPattern is the template's AllowedPattern for TenantId: every
// new id (ValidateNewID) and every id already deployed.
func TemplateIDPattern() string {
	return fmt.Sprintf("^[a-z0-9][a-z0-9-]{0,%d}[a-z0-9]$", MaxDeployedIDLen-2)
}

// TemplateIDRule says in words what TemplateIDPattern accepts.
func TemplateIDRule() string {
	return fmt.Sprintf("2-%d lower-case letters, digits and hyphens", MaxDeployedIDLen)
}

// ValidateNewID checks the id of a tenant about to be created: a valid id
// within the budget.
func ValidateNewID(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if len(id) > MaxNewIDLen {
		return &FieldError{"id", fmt.Sprintf("must be at most %d characters for a new tenant (the longest that fits every AWS name derived from it), got %d", MaxNewIDLen, len(id))}
	}
	return nil
}

// StackSet operation ids. Each is recorded before its operation is issued,
// so a crash re-issues the same id; a new attempt takes a new number.

// DeployOperationID names attempt n of creating a tenant's stack instance.
func DeployOperationID(id string, n int) string {
	return operationID("silo-", id, "-deploy-", strconv.Itoa(n))
}

// RemoveOperationID names attempt n of deleting a tenant's stack instance.
func RemoveOperationID(id string, n int) string {
	return operationID("silo-", id, "-remove-", strconv.Itoa(n))
}

// UpdateOperationID names attempt n of bringing a tenant's (a preview's or
// a pool account's) stack instance to a release; the release's first 12
// characters tell operations for different builds apart.
func UpdateOperationID(id, release string, n int) string {
	if len(release) > 12 {
		release = release[:12]
	}
	return operationID("silo-", id, "-update-", release, "-", strconv.Itoa(n))
}

// RolloutOperationID names wave n (from 1) of a rollout.
func RolloutOperationID(rollout string, wave int) string {
	return operationID("silo-rollout-", rollout, "-w", strconv.Itoa(wave))
}

// RollbackOperationID names the n-th (from 1) operation of a rollout's
// rollback: one per release its tenants go back to.
func RollbackOperationID(rollout string, n int) string {
	return operationID("silo-rollout-", rollout, "-back", strconv.Itoa(n))
}

// RegionalOperationID is op for one region, when a rollout's operation
// spans several (one StackSet operation per region).
func RegionalOperationID(op, region string) string { return operationID(op, "-", region) }

// operationID joins parts into an id of StackSets' alphabet: whatever is
// not a letter, a digit or a hyphen becomes a hyphen (ids and releases are
// of that alphabet already; this keeps a stray character from failing the
// call).
func operationID(parts ...string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.Join(parts, ""))
}

// DNSName is the DNS name of tenant id under domain: <id>.<domain>.
func DNSName(id, domain string) string {
	return strings.ToLower(id) + "." + strings.TrimSuffix(strings.ToLower(domain), ".")
}

// CheckTenantDomain checks a domain tenants get DNS names under: every
// tenant's name, <id>.<domain>, must be a valid DNS name for the longest id.
func CheckTenantDomain(domain string) error {
	d := strings.TrimSuffix(domain, ".")
	if d == "" {
		return &FieldError{"tenant_domain", "is empty"}
	}
	if n := MaxIDLen + 1 + len(d); n > awsx.DNSNameMax {
		return &FieldError{"tenant_domain", fmt.Sprintf("%q is %d characters; with a %d-character tenant id the name would be %d, over DNS's %d", printable(d), len(d), MaxIDLen, n, awsx.DNSNameMax)}
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > awsx.DNSLabelMax {
			return &FieldError{"tenant_domain", fmt.Sprintf("%q has a label of %d characters; each must be 1 to %d", printable(d), len(label), awsx.DNSLabelMax)}
		}
	}
	return nil
}

// EmailTenantPlaceholder is replaced by the tenant id in an email pattern.
const EmailTenantPlaceholder = "{tenant}"

// AccountEmail is the root email of a tenant's account: pattern with
// EmailTenantPlaceholder replaced by the id.
func AccountEmail(pattern, id string) string {
	return strings.ReplaceAll(pattern, EmailTenantPlaceholder, id)
}

// CheckEmailPattern checks an account email pattern: it names the tenant
// once, before the @, and the address it makes for the longest id is one
// AWS accepts (64 characters before the @, 254 in all).
func CheckEmailPattern(pattern string) error {
	at := strings.LastIndexByte(pattern, '@')
	switch {
	case strings.Count(pattern, EmailTenantPlaceholder) != 1:
		return &FieldError{"email_pattern", fmt.Sprintf("%q must hold %s exactly once", printable(pattern), EmailTenantPlaceholder)}
	case at < 0 || !strings.Contains(pattern[:at], EmailTenantPlaceholder):
		return &FieldError{"email_pattern", fmt.Sprintf("%q must hold %s before an @", printable(pattern), EmailTenantPlaceholder)}
	}
	longest := AccountEmail(pattern, strings.Repeat("x", MaxIDLen))
	local := longest[:strings.LastIndexByte(longest, '@')]
	if len(local) > awsx.EmailLocalPartMax {
		return &FieldError{"email_pattern", fmt.Sprintf("%q gives %d characters before the @ for a %d-character tenant id; AWS allows %d", printable(pattern), len(local), MaxIDLen, awsx.EmailLocalPartMax)}
	}
	if len(longest) > awsx.EmailAddressMax {
		return &FieldError{"email_pattern", fmt.Sprintf("%q gives a %d-character address for a %d-character tenant id; AWS allows %d", printable(pattern), len(longest), MaxIDLen, awsx.EmailAddressMax)}
	}
	return nil
}

// AccountName is the name of a tenant's account: prefix and id.
func AccountName(prefix, id string) string { return prefix + id }

// CheckAccountPrefix checks an account name prefix: Organizations takes
// names of 1 to 50 printable ASCII characters, and the prefix must leave
// room for the longest id.
func CheckAccountPrefix(prefix string) error {
	for _, r := range prefix {
		if r < ' ' || r > '~' {
			return &FieldError{"account_prefix", fmt.Sprintf("%q has %q; account names take printable ASCII only", printable(prefix), r)}
		}
	}
	if n := len(prefix) + MaxIDLen; n > awsx.AccountNameMax {
		return &FieldError{"account_prefix", fmt.Sprintf("%q is %d characters; with a %d-character tenant id the account name would be %d, over Organizations' %d", printable(prefix), len(prefix), MaxIDLen, n, awsx.AccountNameMax)}
	}
	return nil
}

// Deriving new ids.

// Tenant ids are a readable slug of the company name, a hyphen and a random
// suffix: the suffix makes an id unguessable and two companies of one name
// distinct.
const (
	suffixLen      = 6
	suffixAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	// maxSlugLen is what the budget leaves for the slug.
	maxSlugLen = MaxNewIDLen - 1 - suffixLen
	// fallbackSlug stands for a name with nothing that folds to ASCII
	// letters or digits (Chinese, Japanese, Arabic, …).
	fallbackSlug = "tenant"
)

// NewTenantID derives a new tenant's id from its name: Slug(name), "-" and
// six random lowercase letters and digits. It is within the budget.
func NewTenantID(name string) string {
	return Slug(name, maxSlugLen) + "-" + randomSuffix()
}

// Slug makes a readable, lowercase ASCII slug of at most limit characters
// from a name: letters are folded to ASCII (accents dropped, ß → ss,
// Greek and Cyrillic transliterated; see fold.go), every run of anything
// else becomes one hyphen, and a name too long is cut after its last whole word
// that fits ("International Business Machines Corporation" → at 23,
// "international-business"); only a first word longer than limit is cut
// inside. A name with nothing usable gives "tenant".
func Slug(name string, limit int) string {
	var b strings.Builder
	for _, w := range words(name) {
		if b.Len() == 0 {
			b.WriteString(w[:min(len(w), limit)])
			continue
		}
		if b.Len()+1+len(w) > limit {
			break
		}
		b.WriteByte('-')
		b.WriteString(w)
	}
	if b.Len() == 0 {
		return fallbackSlug[:min(len(fallbackSlug), limit)]
	}
	return b.String()
}

// words returns the words of name folded to lowercase ASCII (fold.go).
func words(name string) []string { return strings.Fields(foldName(name)) }

func randomSuffix() string {
	b := make([]byte, suffixLen)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return string(b)
}

// Preview ids are "pr<N>-<repository name>-<hash>": the repository's name
// made a slug, and six hex digits of the whole "owner/name", so two owners'
// repositories of one name never share an id. They are the same for every
// run of a PR, so a PR's preview is found again by its (repo, PR).
const previewSlugMax = 16

// PreviewID is the id of a repository's PR preview, within the budget. It
// is LegacyPreviewID whenever that fits (so every preview made before the
// budget that could be keeps its id), and otherwise that id with the
// repository's name cut short. repo must be a valid "owner/name".
func PreviewID(repo string, pr int) string {
	id := LegacyPreviewID(repo, pr)
	if len(id) <= MaxNewIDLen {
		return id
	}
	prefix, hash := "pr"+strconv.Itoa(pr)+"-", previewHash(repo)
	room := MaxNewIDLen - len(prefix) - 1 - len(hash)
	slug := previewSlug(repo)
	slug = strings.TrimRight(slug[:max(0, min(len(slug), room))], "-")
	if slug == "" {
		return prefix + hash
	}
	return prefix + slug + "-" + hash
}

// LegacyPreviewID is a PR preview's id as it was derived before ids had a
// length budget: the slug of the repository's name is at most 16
// characters, which for a PR number of five digits or more can pass the
// budget. Previews made then keep their ids; see PreviewID.
func LegacyPreviewID(repo string, pr int) string {
	prefix, hash := "pr"+strconv.Itoa(pr)+"-", previewHash(repo)
	if slug := previewSlug(repo); slug != "" {
		return prefix + slug + "-" + hash
	}
	return prefix + hash
}

func previewHash(repo string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(repo)))
	return hex.EncodeToString(sum[:3])
}

// previewSlug is the repository's name (after the slash) as a slug of at
// most previewSlugMax characters: lowercase letters and digits, runs of
// anything else one hyphen.
func previewSlug(repo string) string {
	name := strings.ToLower(repo[strings.IndexByte(repo, '/')+1:])
	var b strings.Builder
	dash := false
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	slug := strings.Trim(b.String(), "-")
	if len(slug) > previewSlugMax {
		slug = strings.Trim(slug[:previewSlugMax], "-")
	}
	return slug
}
