package deployed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/sim"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// fixture is a harness on the package's emulator, with an operator token
// issuer whose key the stack trusts, and the management account's
// configuration for looking at what the functions did.
type fixture struct {
	h   *Harness
	iss *issuer.Issuer
	org *emulator.Org
	cfg aws.Config
}

// start resets the emulator and starts a harness on it, with o's fields
// where set. The functions' logs are printed if the test fails.
func start(t *testing.T, o Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	iss, err := issuer.New("https://operators.silo.test", issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	key, err := iss.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	o.Emulator, o.Org = emu, org
	o.Parameters = map[string]string{"OperatorIssuer": iss.URL(), "OperatorPublicKey": key, "AllowedRegions": strings.Join(awsx.Regions(), ",")}
	if testing.Verbose() {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	h, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			printLogs(t, h)
		}
		record(t, h)
		h.Close()
	})
	t.Logf("harness started in %s (build %s, synth %s, deploy %s, functions %s)", h.Timings.Total.Round(time.Millisecond),
		h.Timings.Build.Round(time.Millisecond), h.Timings.Synth.Round(time.Millisecond), h.Timings.Deploy.Round(time.Millisecond), h.Timings.Functions.Round(time.Millisecond))
	cfg, err := org.Config(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, iss: iss, org: org, cfg: cfg}
}

func printLogs(t *testing.T, h *Harness) {
	for _, name := range h.Functions() {
		b, _ := os.ReadFile(h.Function(name).LogFile())
		t.Logf("log of %s:\n%s", name, tail(b, 6000))
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// wait polls cond until it holds, failing the test with what() after a
// minute (the emulator and the functions share two cores with other test
// packages).
func wait(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// invocations returns the harness's invocations of fn from source that
// match.
func invocations(h *Harness, fn string, source Source, match func(Invocation) bool) []Invocation {
	var out []Invocation
	for _, inv := range h.Invocations() {
		if inv.Function == fn && inv.Source == source && (match == nil || match(inv)) {
			out = append(out, inv)
		}
	}
	return out
}

// env is a variable of a function's configuration.
func (f *fixture) env(t *testing.T, fn, key string) string {
	t.Helper()
	v := f.h.Function(fn).Config.Environment[key]
	if v == "" {
		t.Fatalf("function %s has no %s", fn, key)
	}
	return v
}

// tap subscribes a new queue to every silo event on the bus and returns
// its URL.
func (f *fixture) tap(t *testing.T, bus string) string {
	t.Helper()
	ctx := t.Context()
	q := sqs.NewFromConfig(f.cfg)
	created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("tap")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: created.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	eb := eventbridge.NewFromConfig(f.cfg)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("tap"), EventBusName: aws.String(bus),
		EventPattern: aws.String(`{"source":["` + vending.EventSource + `"]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("tap"), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes["QueueArn"])}}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(created.QueueUrl)
}

// messages reads what a queue holds now (a long poll of a second).
func (f *fixture) messages(t *testing.T, url string) []string {
	t.Helper()
	out, err := sqs.NewFromConfig(f.cfg).ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies
}

// memberAccount creates a member account in the organization, in the
// Tenants/Production OU, as vending leaves a tenant's account.
func (f *fixture) memberAccount(t *testing.T, name string) string {
	t.Helper()
	id, err := f.org.NewAccount(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := organizations.NewFromConfig(f.cfg).MoveAccount(t.Context(), &organizations.MoveAccountInput{AccountId: aws.String(id),
		SourceParentId: aws.String(f.org.RootID), DestinationParentId: aws.String(f.org.OUs[emulator.OUProduction])}); err != nil {
		t.Fatal(err)
	}
	return id
}

// applyGuardrails attaches silo's guardrail SCPs for the stack's allowed
// regions, as `silo guardrails apply` does after the stack is deployed.
func (f *fixture) applyGuardrails(t *testing.T) {
	t.Helper()
	policies, err := guardrails.Policies(guardrails.Options{AllowedRegions: awsx.Regions()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guardrails.New(organizations.NewFromConfig(f.cfg), slog.New(slog.NewTextHandler(io.Discard, nil))).Apply(t.Context(), policies, f.org.OUs); err != nil {
		t.Fatal(err)
	}
}

// signup signs a tenant up through the API's front door.
func signup(t *testing.T, apiURL, name string) api.SignupResponse {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"email":"ops@%s.example","tier":"standard","region":"us-east-1"}`, name, strings.ToLower(strings.ReplaceAll(name, " ", "")))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, apiURL+"/v1/signup", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.IdempotencyKeyHeader, api.NewIdempotencyKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("signup %s: %d %s", name, resp.StatusCode, b)
	}
	var out api.SignupResponse
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeployedJourney runs the control plane as deployed, through the
// real function binaries, under IAM enforcement, on a clock the test
// steps: a signup through the API's front door is queued and the
// reconciler is invoked with that batch (and, since it does not reconcile
// yet, fails it until SQS moves the message to the dead-letter queue); the
// prober sweeps on its schedule and records what it finds; the daily audit
// runs on its rule over an active tenant whose account is a member in
// its OU, with the guardrails applied; the console logs in and renders
// every page. It is one of the journeys TestGrantsMatchCalls holds the
// stack's grants to.
func TestDeployedJourney(t *testing.T) {
	clock := NewClock(time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC), 1) // a quiet noon, far from the audit's 03:17
	f := start(t, Options{Clock: clock})
	h := f.h
	apiURL := h.FrontDoor("silo").StageURL("v1")
	queueURL := f.env(t, "silo-api", "SILO_RECONCILE_QUEUE")
	table := f.env(t, "silo-api", "SILO_REGISTRY_TABLE")
	reg := registry.New(dynamodb.NewFromConfig(f.cfg), table)
	sources := h.EventSources()
	want := []EventSource{{Function: "silo-reconciler", MaxReceiveCount: 5, BatchSize: 10, ReportBatchItemFailures: true, VisibilityTimeout: 30 * time.Minute}}
	if diff := cmp.Diff(want, sources, cmpopts.IgnoreFields(EventSource{}, "UUID", "QueueARN", "QueueURL", "DeadLetterURL")); diff != "" {
		t.Fatalf("event sources (-want +got):\n%s", diff)
	}
	// The function's variable is the queue's URL as CloudFormation makes it
	// (sqs.REGION.amazonaws.com); the queue is the same.
	if path.Base(sources[0].QueueURL) != path.Base(queueURL) {
		t.Fatalf("the event source reads %s, the API sends to %s", sources[0].QueueURL, queueURL)
	}
	queueARN, dlq := sources[0].QueueARN, sources[0].DeadLetterURL

	var tenant api.SignupResponse
	t.Run("a signup is queued and the reconciler gets the batch", func(t *testing.T) {
		tenant = signup(t, apiURL, "Acme Corp")
		failedSQS := func(receives int) []Invocation {
			return invocations(h, "silo-reconciler", SourceSQS, func(inv Invocation) bool {
				var ev events.SQSEvent
				return json.Unmarshal(inv.Payload, &ev) == nil && len(ev.Records) == 1 && ev.Records[0].Body == tenant.TenantID &&
					ev.Records[0].Attributes["ApproximateReceiveCount"] == strconv.Itoa(receives)
			})
		}
		for receive := 1; receive <= 5; receive++ {
			if receive > 1 {
				clock.Advance(31 * time.Minute) // past the queue's 30-minute visibility timeout
			}
			wait(t, func() string {
				return fmt.Sprintf("receive %d of the signup's message: %+v", receive, h.Stats().Queues)
			},
				func() bool { return len(failedSQS(receive)) == 1 })
			inv := failedSQS(receive)[0]
			var ev events.SQSEvent
			_ = json.Unmarshal(inv.Payload, &ev)
			r := ev.Records[0]
			if r.EventSource != "aws:sqs" || r.EventSourceARN == "" || r.ReceiptHandle == "" || r.AWSRegion != f.org.Region {
				t.Errorf("record %+v", r)
			}
			if !inv.Result.Failed() || !strings.Contains(inv.Result.Message, "not implemented") {
				t.Errorf("receive %d: %+v, want the reconciler's not-implemented failure", receive, inv.Result)
			}
		}
		// The sixth receive finds it received five times: SQS moves it to
		// the dead-letter queue instead.
		clock.Advance(31 * time.Minute)
		wait(t, func() string { return fmt.Sprintf("the dead-letter queue: %+v", h.Stats().Queues) },
			func() bool { return h.Stats().Queues[queueARN].DeadLettered == 1 })
		if got := f.messages(t, dlq); !cmp.Equal(got, []string{tenant.TenantID}) {
			t.Errorf("the dead-letter queue holds %q, want the signup's message %q", got, tenant.TenantID)
		}
		want := QueueStats{Received: 5, Redelivered: 4, Failed: 5, Exhausted: 1, DeadLettered: 1}
		if diff := cmp.Diff(want, h.Stats().Queues[queueARN]); diff != "" {
			t.Errorf("queue stats (-want +got):\n%s", diff)
		}
		if got := len(failedSQS(6)); got != 0 {
			t.Errorf("the message was delivered a sixth time")
		}
		tn, err := reg.Get(t.Context(), tenant.TenantID)
		if err != nil || tn.State != registry.StateRequested {
			t.Errorf("tenant %+v %v, want it REQUESTED (the reconciler does not reconcile yet)", tn, err)
		}
		if d := h.Denied("silo-api"); len(d) > 0 {
			t.Errorf("the API was refused %v", d)
		}
	})

	fleet, err := sim.Start(t.Context(), sim.Options{Endpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	active := fleet.IDs()[0]
	account := f.memberAccount(t, "probed")
	t.Run("the prober sweeps on its schedule", func(t *testing.T) {
		if err := reg.ImportTenants(t.Context(), []*registry.Tenant{{
			Spec:  registry.Spec{ID: active, Name: "Probed", Email: "ops@probed.example", Tier: registry.TierBasic, Region: f.org.Region},
			State: registry.StateActive, AccountID: account, Endpoint: fleet.Endpoint(active),
		}}); err != nil {
			t.Fatal(err)
		}
		tap := f.tap(t, f.env(t, "silo-prober", "SILO_EVENT_BUS"))
		before := len(invocations(h, "silo-prober", SourceSchedule, nil))
		clock.Advance(time.Minute)
		var sweep Invocation
		wait(t, func() string { return "a scheduled prober invocation that probed the tenant" }, func() bool {
			for _, inv := range invocations(h, "silo-prober", SourceSchedule, nil)[before:] {
				var st struct{ Targets, Up int }
				if json.Unmarshal(inv.Result.Payload, &st) == nil && st.Targets == 1 {
					sweep = inv
					return true
				}
			}
			return false
		})
		var ev events.CloudWatchEvent
		if err := json.Unmarshal(sweep.Payload, &ev); err != nil || ev.DetailType != "Scheduled Event" || ev.Source != "aws.events" || len(ev.Resources) != 1 {
			t.Errorf("the prober got %s, want a scheduled event", sweep.Payload)
		}
		var st struct{ Targets, Up int }
		_ = json.Unmarshal(sweep.Result.Payload, &st)
		if sweep.Result.Failed() || st.Up != 1 {
			t.Errorf("sweep %+v %s, want the tenant up", sweep.Result, sweep.Result.Payload)
		}
		tn, err := reg.Get(t.Context(), active)
		if err != nil || tn.Health == nil || tn.Health.Status != registry.HealthUp {
			t.Errorf("tenant health %+v %v, want up", tn, err)
		}
		var got []string
		wait(t, func() string { return fmt.Sprintf("the health event on the bus (got %q)", got) }, func() bool {
			got = append(got, f.messages(t, tap)...)
			return len(got) > 0
		})
		if !strings.Contains(got[0], probe.EventHealthChanged) || !strings.Contains(got[0], active) {
			t.Errorf("bus event %s, want %s for %s", got[0], probe.EventHealthChanged, active)
		}
		if calls := h.Calls("silo-prober"); calls["EventBridge.PutEvents"] == 0 {
			t.Errorf("the prober's calls %v lack its PutEvents", calls)
		}
		if d := h.Denied("silo-prober"); len(d) > 0 {
			t.Errorf("the prober was refused %v", d)
		}
	})

	t.Run("the daily audit runs on its rule", func(t *testing.T) {
		f.applyGuardrails(t)
		clock.Set(time.Date(2026, 1, 6, 3, 17, 0, 0, time.UTC))
		isAudit := func(inv Invocation) bool { return string(inv.Payload) == `{"task":"audit-isolation"}` }
		wait(t, func() string { return "the audit's invocation" }, func() bool {
			return len(invocations(h, "silo-reconciler", SourceSchedule, isAudit)) > 0
		})
		inv := invocations(h, "silo-reconciler", SourceSchedule, isAudit)[0]
		var tally struct {
			Task                             string
			Tenants, Passed, Failed, Errored int
			Failing                          []string
		}
		if inv.Result.Failed() || json.Unmarshal(inv.Result.Payload, &tally) != nil {
			t.Fatalf("the audit answered %+v %s", inv.Result, inv.Result.Payload)
		}
		// The one ACTIVE tenant has an account in its OU under the
		// guardrails, but no stack instance: it cannot pass.
		if tally.Task != "audit-isolation" || tally.Tenants != 1 || tally.Passed != 0 || !cmp.Equal(tally.Failing, []string{active}) {
			t.Errorf("tally %+v, want one tenant audited, %s failing", tally, active)
		}
		if d := h.Denied("silo-reconciler"); len(d) > 0 {
			t.Errorf("the reconciler was refused %v", d)
		}
	})

	t.Run("the console logs in and renders every page", func(t *testing.T) {
		console := h.FrontDoor("silo-console").StageURL("console")
		token, err := f.iss.Mint("", "deployed-admin", time.Hour, map[string]any{"aud": api.Audience, api.RoleClaim: string(api.RoleAdmin)})
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		get := func(path, cookie string) (*http.Response, string) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, console+path, nil)
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}
		if resp, _ := get("/tenants", ""); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
			t.Fatalf("without a cookie: %d %q, want the login page", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, body := get("/login?next=%2Fconsole%2Ftenants", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) || !strings.Contains(body, `action="/console/login"`) {
			t.Fatalf("login form: %d\n%s", resp.StatusCode, tail([]byte(body), 1500))
		}
		resp, err := client.PostForm(console+"/login", url.Values{"token": {token}, "next": {"/console/tenants"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/tenants" || len(cookies) != 1 || !cookies[0].Secure {
			t.Fatalf("login: %d %q %+v", resp.StatusCode, resp.Header.Get("Location"), cookies)
		}
		cookie := cookies[0].Name + "=" + cookies[0].Value
		for _, p := range []struct{ path, want string }{
			{"/", "Fleet"}, {"/tenants", tenant.TenantID}, {"/tenants/" + active, `<dd id="ou">` + emulator.OUProduction + `</dd>`}, {"/previews", "Previews"},
			{"/rollouts", "Rollouts"}, {"/isolation", active},
		} {
			resp, body := get(p.path, cookie)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<span class="subject">deployed-admin</span>`) || !strings.Contains(body, p.want) {
				t.Errorf("GET /console%s: %d, want 200 with %q\n%s", p.path, resp.StatusCode, p.want, tail([]byte(body), 1500))
			}
		}
		if resp, body := get("/static/console.css", cookie); resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "css") {
			t.Errorf("stylesheet: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if d := h.Denied("silo-console"); len(d) > 0 {
			t.Errorf("the console was refused %v", d)
		}
	})
}
