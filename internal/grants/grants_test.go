package grants

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"dynamodb:Query", "dynamodb:Query", true},
		{"dynamodb:Query", "dynamodb:QueryX", false},
		{"s3:GetObject*", "s3:GetObject", true},
		{"s3:GetObject*", "s3:GetObjectVersion", true},
		{"s3:GetObject*", "s3:PutObject", false},
		{"*", "", true},
		{"*", "anything:at/all", true},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b/c", true},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", false},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket-other/x", false},
		{"arn:aws:iam::*:role/Member", "arn:aws:iam::123456789012:role/Member", true},
		{"arn:aws:iam::*:role/Member", "arn:aws:iam::123456789012:role/MemberX", false},
		{"arn:aws:secretsmanager:r:1:secret:key-??????", "arn:aws:secretsmanager:r:1:secret:key-AbC123", true},
		{"arn:aws:secretsmanager:r:1:secret:key-??????", "arn:aws:secretsmanager:r:1:secret:key-AbC12", false},
		{"a*b*c", "aXXbYYbZZc", true},
		{"a*b*c", "aXXbYYbZZ", false},
		{"stackset/set:*", "stackset/set:*", true},
		{"stackset/set:abc", "stackset/set:*", false},
	} {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestAllows(t *testing.T) {
	table := "arn:aws:dynamodb:us-east-1:1:table/reg"
	g := Grant{Function: "f", Action: "dynamodb:Query", Resource: table + "/index/*"}
	for _, c := range []struct {
		name string
		a    Access
		want bool
	}{
		{"its index", Access{"dynamodb:Query", table + "/index/by-state"}, true},
		{"the action in another case", Access{"DynamoDB:query", table + "/index/by-state"}, true},
		{"the table itself", Access{"dynamodb:Query", table}, false},
		{"another action", Access{"dynamodb:Scan", table + "/index/by-state"}, false},
		{"no resource told", Access{"dynamodb:Query", ""}, true},
	} {
		if got := g.Allows(c.a); got != c.want {
			t.Errorf("%s: Allows(%v) = %v, want %v", c.name, c.a, got, c.want)
		}
	}
}

func TestInAccount(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"arn:aws:events:us-east-1::event-bus/silo-events", "arn:aws:events:us-east-1:123:event-bus/silo-events"},
		{"arn:aws:dynamodb:us-east-1:999:table/t", "arn:aws:dynamodb:us-east-1:999:table/t"},
		{"arn:aws:s3:::bucket/key", "arn:aws:s3:::bucket/key"},
		{"arn:aws:route53:::hostedzone/Z1", "arn:aws:route53:::hostedzone/Z1"},
		{"arn:aws:iam:::role/r", "arn:aws:iam::123:role/r"},
		{"", ""},
	} {
		if got := (Access{Action: "x:Y", Resource: c.in}).InAccount("123").Resource; got != c.want {
			t.Errorf("InAccount(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// kinds lists findings as "kind function: what" lines for cmp.Diff.
func kinds(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		what := f.Access.String()
		switch f.Kind {
		case Unexercised:
			what = f.Grant.Action + " on " + f.Grant.Written
		case Stale:
			what = f.Justification.Action
		}
		out = append(out, string(f.Kind)+" "+f.Function+": "+what)
	}
	return out
}

func TestCompare(t *testing.T) {
	table, queue := "arn:aws:dynamodb:r:1:table/reg", "arn:aws:sqs:r:1:work"
	granted := []Grant{
		{Function: "api", Action: "dynamodb:GetItem", Resource: table, Written: "${Reg.Arn}", Where: "P/0"},
		{Function: "api", Action: "dynamodb:Query", Resource: table, Written: "${Reg.Arn}", Where: "P/0"},
		{Function: "api", Action: "dynamodb:Query", Resource: table + "/index/*", Written: "${Reg.Arn}/index/*", Where: "P/0"},
		{Function: "api", Action: "sqs:SendMessage", Resource: queue, Written: "${Q.Arn}", Where: "P/1"},
		{Function: "api", Action: "logs:PutLogEvents", Resource: "*", Written: "*", Where: "P/2"},
		{Function: "prober", Action: "logs:PutLogEvents", Resource: "*", Written: "*", Where: "Q/0"},
		{Function: "prober", Action: "events:PutEvents", Resource: "arn:aws:events:r:1:event-bus/b", Written: "${Bus.Arn}", Where: "Q/1"},
	}
	calls := map[string]map[Access]int64{
		"api": {
			{"dynamodb:GetItem", table}:                      3,
			{"dynamodb:Query", table + "/index/by-state"}:    2,
			{"dynamodb:PutItem", table}:                      1, // no grant
			{"sqs:SendMessage", "arn:aws:sqs:r:1:elsewhere"}: 1, // another queue
		},
		"prober":  {{"events:PutEvents", "arn:aws:events:r:1:event-bus/b"}: 1},
		"console": {{"ce:GetCostAndUsage", ""}: 1}, // a function with no grants at all
	}
	cases := []struct {
		name      string
		justified []Justification
		want      []string
	}{
		{"nothing justified", nil, []string{
			"ungranted api: dynamodb:PutItem on " + table,
			"ungranted api: sqs:SendMessage on arn:aws:sqs:r:1:elsewhere",
			"ungranted console: ce:GetCostAndUsage",
			"unexercised api: dynamodb:Query on ${Reg.Arn}",
			"unexercised api: logs:PutLogEvents on *",
			"unexercised api: sqs:SendMessage on ${Q.Arn}",
			"unexercised prober: logs:PutLogEvents on *",
		}},
		{"justified per function and for every function", []Justification{
			{Function: "api", Action: "dynamodb:Query", Why: "by id", Line: 1},
			{Function: "api", Action: "sqs:SendMessage", Why: "kicks", Line: 2},
			{Function: AnyFunction, Action: "logs:PutLogEvents", Why: "Lambda writes logs", Line: 3},
		}, []string{
			"ungranted api: dynamodb:PutItem on " + table,
			"ungranted api: sqs:SendMessage on arn:aws:sqs:r:1:elsewhere",
			"ungranted console: ce:GetCostAndUsage",
		}},
		{"a justification of an exercised or missing grant is stale", []Justification{
			{Function: "api", Action: "dynamodb:GetItem", Why: "exercised", Line: 1},
			{Function: "prober", Action: "dynamodb:GetItem", Why: "not granted", Line: 2},
			{Function: "api", Action: "dynamodb:Query", Why: "the table", Line: 3},
			{Function: "api", Action: "sqs:SendMessage", Why: "kicks", Line: 4},
			{Function: AnyFunction, Action: "logs:PutLogEvents", Why: "logs", Line: 5},
		}, []string{
			"ungranted api: dynamodb:PutItem on " + table,
			"ungranted api: sqs:SendMessage on arn:aws:sqs:r:1:elsewhere",
			"ungranted console: ce:GetCostAndUsage",
			"stale api: dynamodb:GetItem",
			"stale prober: dynamodb:GetItem",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, kinds(Compare(granted, calls, c.justified))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLedgerAcrossStacks: two runs in stacks whose generated names
// differ use the same template's grants; the ledger tells them apart by
// how the template writes them, so a grant used in either run is used.
// The second run failed: its calls count, and Failed says so.
func TestLedgerAcrossStacks(t *testing.T) {
	run := func(queue string) []Grant {
		return []Grant{
			{Function: "api", Action: "sqs:SendMessage", Resource: queue, Written: "${Q.Arn}", Where: "P/0"},
			{Function: "api", Action: "sqs:GetQueueUrl", Resource: queue, Written: "${Q.Arn}", Where: "P/0"},
			{Function: "reconciler", Action: "sqs:ReceiveMessage", Resource: queue, Written: "${Q.Arn}", Where: "R/0"},
		}
	}
	var l Ledger
	l.Add("first", true, run("arn:aws:sqs:r:1:stack-Q-AAAA"), map[string]map[Access]int64{
		"api": {{"sqs:SendMessage", "arn:aws:sqs:r:1:stack-Q-AAAA"}: 1},
	})
	l.Add("second", false, run("arn:aws:sqs:r:1:stack-Q-BBBB"), map[string]map[Access]int64{
		"reconciler": {{"sqs:ReceiveMessage", "arn:aws:sqs:r:1:stack-Q-BBBB"}: 4},
		// The first stack's queue is not this run's: no grant here.
		"api": {{"sqs:SendMessage", "arn:aws:sqs:r:1:stack-Q-AAAA"}: 2},
	})
	want := []string{"ungranted api: sqs:SendMessage on arn:aws:sqs:r:1:stack-Q-AAAA", "unexercised api: sqs:GetQueueUrl on ${Q.Arn}"}
	if diff := cmp.Diff(want, kinds(l.Findings(nil))); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	var keys []string
	for _, g := range l.Grants() {
		keys = append(keys, g.Key())
	}
	if diff := cmp.Diff([]string{"api|P/0|sqs:GetQueueUrl|${Q.Arn}", "api|P/0|sqs:SendMessage|${Q.Arn}", "reconciler|R/0|sqs:ReceiveMessage|${Q.Arn}"}, keys); diff != "" {
		t.Errorf("grants (-want +got):\n%s", diff)
	}
	if !l.Ran("first") || !l.Ran("second") || l.Ran("third") || !cmp.Equal(l.Journeys(), []string{"first", "second"}) || !cmp.Equal(l.Failed(), []string{"second"}) {
		t.Errorf("journeys %v, failed %v", l.Journeys(), l.Failed())
	}
}

func TestFindingsSay(t *testing.T) {
	for _, c := range []struct {
		f    Finding
		want string
	}{
		{Finding{Kind: Ungranted, Function: "silo-api", Access: Access{"sqs:SendMessage", "arn:aws:sqs:r:1:q"}, Calls: 3},
			"function silo-api called sqs:SendMessage on arn:aws:sqs:r:1:q without a grant (3 calls)"},
		{Finding{Kind: Unexercised, Function: "silo-api", Grant: Grant{Action: "sqs:GetQueueUrl", Written: "${Q.Arn}", Where: "Policy/2"}},
			`function silo-api is granted sqs:GetQueueUrl on ${Q.Arn} (Policy/2), which no test exercised; take it away, add a journey that needs it, or justify it in the table "Grants no test exercises"`},
		{Finding{Kind: Stale, Function: "*", Justification: Justification{Function: "*", Action: "logs:PutLogEvents", Line: 12}},
			"line 12 justifies *'s logs:PutLogEvents, but no grant of that action is left unexercised: remove the line"},
	} {
		if got := c.f.String(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

const doc = `# security

## Grants of the control-plane functions

| function | actions | on | why |
|---|---|---|---|
| ` + "`silo-api`" + ` | ` + "`dynamodb:GetItem`, `dynamodb:Query`" + ` | the registry | reads tenants |
| silo-prober | events:PutEvents | the bus | health events |
| * | logs:PutLogEvents | its own log group | Lambda writes its log |

## Grants no test exercises

Some words first.

| function | action | why it is granted though no test calls it |
|---|---|---|
| ` + "`silo-reconciler`" + ` | ` + "`dynamodb:PutItem`" + ` | issue 18: the reconciler creates tenants' items |
| * | logs:PutLogEvents | Lambda writes each function's log with its role |

## Next
| function | action | why it is granted though no test calls it |
|---|---|---|
| nobody | x:Y | not read |
`

func TestParse(t *testing.T) {
	js, err := ParseJustifications([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wantJ := []Justification{
		{Function: "silo-reconciler", Action: "dynamodb:PutItem", Why: "issue 18: the reconciler creates tenants' items", Line: 17},
		{Function: "*", Action: "logs:PutLogEvents", Why: "Lambda writes each function's log with its role", Line: 18},
	}
	if diff := cmp.Diff(wantJ, js); diff != "" {
		t.Errorf("justifications (-want +got):\n%s", diff)
	}
	ds, err := ParseDocumented([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wantD := []Documented{
		{Function: "silo-api", Actions: []string{"dynamodb:GetItem", "dynamodb:Query"}, On: "the registry", Why: "reads tenants", Line: 7},
		{Function: "silo-prober", Actions: []string{"events:PutEvents"}, On: "the bus", Why: "health events", Line: 8},
		{Function: "*", Actions: []string{"logs:PutLogEvents"}, On: "its own log group", Why: "Lambda writes its log", Line: 9},
	}
	if diff := cmp.Diff(wantD, ds); diff != "" {
		t.Errorf("documented grants (-want +got):\n%s", diff)
	}
}

func TestParseRefuses(t *testing.T) {
	table := func(rows ...string) string {
		return "## Grants no test exercises\n\n| function | action | why it is granted though no test calls it |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	}
	for _, c := range []struct{ name, doc, want string }{
		{"no table", "## Grants no test exercises\n\nnothing\n", "no table under"},
		{"no heading", "| function | action | why it is granted though no test calls it |\n", "no table under"},
		{"other columns", "## Grants no test exercises\n| function | action | why |\n", "must have the columns"},
		{"a missing cell", table("| silo-api | sqs:SendMessage |"), "2 cells, the header has 3"},
		{"no reason", table("| silo-api | sqs:SendMessage | |"), "says no reason"},
		{"not an action", table("| silo-api | SendMessage | kicks |"), "not an IAM action"},
		{"not a function", table("| silo api | sqs:SendMessage | kicks |"), "neither a function's name"},
		{"twice", table("| silo-api | sqs:SendMessage | kicks |", "| silo-api | sqs:SendMessage | again |"), "justified already on line 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJustifications([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
	t.Run("a documented row without an action", func(t *testing.T) {
		_, err := ParseDocumented([]byte("## Grants of the control-plane functions\n| function | actions | on | why |\n|---|---|---|---|\n| silo-api | , | x | y |\n"))
		if err == nil || !strings.Contains(err.Error(), "not an IAM action") {
			t.Errorf("got %v", err)
		}
	})
}
