package logscan

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	jwt         = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJsb2NhbC1hZG1pbiIsInJvbGUiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmU"
	statusToken = "sst1_Q2hhbmdlTWVQbGVhc2VUaGlzSXNBbkhNQUNTaWduYXR1cmU"
	awsSecret   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	session     = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"
)

func TestScanLogsFindsLeaks(t *testing.T) {
	tests := []struct {
		name  string
		logs  string
		known []string
		want  []string // kinds, in order
	}{
		{"jwt in a text attribute", `level=INFO msg="token refused" token=` + jwt, nil, []string{KindJWT}},
		{"jwt in json", `{"level":"INFO","msg":"login","token":"` + jwt + `"}`, nil, []string{KindJWT}},
		{"status token", `level=DEBUG msg=signup answer="{tenant_id:acme status_token:` + statusToken + `}"`, nil, []string{KindStatusToken}},
		{"pem private key", "key=\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE...\"", nil, []string{KindPEM}},
		{"pem public key", "-----BEGIN PUBLIC KEY-----", nil, []string{KindPEM}},
		{"aws secret key, text", `level=DEBUG msg=config SecretAccessKey=` + awsSecret, nil, []string{KindAWSSecretKey}},
		{"aws secret key, json", `{"aws_secret_access_key":"` + awsSecret + `"}`, nil, []string{KindAWSSecretKey}},
		{"aws secret key, escaped json", `msg="creds {\"SecretAccessKey\":\"` + awsSecret + `\"}"`, nil, []string{KindAWSSecretKey}},
		{"aws secret key, env", `AWS_SECRET_ACCESS_KEY=` + awsSecret, nil, []string{KindAWSSecretKey}},
		{"aws session token", `{"SessionToken":"` + session + `"}`, nil, []string{KindAWSSession}},
		{"aws security token header", `X-Amz-Security-Token: ` + session, nil, []string{KindAWSSession}},
		{"authorization header", `headers="map[Authorization:[Bearer opaque-token-value]]"`, nil, []string{KindBearer}},
		{"authorization header, http", "Authorization: Bearer abcdefgh12", nil, []string{KindBearer}},
		{"bearer anywhere", `msg="calling api" auth="bearer 0123456789abcdef0123"`, nil, []string{KindBearer}},
		{"known secret of no known shape", `level=INFO msg=started secret=hunter2hunter2`, []string{"hunter2hunter2"}, []string{KindKnown}},
		{"known secret twice on a line, and on another", "a hunter2hunter2 b hunter2hunter2\nc hunter2hunter2", []string{"hunter2hunter2"}, []string{KindKnown, KindKnown, KindKnown}},
		{"known jwt is reported once, as known", `token=` + jwt, []string{jwt}, []string{KindKnown}},
		{"a clean log", strings.Join([]string{
			`time=2026-12-07T15:00:00Z level=INFO msg=request request_id=3f2a9c0e8b7d4e5f9a1b2c3d4e5f6a7b method=POST path=/v1/signup status=202 duration=3ms`,
			`level=INFO msg="token refused" error="verify token: token signature is invalid: crypto/rsa: verification error"`,
			`WWW-Authenticate: Bearer realm="silo"`,
			`level=INFO msg="organization seeded" organization=o-abc123 management_account=123456789012 access_key_id=AKIAIOSFODNN7EXAMPLE`,
			`level=INFO msg="stack instance created" stack=arn:aws:cloudformation:us-east-1:123456789012:stack/StackSet-silo-tenant-0b1c/1234abcd-12ab-34cd-56ef-1234567890ab`,
			`level=DEBUG msg="tenant app trusts the local issuer" issuer=http://127.0.0.1:41234 key_id=abc`,
		}, "\n"), []string{"short"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			found := Scan(tc.logs, tc.known)
			var kinds []string
			for _, f := range found {
				kinds = append(kinds, f.Kind)
				for _, secret := range append([]string{jwt, statusToken, awsSecret, session, "opaque-token-value"}, tc.known...) {
					if len(secret) >= minKnown && strings.Contains(f.String(), secret) {
						t.Errorf("finding %s shows the secret", f)
					}
				}
			}
			if diff := cmp.Diff(tc.want, kinds); diff != "" {
				t.Errorf("kinds found (-want +got):\n%s\nfindings: %v", diff, found)
			}
		})
	}
}

func TestScanReportsLines(t *testing.T) {
	found := Scan("clean\nclean\nx "+statusToken+"\n", nil)
	if len(found) != 1 || found[0].Line != 3 {
		t.Errorf("findings %v, want one on line 3", found)
	}
}
