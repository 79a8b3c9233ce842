// Package logscan finds secrets in captured log output: the known secret
// values a test handed out (tokens, keys) and anything shaped like a
// credential (a JWT, a silo status token, a PEM block, an AWS secret access
// key or session token field, an Authorization: Bearer header). Tests run
// it over everything a real run logged; a finding is a leak.
//
// It reports where a secret is and what kind it is, never the secret: a
// finding's Excerpt is masked, so a failing test does not leak it further.
package logscan

import (
	"fmt"
	"regexp"
	"strings"
)

// Kinds of finding.
const (
	KindKnown        = "known secret"
	KindJWT          = "jwt"
	KindStatusToken  = "status token"
	KindPEM          = "pem block"
	KindAWSSecretKey = "aws secret access key"
	KindAWSSession   = "aws session token"
	KindBearer       = "bearer header"
)

// Finding is one secret in the logs.
type Finding struct {
	Kind string
	// Line is the 1-based line of the logs it is on.
	Line int
	// Excerpt is the match with all but its first four characters masked.
	Excerpt string
}

func (f Finding) String() string { return fmt.Sprintf("line %d: %s: %s", f.Line, f.Kind, f.Excerpt) }

// shapes are the credential shapes looked for, whatever their value.
var shapes = []struct {
	kind string
	re   *regexp.Regexp
}{
	// Three base64url segments, the header a JSON object ("{" is "eyJ").
	{KindJWT, regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}`)},
	// internal/api's status tokens: "sst1_" and an HMAC-SHA256 in base64url.
	{KindStatusToken, regexp.MustCompile(`sst1_[A-Za-z0-9_-]{16,}`)},
	{KindPEM, regexp.MustCompile(`-----BEGIN [A-Z0-9 ]+-----`)},
	// A field named like a secret key, with a value of the key's shape (40
	// base64 characters). Spellings: SecretAccessKey, secret_access_key,
	// aws_secret_access_key, AWS_SECRET_ACCESS_KEY, as key=value, "key":"value"
	// or key: value.
	{KindAWSSecretKey, regexp.MustCompile(`(?i)secret_?access_?key\\?["']?\s*[:=]\s*\\?["']?[A-Za-z0-9/+=]{40}`)},
	{KindAWSSession, regexp.MustCompile(`(?i)(session_?token|security_?token|x-amz-security-token)\\?["']?\s*[:=]\s*\\?["']?[A-Za-z0-9/+=]{16,}`)},
	// An Authorization header with a bearer credential, in any rendering
	// (Authorization: Bearer x, "Authorization":["Bearer x"], authorization="Bearer x").
	{KindBearer, regexp.MustCompile(`(?i)authorization\\?["']?\s*[:=]\s*[\[\\"']*\s*bearer\s+[^\s"'\\\]]{8,}`)},
	// "Bearer <credential>" wherever it stands (not "Bearer realm=").
	{KindBearer, regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*`)},
}

// minKnown is the shortest known secret looked for: shorter values would
// match innocent text.
const minKnown = 8

// Scan returns every secret in logs: each occurrence of a value of known
// (values shorter than 8 characters are ignored) and each credential shape.
// One stretch of text is reported once, as its first kind.
func Scan(logs string, known []string) []Finding {
	var out []Finding
	for n, line := range strings.Split(logs, "\n") {
		var taken [][2]int
		overlaps := func(s, e int) bool {
			for _, t := range taken {
				if s < t[1] && t[0] < e {
					return true
				}
			}
			return false
		}
		add := func(kind string, s, e int) {
			if overlaps(s, e) {
				return
			}
			taken = append(taken, [2]int{s, e})
			out = append(out, Finding{Kind: kind, Line: n + 1, Excerpt: mask(line[s:e])})
		}
		for _, k := range known {
			if len(k) < minKnown {
				continue
			}
			for i := 0; ; {
				j := strings.Index(line[i:], k)
				if j < 0 {
					break
				}
				add(KindKnown, i+j, i+j+len(k))
				i += j + len(k)
			}
		}
		for _, sh := range shapes {
			for _, m := range sh.re.FindAllStringIndex(line, -1) {
				add(sh.kind, m[0], m[1])
			}
		}
	}
	return out
}

func mask(s string) string {
	const keep = 4
	if len(s) <= keep {
		return strings.Repeat("*", len(s))
	}
	return s[:keep] + strings.Repeat("*", min(len(s)-keep, 12)) + fmt.Sprintf(" (%d chars)", len(s))
}
