package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// wire resets the emulator and wires a control plane onto it.
func wire(t *testing.T, o local.ControlOptions) *local.Control {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	c, err := local.Wire(ctx, org, o, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func signup(t *testing.T, c *local.Control, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, _, err := c.Registry.Create(t.Context(), registry.Spec{
			ID: id, Name: "Tenant " + id, Email: "owner@" + id + ".example", Tier: registry.TierStandard, Region: "us-east-1",
		}, "signup-"+id, "test")
		if err != nil {
			t.Fatal(err)
		}
	}
}

// driveAll drives every tenant concurrently with one reconciler.
func driveAll(ctx context.Context, t *testing.T, c *local.Control, ids []string) map[string]*registry.Tenant {
	t.Helper()
	var mu sync.Mutex
	out := map[string]*registry.Tenant{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn, err := c.Reconciler.Drive(ctx, id)
			if err != nil {
				t.Errorf("drive %s: %v", id, err)
				return
			}
			mu.Lock()
			out[id] = tn
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// checkFleet verifies the invariants every vending test ends with: each
// ACTIVE tenant has exactly one account, in Tenants/Production, tagged for
// it, with its stack's table in that account only; and no account of the
// organization is unknown to the registry (no orphans).
func checkFleet(t *testing.T, c *local.Control, ids []string) {
	t.Helper()
	ctx := t.Context()
	orgc := organizations.NewFromConfig(c.Config)
	byName := map[string][]string{}
	open := map[string]bool{}
	var accounts []string
	p := organizations.NewListAccountsPaginator(orgc, &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Accounts {
			if aws.ToString(a.Id) == c.Org.ManagementAccountID {
				continue
			}
			byName[aws.ToString(a.Name)] = append(byName[aws.ToString(a.Name)], aws.ToString(a.Id))
			accounts = append(accounts, aws.ToString(a.Id))
			open[aws.ToString(a.Id)] = a.Status == orgtypes.AccountStatusActive
		}
	}
	owned := map[string]string{}
	for _, id := range ids {
		tn, err := c.Registry.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tn.State != registry.StateActive {
			t.Errorf("tenant %s is %s (%s), want ACTIVE", id, tn.State, tn.Reason)
			continue
		}
		if got := byName[c.Vending.AccountName(id)]; len(got) != 1 || got[0] != tn.AccountID {
			t.Errorf("tenant %s: accounts named for it %v, registry says %s (all: %v)", id, got, tn.AccountID, byName)
		}
		owned[tn.AccountID] = id
		parents, err := orgc.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(tn.AccountID)})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(parents.Parents[0].Id); got != c.Org.OUs[emulator.OUProduction] {
			t.Errorf("tenant %s: account in %s, want Tenants/Production", id, got)
		}
		tables, err := dynamodb.NewFromConfig(c.Accounts.Config(tn.AccountID)).ListTables(ctx, &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"silo-" + id + "-data"}; !slices.Equal(tables.TableNames, want) {
			t.Errorf("tenant %s: tables in its account %v, want %v", id, tables.TableNames, want)
		}
		if tn.Endpoint == "" || tn.AppVersion != c.Release.ID {
			t.Errorf("tenant %s: endpoint %q version %q", id, tn.Endpoint, tn.AppVersion)
		}
		checkDNS(t, c, tn)
	}
	for _, a := range accounts {
		if _, ok := owned[a]; ok {
			continue
		}
		// The account of a decommissioned tenant stays in the
		// organization, closed: it is the tombstone's, not an orphan.
		if tn, err := c.Registry.GetByAccount(ctx, a); err == nil && tn.State == registry.StateClosed && !open[a] {
			continue
		}
		t.Errorf("orphan account %s: in the organization, owned by no tenant", a)
	}
}

// checkDNS verifies an ACTIVE tenant's DNS name: recorded in the registry
// and pointing at its endpoint's host in the hosted zone (a CNAME to the
// API host, an A record for a loopback endpoint).
func checkDNS(t *testing.T, c *local.Control, tn *registry.Tenant) {
	t.Helper()
	want := vending.DNSName(tn.ID, c.TenantDomain)
	if got := tn.Attributes[vending.AttrDNSName]; got != want {
		t.Errorf("tenant %s: dns name %q in the registry, want %q", tn.ID, got, want)
	}
	typ, value, ok, err := c.Reconciler.LookupDNS(t.Context(), tn)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(tn.Endpoint)
	switch {
	case !ok:
		t.Errorf("tenant %s: no DNS record %s in zone %s", tn.ID, want, c.HostedZoneID)
	case value != u.Hostname() || (typ != "CNAME" && typ != "A"):
		t.Errorf("tenant %s: DNS record %s %s, want it to point at %s", tn.ID, typ, value, u.Hostname())
	}
}

func TestVendHappyPath(t *testing.T) {
	c := wire(t, local.ControlOptions{})
	queue := subscribe(t, c.Config)
	ids := []string{"alpha", "bravo", "charlie"}
	signup(t, c, ids...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	driveAll(ctx, t, c, ids)
	checkFleet(t, c, ids)

	// Every tenant's events reached the bus, in order.
	got := map[string][]string{}
	for _, e := range drain(ctx, t, c.Config, queue, 3*len(ids)) {
		got[e.Detail.TenantID] = append(got[e.Detail.TenantID], e.DetailType)
	}
	for _, id := range ids {
		want := []string{"tenant.requested", "tenant.account_created", "tenant.activated"}
		if !slices.Equal(got[id], want) {
			t.Errorf("events of %s: %v, want %v", id, got[id], want)
		}
	}

	events, err := c.Registry.Events(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, e := range events {
		if e.To != "" {
			path = append(path, string(e.To))
		}
	}
	want := []string{"REQUESTED", "CREATING_ACCOUNT", "PREPARING", "DEPLOYING", "ACTIVE"}
	if !slices.Equal(path, want) {
		t.Errorf("alpha's path %v, want %v", path, want)
	}
}

// subscribe routes every silo event on the bus to a new SQS queue.
func subscribe(t *testing.T, cfg aws.Config) string {
	t.Helper()
	ctx := t.Context()
	q := sqs.NewFromConfig(cfg)
	created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("silo-events-test")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: created.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	eb := eventbridge.NewFromConfig(cfg)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("all-silo"), EventBusName: aws.String(local.EventBus),
		EventPattern: aws.String(`{"source":["` + vending.EventSource + `"]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("all-silo"), EventBusName: aws.String(local.EventBus),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes["QueueArn"])}}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(created.QueueUrl)
}

type busEvent struct {
	DetailType string              `json:"detail-type"`
	Detail     vending.TenantEvent `json:"detail"`
	Time       time.Time           `json:"time"`
}

// drain reads n events from the queue, oldest first.
func drain(ctx context.Context, t *testing.T, cfg aws.Config, queue string, n int) []busEvent {
	t.Helper()
	q := sqs.NewFromConfig(cfg)
	var out []busEvent
	for len(out) < n {
		msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queue), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("receive events (%d of %d so far): %v", len(out), n, err)
		}
		for _, m := range msgs.Messages {
			var e busEvent
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &e); err != nil {
				t.Fatalf("event %s: %v", aws.ToString(m.Body), err)
			}
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}
