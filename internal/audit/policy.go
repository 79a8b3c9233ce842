package audit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// document is an IAM policy document as the audit reads it. IAM lets most
// elements be a string or a list; strs takes both.
type document struct {
	Statement statements `json:"Statement"`
}

type statements []statement

// UnmarshalJSON takes a single statement as well as a list.
func (s *statements) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var one statement
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = statements{one}
		return nil
	}
	var many []statement
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type statement struct {
	Sid          string                     `json:"Sid"`
	Effect       string                     `json:"Effect"`
	Principal    principal                  `json:"Principal"`
	NotPrincipal *principal                 `json:"NotPrincipal"`
	Action       strs                       `json:"Action"`
	NotAction    strs                       `json:"NotAction"`
	Resource     strs                       `json:"Resource"`
	NotResource  strs                       `json:"NotResource"`
	Condition    map[string]map[string]strs `json:"Condition"`
}

// strs is a string or a list of strings.
type strs []string

// UnmarshalJSON takes a string as well as a list.
func (s *strs) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = strs{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// principal is a statement's Principal: "*" or a map of kind (AWS,
// Service, Federated, CanonicalUser) to values.
type principal struct {
	Any   bool
	Kinds map[string]strs
}

// UnmarshalJSON takes "*" as well as the map form.
func (p *principal) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p.Any = s == "*"
		if !p.Any {
			p.Kinds = map[string]strs{"AWS": {s}}
		}
		return nil
	}
	return json.Unmarshal(b, &p.Kinds)
}

// parseDocument reads a policy document, which IAM returns URL-encoded.
func parseDocument(raw string) (document, error) {
	if strings.HasPrefix(raw, "%") {
		if dec, err := url.QueryUnescape(raw); err == nil {
			raw = dec
		}
	}
	var d document
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return document{}, fmt.Errorf("parse policy document: %w", err)
	}
	return d, nil
}

// scope is what "inside the tenant's account" means for its policies.
type scope struct {
	account        string
	organizationID string
}

// ownPrincipal reports whether an AWS principal (an account id, an IAM or
// STS ARN) belongs to the account.
func (s scope) ownPrincipal(p string) bool {
	if p == s.account {
		return true
	}
	parts := strings.SplitN(p, ":", 6)
	return len(parts) == 6 && parts[0] == "arn" && (parts[2] == "iam" || parts[2] == "sts") && parts[4] == s.account
}

// conditionNamesOwn reports whether a statement's condition pins the caller
// or source to the account (aws:SourceAccount, aws:PrincipalAccount,
// aws:SourceOwner, or aws:SourceArn/PrincipalArn in the account).
func (s scope) conditionNamesOwn(st statement) bool {
	for op, keys := range st.Condition {
		if strings.HasPrefix(op, "ForAnyValue") || strings.Contains(op, "Not") {
			continue
		}
		for key, vals := range keys {
			if len(vals) == 0 {
				continue
			}
			own := true
			for _, v := range vals {
				switch strings.ToLower(key) {
				case "aws:sourceaccount", "aws:principalaccount", "aws:sourceowner":
					own = own && v == s.account
				case "aws:sourcearn", "aws:principalarn":
					parts := strings.SplitN(v, ":", 6)
					own = own && len(parts) == 6 && parts[4] == s.account
				default:
					own = false
				}
			}
			if own {
				return true
			}
		}
	}
	return false
}

// orgScopedRead reports whether a statement is the one exception the
// audit allows: read-only actions conditioned on the organization
// (aws:PrincipalOrgID equal to silo's organization).
func (s scope) orgScopedRead(st statement) bool {
	if s.organizationID == "" || len(st.Action) == 0 || len(st.NotAction) > 0 {
		return false
	}
	for _, a := range st.Action {
		verb := a[strings.Index(a, ":")+1:]
		if !strings.HasPrefix(verb, "Get") && !strings.HasPrefix(verb, "List") && !strings.HasPrefix(verb, "Describe") {
			return false
		}
	}
	for op, keys := range st.Condition {
		if op != "StringEquals" {
			continue
		}
		for key, vals := range keys {
			if strings.EqualFold(key, "aws:PrincipalOrgID") && len(vals) > 0 && !slices.ContainsFunc(vals, func(v string) bool { return v != s.organizationID }) {
				return true
			}
		}
	}
	return false
}

// foreignGrants returns, for each Allow statement of d that grants
// something to a principal outside the account, what it grants to whom.
// Deny statements only take away, and a principal of an AWS service
// (Service) acts for the account that configured it unless a condition
// names another account.
func (s scope) foreignGrants(d document) []string {
	var out []string
	for i, st := range d.Statement {
		if !strings.EqualFold(st.Effect, "Allow") {
			continue
		}
		name := st.Sid
		if name == "" {
			name = fmt.Sprintf("statement %d", i)
		}
		if st.NotPrincipal != nil {
			out = append(out, name+": NotPrincipal grants to everyone not listed")
			continue
		}
		var foreign []string
		if st.Principal.Any {
			foreign = append(foreign, "*")
		}
		kinds := make([]string, 0, len(st.Principal.Kinds))
		for k := range st.Principal.Kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, kind := range kinds {
			for _, p := range st.Principal.Kinds[kind] {
				switch {
				case kind == "Service":
				case kind == "AWS" && s.ownPrincipal(p):
				default:
					foreign = append(foreign, kind+":"+p)
				}
			}
		}
		if len(foreign) == 0 || s.conditionNamesOwn(st) || s.orgScopedRead(st) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: allows %s to %s", name, strings.Join(foreign, ", "), strings.Join(st.Action, ", ")))
	}
	return out
}
