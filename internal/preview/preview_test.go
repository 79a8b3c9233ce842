package preview_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/silo-saas/silo/internal/apphost"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// env is a control plane with its reconciler and the pool running.
type env struct {
	c      *local.Control
	m      *preview.Manager
	runner *vending.Runner
	org    *emulator.Org
	// skew moves the pool's clock forward.
	skew atomic.Int64
}

func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }

func start(t *testing.T, cfg preview.Config, o local.ControlOptions) *env {
	t.Helper()
	return startWith(t, cfg, o, nil)
}

// startWith is start with faults configured (by before) once the emulator
// is reset and before the pool and the reconciler run.
func startWith(t *testing.T, cfg preview.Config, o local.ControlOptions, before func()) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := &env{org: emu.ResetT(t)}
	if before != nil {
		before()
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := local.Wire(ctx, e.org, o, log)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	e.runner = vending.NewRunner(c.Reconciler, 64)
	if e.m, err = c.NewPreviews(cfg, e.runner.Kick, e.now, log); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.runner.Run(run, 300*time.Millisecond) })
	wg.Go(func() { _ = e.m.Run(run, 150*time.Millisecond) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
	})
	return e
}

// eventually polls cond every 100ms until it holds or the limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, limit)
		case <-tick.C:
		}
	}
}

func (e *env) poolCount(t *testing.T, st registry.PoolState) int {
	t.Helper()
	as, err := e.c.Registry.ListPool(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	return len(as)
}

func (e *env) waitPool(t *testing.T, st registry.PoolState, n int) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%d pool accounts %s", n, st), func() (bool, error) {
		return e.poolCount(t, st) == n, nil
	})
}

// waitPhase waits for a preview to reach a phase, failing on a failed one.
func (e *env) waitPhase(t *testing.T, id string, want preview.Phase, limit time.Duration) *preview.Preview {
	t.Helper()
	var p *preview.Preview
	eventually(t, limit, id+" "+string(want), func() (bool, error) {
		var err error
		if p, err = e.m.Get(t.Context(), id); err != nil {
			return false, err
		}
		if p.Phase == preview.PhaseFailed && want != preview.PhaseFailed {
			return false, fmt.Errorf("preview failed: %s", p.Reason)
		}
		return p.Phase == want, nil
	})
	return p
}

// build makes a distinct code zip (a content-hashed release each).
func build(t *testing.T, label string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "#!/bin/sh\necho %q\n", label)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (e *env) member(t *testing.T, account string) aws.Config {
	cfg := e.c.Accounts.Config(account)
	cfg.Region = e.org.Region
	return cfg
}

// deployedVersion reads AppVersion from the preview's function in its
// account: what the stack really runs, not what the registry says.
func (e *env) deployedVersion(t *testing.T, p *preview.Preview) string {
	t.Helper()
	out, err := lambda.NewFromConfig(e.member(t, p.AccountID)).GetFunctionConfiguration(t.Context(),
		&lambda.GetFunctionConfigurationInput{FunctionName: aws.String(apphost.FunctionName(p.ID))})
	if err != nil {
		t.Fatal(err)
	}
	return out.Environment.Variables[tenantapp.EnvVersion]
}

func (e *env) parent(t *testing.T, account string) string {
	t.Helper()
	out, err := organizations.NewFromConfig(e.c.Config).ListParents(t.Context(), &organizations.ListParentsInput{ChildId: aws.String(account)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Parents[0].Id)
}

// TestConcurrentUpsShareThePool: 30 PRs ask at once for a pool of 10.
// Exactly 10 hold leases at a time, the others wait and are served as
// leases are released, and no account is ever leased to two previews.
func TestConcurrentUpsShareThePool(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 10}, local.ControlOptions{})
	e.waitPool(t, registry.PoolAvailable, 10)

	// A watcher checks the invariants continuously: never more than 10
	// leases, never one account held by two previews.
	var (
		mu        sync.Mutex
		maxLeased int
		violation string
	)
	watch, stopWatch := context.WithCancel(t.Context())
	var watching sync.WaitGroup
	watching.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			leased, err := e.c.Registry.ListPool(watch, registry.PoolLeased)
			if err == nil {
				holders := map[string]string{}
				for _, st := range []registry.State{registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying, registry.StateActive, registry.StateUpdating, registry.StateDecommissioning} {
					page, err := e.c.Registry.List(watch, st, registry.ListOptions{Limit: registry.MaxPageSize})
					if err != nil {
						break
					}
					for _, tn := range page.Tenants {
						if tn.Kind != registry.KindPreview || tn.AccountID == "" {
							continue
						}
						mu.Lock()
						if other, ok := holders[tn.AccountID]; ok && other != tn.ID && violation == "" {
							violation = fmt.Sprintf("account %s held by %s and %s", tn.AccountID, other, tn.ID)
						}
						mu.Unlock()
						holders[tn.AccountID] = tn.ID
					}
				}
				mu.Lock()
				maxLeased = max(maxLeased, len(leased))
				mu.Unlock()
			}
			select {
			case <-watch.Done():
				return
			case <-tick.C:
			}
		}
	})

	const prs = 30
	ids := make([]string, prs)
	var wg sync.WaitGroup
	for i := range prs {
		wg.Go(func() {
			p, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: i + 1, Artifact: build(t, fmt.Sprint("pr", i+1)), TTL: time.Hour, Wait: 5 * time.Minute, Actor: "test"})
			if err != nil {
				t.Errorf("up PR %d: %v", i+1, err)
				return
			}
			ids[i] = p.ID
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Nothing is released until the whole pool is leased: releasing the
	// first ready preview while the pool pass has not yet leased the last
	// accounts (a slow machine) would make "10 at once" a race.
	e.waitPool(t, registry.PoolLeased, 10)
	// Serve them all: release each preview as soon as it is ready.
	accountsUsed := map[string]int{}
	served := map[string]bool{}
	eventually(t, 6*time.Minute, "every PR served", func() (bool, error) {
		for _, id := range ids {
			if served[id] {
				continue
			}
			p, err := e.m.Get(t.Context(), id)
			if err != nil {
				return false, err
			}
			switch p.Phase {
			case preview.PhaseFailed:
				return false, fmt.Errorf("%s failed: %s", id, p.Reason)
			case preview.PhaseReady:
				if p.URL == "" || p.AccountID == "" {
					return false, fmt.Errorf("%s ready without URL or account: %+v", id, p)
				}
				accountsUsed[p.AccountID]++
				served[id] = true
				if _, err := e.m.Down(t.Context(), id, "test", "done"); err != nil {
					return false, err
				}
			}
		}
		return len(served) == prs, nil
	})
	stopWatch()
	watching.Wait()
	if violation != "" {
		t.Fatal(violation)
	}
	if maxLeased != 10 {
		t.Errorf("at most %d accounts leased at once; want exactly 10 (the pool) while 30 wait", maxLeased)
	}
	if len(accountsUsed) != 10 {
		t.Errorf("previews ran on %d accounts, want the pool's 10: %v", len(accountsUsed), accountsUsed)
	}
	// Each was served by a lease in the registry's audit, and the pool is
	// whole again once the resets are done.
	e.waitPool(t, registry.PoolAvailable, 10)
	for _, id := range ids {
		evs, err := e.c.Registry.Events(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		leases := 0
		for _, ev := range evs {
			if ev.Type == "preview.leased" {
				leases++
			}
		}
		if leases != 1 {
			t.Errorf("%s has %d lease events, want 1", id, leases)
		}
	}
}

// TestUpAgainRedeploysOnTheSameAccount: a second up for a PR keeps its
// lease and deploys the new build there.
func TestUpAgainRedeploysOnTheSameAccount(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 2}, local.ControlOptions{})
	e.waitPool(t, registry.PoolAvailable, 2)
	first, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: 7, Artifact: build(t, "one"), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ready := e.waitPhase(t, first.ID, preview.PhaseReady, time.Minute)
	if got := e.deployedVersion(t, ready); got != first.Release {
		t.Fatalf("function runs %q, want the first build %q", got, first.Release)
	}
	if got := e.parent(t, ready.AccountID); got != e.org.OUs[emulator.OUPreview] {
		t.Errorf("leased account is in %s, want Tenants/Preview %s", got, e.org.OUs[emulator.OUPreview])
	}

	second, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: 7, Artifact: build(t, "two"), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Release == first.Release {
		t.Fatal("two builds made one release")
	}
	var again *preview.Preview
	eventually(t, time.Minute, "second build running", func() (bool, error) {
		again, err = e.m.Get(t.Context(), first.ID)
		return err == nil && again.Phase == preview.PhaseReady && again.Running == second.Release, err
	})
	if again.AccountID != ready.AccountID {
		t.Errorf("redeploy moved the preview from %s to %s", ready.AccountID, again.AccountID)
	}
	if got := e.deployedVersion(t, again); got != second.Release {
		t.Errorf("function runs %q after the redeploy, want %q", got, second.Release)
	}
	if n := e.poolCount(t, registry.PoolLeased); n != 1 {
		t.Errorf("%d leases after two ups of one PR, want 1", n)
	}
	// The same build a third time changes nothing.
	same, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: 7, Artifact: build(t, "two"), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if same.State != registry.StateActive {
		t.Errorf("the same build again moved the preview to %s", same.State)
	}
}

// TestResetRemovesLeftoversOrQuarantines plants resources outside the
// stack: a reset removes them and proves it, and when removal fails the
// account is quarantined with the leftovers listed (and the pool refilled).
func TestResetRemovesLeftoversOrQuarantines(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 1, MaxResetAttempts: 3}, local.ControlOptions{})
	e.waitPool(t, registry.PoolAvailable, 1)

	up := func(pr int) *preview.Preview {
		p, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/api", PR: pr, Artifact: build(t, fmt.Sprint(pr)), Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return e.waitPhase(t, p.ID, preview.PhaseReady, time.Minute)
	}
	plant := func(p *preview.Preview, suffix string) (bucket, table string) {
		cfg := e.member(t, p.AccountID)
		bucket, table = "stray-"+suffix+"-"+p.AccountID, "stray-"+suffix
		s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
		if _, err := s3c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("x"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
		if _, err := dynamodb.NewFromConfig(cfg).CreateTable(t.Context(), &dynamodb.CreateTableInput{
			TableName: aws.String(table), BillingMode: ddbtypes.BillingModePayPerRequest,
			AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
			KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		}); err != nil {
			t.Fatal(err)
		}
		return bucket, table
	}

	// 1. Leftovers removed, verified, account back in the pool.
	p := up(1)
	account := p.AccountID
	bucket, table := plant(p, "one")
	if _, err := e.m.Down(t.Context(), p.ID, "test", "PR closed"); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, p.ID, preview.PhaseReleased, time.Minute)
	e.waitPool(t, registry.PoolAvailable, 1)
	var report vending.DeletionReport
	if err := e.c.Registry.Report(t.Context(), p.ID, preview.ReportReset, &report); err != nil {
		t.Fatal(err)
	}
	found := map[string]vending.Found{}
	for _, f := range report.Found {
		found[f.Kind+" "+f.Name] = f
	}
	for _, want := range []string{"bucket " + bucket, "table " + table} {
		f, ok := found[want]
		if !ok {
			t.Errorf("reset report lacks the planted %s: %+v", want, report.Found)
			continue
		}
		if f.Tagged || f.Action != "deleted" {
			t.Errorf("%s: tagged %v, action %q; want untagged and deleted", want, f.Tagged, f.Action)
		}
	}
	if len(report.Remaining) != 0 {
		t.Errorf("reset left %v", report.Remaining)
	}
	tables, err := dynamodb.NewFromConfig(e.member(t, account)).ListTables(t.Context(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables.TableNames) != 0 {
		t.Errorf("tables left in the reset account: %v", tables.TableNames)
	}
	if got := e.parent(t, account); got != e.org.OUs[emulator.OUPool] {
		t.Errorf("reset account is in %s, want the Pool OU", got)
	}

	// 2. Removal fails: three failed resets quarantine the account with
	// the leftovers listed, and the pool is refilled to its target.
	p = up(2)
	if p.AccountID != account {
		t.Fatalf("second preview got %s; the pool's one account is %s", p.AccountID, account)
	}
	_, table = plant(p, "two")
	emu.Proxy.SetHook(func(op awsx.Op, _ int64) error {
		if op.String() == "DynamoDB.DeleteTable" {
			return errors.New("injected: table deletion fails")
		}
		return nil
	})
	t.Cleanup(func() { emu.Proxy.SetHook(nil) })
	if _, err := e.m.Down(t.Context(), p.ID, "test", "PR closed"); err != nil {
		t.Fatal(err)
	}
	e.waitPool(t, registry.PoolQuarantined, 1)
	emu.Proxy.SetHook(nil)
	q, err := e.c.Registry.GetPoolAccount(t.Context(), account)
	if err != nil {
		t.Fatal(err)
	}
	if q.ResetAttempts != 3 || !strings.Contains(q.Reason, "reset failed 3 times") {
		t.Errorf("quarantined after %d attempts with reason %q", q.ResetAttempts, q.Reason)
	}
	if len(q.Leftovers) == 0 || !strings.Contains(strings.Join(q.Leftovers, ","), "table "+table) {
		t.Errorf("leftovers %v do not name the table %s", q.Leftovers, table)
	}
	// A quarantined account does not count: the pool makes a new one.
	e.waitPool(t, registry.PoolAvailable, 1)
}

// TestReaperAndRefill: the pool is filled through the vending engine under
// the quota governor, an expired lease is reaped, its account reset and
// leased again, and a request that waits past its deadline fails clearly.
func TestReaperAndRefill(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 3}, local.ControlOptions{Quotas: vending.Quotas{MaxCreateInProgress: 1}})
	e.waitPool(t, registry.PoolAvailable, 3)
	if peak := e.c.Reconciler.Governor().PeakCreates(); peak != 1 {
		t.Errorf("governor peak %d concurrent creations; the quota is 1", peak)
	}
	// Every pool account came from a pool-kind vending record, closed
	// when it handed its account over.
	closed, err := e.c.Registry.List(t.Context(), registry.StateClosed, registry.ListOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	handed := 0
	for _, tn := range closed.Tenants {
		if tn.Kind == registry.KindPool {
			handed++
		}
	}
	if handed != 3 {
		t.Errorf("%d pool records handed over, want 3", handed)
	}

	p, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: 11, Artifact: build(t, "r"), TTL: time.Hour, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ready := e.waitPhase(t, p.ID, preview.PhaseReady, time.Minute)
	if ready.ExpiresAt == nil || ready.ExpiresAt.Sub(*ready.LeasedAt) != time.Hour {
		t.Fatalf("lease %v–%v, want one hour", ready.LeasedAt, ready.ExpiresAt)
	}
	// Extending past the maximum TTL is refused; within it, accepted.
	if _, err := e.m.Extend(t.Context(), p.ID, 72*time.Hour, "test"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("extend past the maximum TTL: %v, want ErrInvalid", err)
	}
	ext, err := e.m.Extend(t.Context(), p.ID, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	if ext.ExpiresAt.Sub(*ready.ExpiresAt) != time.Hour {
		t.Errorf("extend by 1h moved the end from %v to %v", ready.ExpiresAt, ext.ExpiresAt)
	}

	// Three hours later the lease has expired: the reaper releases it.
	e.skew.Store(int64(3 * time.Hour))
	e.m.Wake()
	e.waitPhase(t, p.ID, preview.PhaseReleased, time.Minute)
	evs, err := e.c.Registry.Events(t.Context(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	reaped := false
	for _, ev := range evs {
		if ev.Type == "preview.release" && ev.Actor == "reaper" && strings.Contains(ev.Reason, "lease expired") {
			reaped = true
		}
	}
	if !reaped {
		t.Errorf("no release by the reaper in %+v", evs)
	}
	e.waitPool(t, registry.PoolAvailable, 3)

	// A request that cannot get an account in time fails, saying why.
	var held []string
	for pr := 20; pr < 23; pr++ {
		p, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: pr, Artifact: build(t, "h"), Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p.ID)
	}
	e.waitPool(t, registry.PoolLeased, 3)
	late, err := e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/web", PR: 99, Artifact: build(t, "late"), Wait: time.Second, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if late.Phase != preview.PhaseWaiting || late.QueuePosition != 1 {
		t.Errorf("late request: phase %s, queue position %d; want waiting, first", late.Phase, late.QueuePosition)
	}
	failed := e.waitPhase(t, late.ID, preview.PhaseFailed, 30*time.Second)
	if !strings.Contains(failed.Reason, "no pool account became free") || !strings.Contains(failed.Reason, "3 leased") {
		t.Errorf("reason %q does not explain the wait", failed.Reason)
	}
	_ = held
}
