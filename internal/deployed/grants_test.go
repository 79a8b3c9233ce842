package deployed

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/cdk/controlplane"
	"github.com/silo-saas/silo/internal/grants"
	"github.com/silo-saas/silo/internal/sim"
	"github.com/silo-saas/silo/registry"
)

// noon is a quiet time to start a test's clock: far from the daily
// audit's 03:17.
var noon = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

// TestMissingGrantFailsTheCall takes grants out of the stack and shows
// that under the harness the calls they guard are refused, as AWS would
// refuse them: the prober's sweep, which needs dynamodb:Query on the
// registry, fails; the reconciler's daily audit, which reads the
// organization, fails; the API still takes a signup (its kick to the
// queue is best effort) but the message never reaches the queue.
func TestMissingGrantFailsTheCall(t *testing.T) {
	clock := NewClock(noon, 1)
	f := start(t, Options{Clock: clock, Edit: func(tpl *Template) error {
		for _, g := range []struct{ fn, action string }{
			{"silo-prober", "dynamodb:Query"},
			{"silo-reconciler", "organizations:ListRoots"},
			{"silo-api", "sqs:SendMessage"},
		} {
			if err := tpl.RemoveGrant(g.fn, g.action); err != nil {
				return err
			}
		}
		return nil
	}})
	h := f.h

	t.Run("the prober's sweep without dynamodb:Query", func(t *testing.T) {
		clock.Advance(time.Minute)
		wait(t, func() string { return "a scheduled prober invocation" }, func() bool {
			return len(invocations(h, "silo-prober", SourceSchedule, nil)) > 0
		})
		inv := invocations(h, "silo-prober", SourceSchedule, nil)[0]
		if !inv.Result.Failed() || !strings.Contains(inv.Result.Message, "AccessDenied") || !strings.Contains(inv.Result.Message, "dynamodb:Query") {
			t.Errorf("sweep %+v, want it refused dynamodb:Query", inv.Result)
		}
		if n := h.Denied("silo-prober")["DynamoDB.Query"]; n == 0 {
			t.Errorf("refusals of the prober %v, want DynamoDB.Query", h.Denied("silo-prober"))
		}
	})

	t.Run("the reconciler's audit without organizations:ListRoots", func(t *testing.T) {
		clock.Set(time.Date(2026, 1, 6, 3, 17, 0, 0, time.UTC))
		isAudit := func(inv Invocation) bool { return string(inv.Payload) == `{"task":"audit-isolation"}` }
		wait(t, func() string { return "the audit's invocation" }, func() bool {
			return len(invocations(h, "silo-reconciler", SourceSchedule, isAudit)) > 0
		})
		inv := invocations(h, "silo-reconciler", SourceSchedule, isAudit)[0]
		if !inv.Result.Failed() || !strings.Contains(inv.Result.Message, "organizations:ListRoots") {
			t.Errorf("audit %+v, want it refused organizations:ListRoots", inv.Result)
		}
		if n := h.Denied("silo-reconciler")["Organizations.ListRoots"]; n == 0 {
			t.Errorf("refusals of the reconciler %v, want Organizations.ListRoots", h.Denied("silo-reconciler"))
		}
	})

	t.Run("the API's kick without sqs:SendMessage", func(t *testing.T) {
		tenant := signup(t, h.FrontDoor("silo").StageURL("v1"), "Initech")
		wait(t, func() string { return fmt.Sprintf("the refused SendMessage (refusals %v)", h.Denied("silo-api")) }, func() bool {
			return h.Denied("silo-api")["SQS.SendMessage"] == 1
		})
		out, err := sqs.NewFromConfig(f.cfg).GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(h.EventSources()[0].QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Attributes["ApproximateNumberOfMessages"] != "0" || out.Attributes["ApproximateNumberOfMessagesNotVisible"] != "0" {
			t.Errorf("the queue holds %v, want nothing", out.Attributes)
		}
		if got := h.Stats().Queues[h.EventSources()[0].QueueARN].Received; got != 0 {
			t.Errorf("the reconciler received %d messages", got)
		}
		// The tenant was made all the same: the registry write is granted.
		if tn, err := registry.New(dynamodb.NewFromConfig(f.cfg), f.env(t, "silo-api", "SILO_REGISTRY_TABLE")).Get(t.Context(), tenant.TenantID); err != nil || tn.State != registry.StateRequested {
			t.Errorf("tenant %+v %v", tn, err)
		}
	})
}

// TestMissingPutEventsGrant: without events:PutEvents the prober still
// records a tenant's health, but the transition's event is refused and
// never reaches the bus. The grants check, held to the stack as created,
// names both ways the prober's role is wrong: the call without its
// grant, and a grant given beside it that nothing uses and no line of
// docs/security.md justifies.
func TestMissingPutEventsGrant(t *testing.T) {
	clock := NewClock(noon, 1)
	var queue string
	f := start(t, Options{Clock: clock, Edit: func(tpl *Template) error {
		for id, r := range tpl.Resources() {
			if r["Type"] == "AWS::SQS::Queue" && strings.HasPrefix(id, "ReconcileQueue") {
				queue = id
			}
		}
		if err := tpl.AddGrant("silo-prober", "sqs:PurgeQueue", map[string]any{"Fn::GetAtt": []any{queue, "Arn"}}); err != nil {
			return err
		}
		return tpl.RemoveGrant("silo-prober", "events:PutEvents")
	}})
	h := f.h
	fleet, err := sim.Start(t.Context(), sim.Options{Endpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	id := fleet.IDs()[0]
	reg := registry.New(dynamodb.NewFromConfig(f.cfg), f.env(t, "silo-prober", "SILO_REGISTRY_TABLE"))
	if err := reg.ImportTenants(t.Context(), []*registry.Tenant{{
		Spec:  registry.Spec{ID: id, Name: "Probed", Email: "ops@probed.example", Tier: registry.TierBasic, Region: f.org.Region},
		State: registry.StateActive, AccountID: "210987654321", Endpoint: fleet.Endpoint(id),
	}}); err != nil {
		t.Fatal(err)
	}
	tap := f.tap(t, f.env(t, "silo-prober", "SILO_EVENT_BUS"))
	clock.Advance(time.Minute)
	wait(t, func() string { return fmt.Sprintf("the refused PutEvents (refusals %v)", h.Denied("silo-prober")) }, func() bool {
		return h.Denied("silo-prober")["EventBridge.PutEvents"] > 0
	})
	wait(t, func() string { return "the sweep's end" }, func() bool {
		return len(invocations(h, "silo-prober", SourceSchedule, nil)) > 0
	})
	inv := invocations(h, "silo-prober", SourceSchedule, nil)[0]
	var st struct{ Targets, Up int }
	if err := json.Unmarshal(inv.Result.Payload, &st); err != nil || inv.Result.Failed() || st.Up != 1 {
		t.Errorf("sweep %+v %s, want the tenant found up", inv.Result, inv.Result.Payload)
	}
	tn, err := reg.Get(t.Context(), id)
	if err != nil || tn.Health == nil || tn.Health.Status != registry.HealthUp {
		t.Errorf("tenant health %+v %v, want up", tn, err)
	}
	if got := f.messages(t, tap); len(got) > 0 {
		t.Errorf("the bus carried %q without the grant", got)
	}

	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	justified, err := grants.ParseJustifications(doc)
	if err != nil {
		t.Fatal(err)
	}
	var granted []grants.Grant
	calls := map[string]map[grants.Access]int64{}
	for _, fn := range h.Functions() {
		g, err := h.Grants(fn)
		if err != nil {
			t.Fatal(err)
		}
		granted = append(granted, g...)
		calls[fn] = h.Accesses(fn)
	}
	var got []string
	for _, finding := range grants.Compare(granted, calls, justified) {
		switch {
		case finding.Function != "silo-prober":
		case finding.Kind == grants.Ungranted:
			got = append(got, "without a grant: "+finding.Access.String())
		case finding.Kind == grants.Unexercised:
			got = append(got, "unexercised: "+finding.Grant.Action+" on "+finding.Grant.Written)
		}
	}
	bus := "arn:aws:events:" + f.org.Region + ":" + f.org.ManagementAccountID + ":event-bus/" + controlplane.EventBusName
	want := []string{"without a grant: events:PutEvents on " + bus, "unexercised: sqs:PurgeQueue on ${" + queue + ".Arn}"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the grants check on the prober (-want +got):\n%s", diff)
	}
}

// journeys are the tests whose runs TestGrantsMatchCalls holds to the
// stack's grants: between them they must make every call the functions
// are granted, or docs/security.md must say why a grant stays unused. A
// test that drives the functions through start becomes a journey by being
// listed here; each records its calls into ledger when it passes. Keep
// journeys in files that sort before this one: Go runs a package's tests
// file by file, and TestGrantsMatchCalls runs any journey that has not
// run yet itself (so that -run TestGrantsMatchCalls alone compares
// everything), which would run a later one twice.
func journeys() map[string]func(*testing.T) {
	return map[string]func(*testing.T){
		"TestDeployedJourney":             TestDeployedJourney,
		"TestAuthorizationMatrixDeployed": TestAuthorizationMatrixDeployed,
	}
}

// ledger gathers the journeys' calls against the grants of the template
// as synthesized.
var ledger grants.Ledger

// record adds h's run to the ledger if t is a journey: whether it
// passed, every function's grants as synthesized and the calls of its
// role.
func record(t *testing.T, h *Harness) {
	name := strings.TrimPrefix(t.Name(), "TestGrantsMatchCalls/")
	if _, ok := journeys()[name]; !ok {
		return
	}
	var granted []grants.Grant
	calls := map[string]map[grants.Access]int64{}
	for _, fn := range h.Functions() {
		g, err := h.SynthesizedGrants(fn)
		if err != nil {
			t.Errorf("grants of %s: %v", fn, err)
			return
		}
		granted = append(granted, g...)
		if !strings.HasPrefix(h.Function(fn).Package, "./lambdas/") {
			t.Errorf("journey %s runs %s from %s, not its own code: its calls would not be the function's", name, fn, h.Function(fn).Package)
			return
		}
		calls[fn] = h.Accesses(fn)
	}
	ledger.Add(name, !t.Failed(), granted, calls)
}

// TestGrantsMatchCalls holds every function's calls over all the
// journeys to its execution role's grants in the control-plane stack as
// synthesized: a call no grant allows fails ("function X called Y without
// a grant", though IAM enforcement has already refused it), and so does a
// grant no journey exercised unless docs/security.md's table of grants no
// test exercises justifies it, and a line of that table that justifies
// nothing left unexercised. The grants table of docs/security.md must
// list exactly the stack's actions per function. Journeys that have not
// run (a -run that left them out) run here first. A journey that failed
// still has its calls without a grant named, but then no grant is judged
// unexercised (it may have stopped before the calls that use them).
func TestGrantsMatchCalls(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	justified, err := grants.ParseJustifications(doc)
	if err != nil {
		t.Fatalf("docs/security.md: %v", err)
	}
	documented, err := grants.ParseDocumented(doc)
	if err != nil {
		t.Fatalf("docs/security.md: %v", err)
	}
	names := slices.Sorted(maps.Keys(journeys()))
	for _, name := range names {
		if !ledger.Ran(name) {
			t.Run(name, journeys()[name])
		}
	}
	t.Logf("calls of journeys %v", ledger.Journeys())
	findings := ledger.Findings(justified)
	for _, f := range findings {
		if f.Kind == grants.Ungranted {
			t.Error(f)
		}
	}
	for _, name := range names {
		if !ledger.Ran(name) {
			t.Fatalf("journey %s did not run", name)
		}
	}
	if failed := ledger.Failed(); len(failed) > 0 {
		t.Fatalf("journeys %v failed: unexercised grants are judged only when every journey passes", failed)
	}
	for _, f := range findings {
		if f.Kind != grants.Ungranted {
			t.Error(f)
		}
	}

	type pair struct{ fn, action string }
	granted := map[pair]bool{}
	functions := map[string]bool{}
	for _, g := range ledger.Grants() {
		granted[pair{g.Function, g.Action}] = true
		functions[g.Function] = true
	}
	listed := map[pair]int{}
	for _, d := range documented {
		fns := []string{d.Function}
		if d.Function == grants.AnyFunction {
			fns = slices.Sorted(maps.Keys(functions))
		}
		for _, fn := range fns {
			for _, a := range d.Actions {
				// An action may be on two rows: on the table and on
				// its indexes.
				p := pair{fn, a}
				listed[p] = d.Line
				if !granted[p] {
					t.Errorf("docs/security.md line %d lists %s's %s, which the stack does not grant", d.Line, fn, a)
				}
			}
		}
	}
	for _, p := range slices.SortedFunc(maps.Keys(granted), func(a, b pair) int { return strings.Compare(a.fn+a.action, b.fn+b.action) }) {
		if _, ok := listed[p]; !ok {
			t.Errorf("the stack grants %s %s, which the grants table of docs/security.md does not list", p.fn, p.action)
		}
	}
}
