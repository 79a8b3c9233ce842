package audit

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestForeignGrants(t *testing.T) {
	sc := scope{account: "111111111111", organizationID: "o-silo"}
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"no statements", `{"Statement":[]}`, nil},
		{"own account root", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"kms:*","Resource":"*"}]}`, nil},
		{"own account id and role", `{"Statement":{"Effect":"Allow","Principal":{"AWS":["111111111111","arn:aws:iam::111111111111:role/app"]},"Action":"s3:GetObject"}}`, nil},
		{"service principal", `{"Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`, nil},
		{"deny to everyone", `{"Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":"s3:*","Resource":"*"}]}`, nil},
		{"another account", `{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"s3:GetObject","Resource":"*"}]}`,
			[]string{"Open: allows AWS:arn:aws:iam::222222222222:root to s3:GetObject"}},
		{"everyone", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":"*"}]}`,
			[]string{"statement 0: allows * to s3:GetObject"}},
		{"everyone, pinned to the account", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"111111111111"}}}]}`, nil},
		{"organization read", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject","s3:ListBucket"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-silo"}}}]}`, nil},
		{"organization write", `{"Statement":[{"Sid":"W","Effect":"Allow","Principal":"*","Action":["s3:PutObject"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-silo"}}}]}`,
			[]string{"W: allows * to s3:PutObject"}},
		{"another organization", `{"Statement":[{"Sid":"O","Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-other"}}}]}`,
			[]string{"O: allows * to s3:GetObject"}},
		{"not principal", `{"Statement":[{"Sid":"N","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"s3:GetObject"}]}`,
			[]string{"N: NotPrincipal grants to everyone not listed"}},
		{"url-encoded trust policy", `%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22333333333333%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D`,
			[]string{"statement 0: allows AWS:333333333333 to sts:AssumeRole"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := parseDocument(c.doc)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, sc.foreignGrants(d)); diff != "" {
				t.Errorf("foreignGrants (-want +got):\n%s", diff)
			}
		})
	}
}
