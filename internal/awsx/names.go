package awsx

import (
	"fmt"
	"net"
	"regexp"
	"strings"
)

// AWS's rules for the names silo gives things, from each service's
// documentation. registry/names.go sizes tenant ids by the limits; tests
// check names derived from the longest id, and names read back from the
// emulator (which accepts names AWS refuses), with the rules.

// Length limits of names, in characters.
const (
	BucketNameMax      = 63
	TableNameMax       = 255
	FunctionNameMax    = 64
	LogGroupNameMax    = 512
	SecretNameMax      = 512
	RoleNameMax        = 64
	OperationIDMax     = 128
	DNSLabelMax        = 63
	DNSNameMax         = 253
	AccountNameMax     = 50
	EmailLocalPartMax  = 64
	EmailAddressMax    = 254
	TagValueMax        = 256
	RoleDescriptionMax = 1000
	// AccountIDLen is the length of every AWS account id.
	AccountIDLen = 12
)

// A NameRule is one service's rule for one kind of name.
type NameRule struct {
	What     string
	Min, Max int
	// Chars is the pattern every valid name matches.
	Chars *regexp.Regexp
	// extra checks what a length and a pattern cannot say.
	extra func(string) error
}

// Check returns why name breaks the rule, or nil.
func (r NameRule) Check(name string) error {
	if n := len(name); n < r.Min || n > r.Max {
		return fmt.Errorf("%s %q is %d characters; AWS takes %d to %d", r.What, name, n, r.Min, r.Max)
	}
	if r.Chars != nil && !r.Chars.MatchString(name) {
		return fmt.Errorf("%s %q does not match %s", r.What, name, r.Chars)
	}
	if r.extra != nil {
		if err := r.extra(name); err != nil {
			return fmt.Errorf("%s %q: %w", r.What, name, err)
		}
	}
	return nil
}

// The rules.
var (
	BucketNameRule   = NameRule{"S3 bucket name", 3, BucketNameMax, regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`), bucketName}
	TableNameRule    = NameRule{"DynamoDB table name", 3, TableNameMax, regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`), nil}
	FunctionNameRule = NameRule{"Lambda function name", 1, FunctionNameMax, regexp.MustCompile(`^[a-zA-Z0-9_-]+$`), nil}
	LogGroupNameRule = NameRule{"CloudWatch Logs log group name", 1, LogGroupNameMax, regexp.MustCompile(`^[.\-_/#A-Za-z0-9]+$`), nil}
	SecretNameRule   = NameRule{"Secrets Manager secret name", 1, SecretNameMax, regexp.MustCompile(`^[a-zA-Z0-9/_+=.@-]+$`), secretName}
	RoleNameRule     = NameRule{"IAM role name", 1, RoleNameMax, regexp.MustCompile(`^[\w+=,.@-]+$`), nil}
	OperationIDRule  = NameRule{"StackSet operation id", 1, OperationIDMax, regexp.MustCompile(`^[a-zA-Z0-9][-a-zA-Z0-9]*$`), nil}
	DNSLabelRule     = NameRule{"DNS label", 1, DNSLabelMax, regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`), nil}
	AccountNameRule  = NameRule{"account name", 1, AccountNameMax, regexp.MustCompile(`^[\x20-\x7E]+$`), nil}
	TagValueRule     = NameRule{"tag value", 0, TagValueMax, regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`), nil}
)

// bucketName checks S3's rules beyond length and alphabet.
func bucketName(s string) error {
	switch {
	case strings.Contains(s, ".."):
		return fmt.Errorf("two adjacent periods")
	case net.ParseIP(s) != nil:
		return fmt.Errorf("formatted as an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(s, p) {
			return fmt.Errorf("reserved prefix %s", p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(s, sfx) {
			return fmt.Errorf("reserved suffix %s", sfx)
		}
	}
	return nil
}

// secretName: Secrets Manager appends "-" and six characters to make a
// secret's ARN, so a name that ends like that makes partial ARNs ambiguous.
func secretName(s string) error {
	if len(s) > 7 && s[len(s)-7] == '-' && regexp.MustCompile(`^[a-zA-Z0-9]{6}$`).MatchString(s[len(s)-6:]) {
		return fmt.Errorf("ends in a hyphen and six characters, like an ARN's suffix")
	}
	return nil
}
