// Package grants holds what an execution role is granted against what its
// code calls. A call is recorded as the IAM authorizations AWS checks for
// it (Access: an action on a resource; the emulator's proxy records them
// per caller, internal/emulator), a role's policy as the actions it
// allows on resources (Grant; the deployed-mode harness reads them from
// the control-plane template, internal/deployed), and Compare finds both
// ways they disagree: a call no grant allows, and a grant no call used
// that nobody justified (docs/security.md's table of justifications,
// ParseJustifications).
//
// The matching is IAM's for identity policies with Allow statements
// only: actions compare case-insensitively, resources case-sensitively,
// and in both `*` matches any run of characters and `?` any one. Deny,
// NotAction, NotResource and conditions are not evaluated; the harness
// refuses a policy that uses them rather than misjudge it.
package grants

import (
	"fmt"
	"strings"
)

// Access is one authorization AWS checks for a request: an IAM action on
// a resource. A request may need several (a DynamoDB transaction needs its
// items' actions on their tables; an S3 copy reads its source and writes
// its target), or none (sts:GetCallerIdentity).
type Access struct {
	// Action is the IAM action, "dynamodb:PutItem".
	Action string
	// Resource is the ARN the action is on, or "" when the request names
	// no resource the recorder can tell (Organizations reads, Cost
	// Explorer: their grants are on "*"). A resource the request named by
	// name in the caller's own account has an empty account field
	// (arn:aws:events:us-east-1::event-bus/silo-events); InAccount fills
	// it. Parts of an ARN the request does not name are written "*" (a
	// stack set's id: arn:aws:cloudformation:us-east-1::stackset/NAME:*).
	Resource string
}

func (a Access) String() string {
	if a.Resource == "" {
		return a.Action
	}
	return a.Action + " on " + a.Resource
}

// InAccount returns a with account in its resource ARN's account field
// when the request left it empty (the caller's own account). S3 and
// Route 53 ARNs name no account and are left as they are.
func (a Access) InAccount(account string) Access {
	parts := strings.SplitN(a.Resource, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" || parts[4] != "" {
		return a
	}
	switch parts[2] {
	case "s3", "route53":
		return a
	}
	parts[4] = account
	a.Resource = strings.Join(parts, ":")
	return a
}

// Grant is one action pattern an identity policy allows on one resource
// pattern: a statement with two actions on three resources is six grants.
type Grant struct {
	// Function is the function whose execution role holds the grant.
	Function string
	// Action is the action as the statement writes it, wildcards
	// included ("s3:GetObject*").
	Action string
	// Resource is the resource pattern with the template's intrinsic
	// functions resolved against the created stack
	// ("arn:aws:dynamodb:us-east-1:123456789012:table/silo-registry/index/*").
	Resource string
	// Written is the resource as the template writes it, its
	// references shown as ${LogicalId}, ${LogicalId.Arn} and
	// ${AWS::Region}: the same in every stack made from the template,
	// where Resource differs by the names CloudFormation generates.
	Written string
	// Where names the statement: the policy's logical id and the
	// statement's Sid, or its position when it has none.
	Where string
}

// Key identifies a grant across stacks made from one template.
func (g Grant) Key() string {
	return g.Function + "|" + g.Where + "|" + g.Action + "|" + g.Written
}

func (g Grant) String() string {
	return fmt.Sprintf("%s on %s (%s)", g.Action, g.Written, g.Where)
}

// Allows reports whether g allows a: the action matches and the resource
// does, an access with no resource ("") matching any.
func (g Grant) Allows(a Access) bool {
	if !Match(strings.ToLower(g.Action), strings.ToLower(a.Action)) {
		return false
	}
	return a.Resource == "" || Match(g.Resource, a.Resource)
}

// Match reports whether s matches pattern, where `*` matches any run of
// characters (colons and slashes too, as in IAM) and `?` any one.
func Match(pattern, s string) bool {
	// Iterative glob with backtracking to the last star: linear enough
	// for ARNs.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Kind is what a Finding says.
type Kind string

const (
	// Ungranted: a function called an action no grant of its role allows.
	Ungranted Kind = "ungranted"
	// Unexercised: a grant no recorded call used, and no justification.
	Unexercised Kind = "unexercised"
	// Stale: a justification for a grant that is exercised or does not
	// exist; it would hide the next unexercised grant of that action.
	Stale Kind = "stale"
)

// Finding is one way grants and calls disagree.
type Finding struct {
	Kind     Kind
	Function string
	// Access and Calls: the call (Ungranted).
	Access Access
	Calls  int64
	// Grant: the grant (Unexercised).
	Grant Grant
	// Justification: the line (Stale).
	Justification Justification
}

func (f Finding) String() string {
	switch f.Kind {
	case Ungranted:
		return fmt.Sprintf("function %s called %s without a grant (%d calls)", f.Function, f.Access, f.Calls)
	case Unexercised:
		return fmt.Sprintf("function %s is granted %s, which no test exercised; take it away, add a journey that needs it, or justify it in the table %q", f.Function, f.Grant, JustificationsHeading)
	default:
		j := f.Justification
		return fmt.Sprintf("line %d justifies %s's %s, but no grant of that action is left unexercised: remove the line", j.Line, j.Function, j.Action)
	}
}

// Compare holds the calls of one run to the grants it ran under: see
// Ledger.Findings.
func Compare(granted []Grant, calls map[string]map[Access]int64, justified []Justification) []Finding {
	var l Ledger
	l.Add("", true, granted, calls)
	return l.Findings(justified)
}
