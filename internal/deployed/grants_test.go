package deployed

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

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
// never reaches the bus.
func TestMissingPutEventsGrant(t *testing.T) {
	clock := NewClock(noon, 1)
	f := start(t, Options{Clock: clock, Edit: func(tpl *Template) error { return tpl.RemoveGrant("silo-prober", "events:PutEvents") }})
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
}
