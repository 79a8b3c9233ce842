package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// templateBucket returns the logical id of the tenant template's bucket and
// the name it gets for tenant in account and region, from the template's
// own Fn::Sub, so that the test follows the template's naming.
func templateBucket(tenant, account, region string) (logical, name string, err error) {
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				BucketName struct {
					Sub string `json:"Fn::Sub"`
				}
			}
		}
	}
	if err := json.Unmarshal(stacksets.TenantTemplate(), &tpl); err != nil {
		return "", "", err
	}
	for id, r := range tpl.Resources {
		if r.Type == "AWS::S3::Bucket" && r.Properties.BucketName.Sub != "" {
			return id, strings.NewReplacer("${TenantId}", tenant, "${AWS::AccountId}", account, "${AWS::Region}", region).
				Replace(r.Properties.BucketName.Sub), nil
		}
	}
	return "", "", errors.New("the tenant template names no bucket with Fn::Sub")
}

// squatter takes the bucket names some tenants' stacks will want, from
// another account (the management account), as soon as each tenant's
// account exists: the proxy calls it before forwarding a
// CreateStackInstances. S3 then refuses the name in the tenant's account,
// in moto's own words, and the tenant's member stack fails there.
type squatter struct {
	c       *local.Control
	s3      *s3.Client
	mu      sync.Mutex
	tenants map[string]string // tenant → bucket taken ("" until its account exists)
}

func newSquatter(c *local.Control, tenants ...string) *squatter {
	q := &squatter{c: c, s3: s3.NewFromConfig(c.Config, func(o *s3.Options) { o.UsePathStyle = true }), tenants: map[string]string{}}
	for _, id := range tenants {
		q.tenants[id] = ""
	}
	return q
}

func (q *squatter) hook(op awsx.Op, _ int64) error {
	if op.String() != "CloudFormation.CreateStackInstances" {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	ctx := context.Background() // the hook has no request context; each call is short
	for id, bucket := range q.tenants {
		if bucket != "" {
			continue
		}
		tn, err := q.c.Registry.Get(ctx, id)
		if err != nil || tn.AccountID == "" {
			continue
		}
		_, name, err := templateBucket(id, tn.AccountID, tn.Region)
		if err != nil {
			return err
		}
		if _, err := q.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
			return err
		}
		q.tenants[id] = name
	}
	return nil
}

// taken returns the bucket name taken from tenant.
func (q *squatter) taken(t *testing.T, tenant string) string {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tenants[tenant] == "" {
		t.Fatalf("no bucket name of %s was taken", tenant)
	}
	return q.tenants[tenant]
}

// TestStackInstanceFailsInMemberAccount: a tenant's member stack fails in
// its own account because S3 refuses its bucket's name (another account
// holds it). The tenant ends FAILED with S3's refusal, read from the member
// stack, not the operation's generic reason; once the name is free a retry
// reaches ACTIVE, clearing what the failed attempt retained; a second
// tenant failed the same way is decommissioned to CLOSED with its deletion
// report, its account closed in Suspended, and no account is left over.
func TestStackInstanceFailsInMemberAccount(t *testing.T) {
	c := wire(t, fastRecovery)
	emu.Proxy.Configure(emulator.Faults{StackSetOperationDelay: 200 * time.Millisecond})
	q := newSquatter(c, "doomed", "abandoned")
	emu.Proxy.SetHook(q.hook)
	signup(t, c, "doomed", "abandoned")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	got := driveAll(ctx, t, c, []string{"doomed", "abandoned"})
	for _, id := range []string{"doomed", "abandoned"} {
		tn := got[id]
		if tn == nil || tn.State != registry.StateFailed || tn.FailedFrom != registry.StateDeploying {
			t.Fatalf("%s = %+v, want FAILED from DEPLOYING", id, tn)
		}
		logical, bucket, err := templateBucket(id, tn.AccountID, tn.Region)
		if err != nil {
			t.Fatal(err)
		}
		if bucket != q.taken(t, id) {
			t.Fatalf("%s: the test took %s, the template names %s", id, q.taken(t, id), bucket)
		}
		// What S3 says to the tenant's account about that name now.
		member := s3.NewFromConfig(c.Accounts.Config(tn.AccountID), func(o *s3.Options) { o.UsePathStyle = true })
		_, err = member.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s: creating %s in its account: %v, want S3 to refuse", id, bucket, err)
		}
		want := "stack instance failed: " + logical + " (AWS::S3::Bucket): "
		if !strings.HasPrefix(tn.Reason, want) || !strings.Contains(tn.Reason, apiErr.ErrorMessage()) {
			t.Errorf("%s: reason %q, want %q followed by S3's refusal %q", id, tn.Reason, want, apiErr.ErrorMessage())
		}
		events, err := c.Registry.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if last := events[len(events)-1]; last.To != registry.StateFailed || last.Reason != tn.Reason {
			t.Errorf("%s: last event %+v does not record the failure", id, last)
		}
		t.Logf("%s: %s", id, tn.Reason)
	}
	emu.Proxy.SetHook(nil)

	// What the failed stack kept (DeletionPolicy Retain), which the retry
	// must clear: read from its events, by the instance's stack id.
	kept := retained(ctx, t, c, got["doomed"])
	if len(kept) == 0 {
		t.Fatal("the failed stack kept nothing; the retry's reset would be untested")
	}

	// The name is freed; the operator retries.
	if _, err := q.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(q.taken(t, "doomed"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconciler.Retry(ctx, "doomed", "operator:ann", "bucket name freed"); err != nil {
		t.Fatal(err)
	}
	doomed, err := c.Reconciler.Drive(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if doomed.State != registry.StateActive {
		t.Fatalf("doomed after the retry: %s (%s)", doomed.State, doomed.Reason)
	}
	history, err := c.Registry.Events(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(history, func(e registry.Event) bool { return e.Type == "deploy_reset" }) {
		t.Error("doomed's history records no deploy_reset")
	}
	var reset vending.DeletionReport
	if err := c.Registry.Report(ctx, "doomed", vending.ReportDeployReset, &reset); err != nil {
		t.Fatalf("the retry's reset report: %v", err)
	}
	if len(reset.Remaining) != 0 {
		t.Errorf("the retry left %v of the failed attempt", reset.Remaining)
	}
	removed := map[string]string{}
	for _, f := range reset.Found {
		removed[f.Kind+"/"+f.Name] = f.Action
	}
	for _, k := range kept {
		if a := removed[k]; a != "deleted" && a != "deletion_scheduled" {
			t.Errorf("the retry did not remove %s, kept by the failed stack (report: %+v)", k, reset.Found)
		}
	}
	t.Logf("the retry removed what the failed attempt kept: %v", kept)

	// The other one is given up: decommissioned from FAILED, its cause
	// still there.
	abandoned, err := c.Registry.Get(ctx, "abandoned")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry.Transition(ctx, abandoned, registry.StateDecommissioning, registry.Change{Actor: "operator:ann", Reason: "customer gone"}); err != nil {
		t.Fatal(err)
	}
	closed, err := c.Reconciler.Drive(ctx, "abandoned")
	if err != nil {
		t.Fatal(err)
	}
	if closed.State != registry.StateClosed {
		t.Fatalf("abandoned after decommission: %s (%s)", closed.State, closed.Reason)
	}
	var report vending.DeletionReport
	if err := c.Registry.Report(ctx, "abandoned", vending.ReportDeletion, &report); err != nil {
		t.Fatalf("deletion report: %v", err)
	}
	if report.Account != abandoned.AccountID || len(report.Remaining) != 0 {
		t.Errorf("deletion report: account %s, remaining %v", report.Account, report.Remaining)
	}

	// What Organizations says: one account ACTIVE in Production for
	// doomed, one closed in Suspended for abandoned, nothing else.
	emu.Proxy.Configure(emulator.Faults{})
	orgc := organizations.NewFromConfig(c.Config)
	want := map[string]struct {
		ou     string
		status []orgtypes.AccountStatus
	}{
		doomed.AccountID:    {c.Org.OUs[emulator.OUProduction], []orgtypes.AccountStatus{orgtypes.AccountStatusActive}},
		abandoned.AccountID: {c.Org.OUs[emulator.OUSuspended], []orgtypes.AccountStatus{orgtypes.AccountStatusSuspended, orgtypes.AccountStatusPendingClosure}},
	}
	p := organizations.NewListAccountsPaginator(orgc, &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Accounts {
			id := aws.ToString(a.Id)
			if id == c.Org.ManagementAccountID {
				continue
			}
			w, ok := want[id]
			if !ok {
				t.Errorf("orphan account %s (%s): owned by no tenant", id, aws.ToString(a.Name))
				continue
			}
			delete(want, id)
			parents, err := orgc.ListParents(ctx, &organizations.ListParentsInput{ChildId: a.Id})
			if err != nil {
				t.Fatal(err)
			}
			if ou := aws.ToString(parents.Parents[0].Id); ou != w.ou {
				t.Errorf("account %s in %s, want %s", id, ou, w.ou)
			}
			if !slices.Contains(w.status, a.Status) {
				t.Errorf("account %s is %s, want %v", id, a.Status, w.status)
			}
		}
	}
	for id := range want {
		t.Errorf("account %s is not in the organization", id)
	}
	checkDNS(t, c, doomed)
}

// retained returns what the failed stack of tn's instance kept when it
// rolled back (its DELETE_SKIPPED resources), as the deletion report names
// them ("kms_key/<id>", "table/<name>", "bucket/<name>").
func retained(ctx context.Context, t *testing.T, c *local.Control, tn *registry.Tenant) []string {
	t.Helper()
	insts, err := cloudformation.NewFromConfig(c.Config).ListStackInstances(ctx, &cloudformation.ListStackInstancesInput{
		StackSetName: aws.String(c.StackSets.StackSetName()), StackInstanceAccount: aws.String(tn.AccountID),
	})
	if err != nil {
		t.Fatal(err)
	}
	stackID := ""
	for _, i := range insts.Summaries {
		if aws.ToString(i.Account) == tn.AccountID {
			stackID = aws.ToString(i.StackId)
		}
	}
	if stackID == "" {
		t.Fatalf("no stack instance of %s", tn.ID)
	}
	events, err := cloudformation.NewFromConfig(c.Accounts.Config(tn.AccountID)).DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stackID)})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{"AWS::KMS::Key": "kms_key", "AWS::DynamoDB::Table": "table", "AWS::S3::Bucket": "bucket"}
	var out []string
	for _, e := range events.StackEvents {
		if e.ResourceStatus != cftypes.ResourceStatusDeleteSkipped {
			continue
		}
		kind, ok := kinds[aws.ToString(e.ResourceType)]
		if !ok {
			t.Fatalf("the failed stack kept a %s, which this test does not follow", aws.ToString(e.ResourceType))
		}
		out = append(out, kind+"/"+aws.ToString(e.PhysicalResourceId))
	}
	return out
}
