package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

type fixture struct {
	store   *Store
	db      *dynamodb.Client
	counter *awsx.Counter
}

// newFixture resets the emulator and creates an empty registry table.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	org := emu.ResetT(t)
	counter := awsx.NewCounter()
	cfg, err := org.Config(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	s := New(db, "registry-test")
	if err := s.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	// EnsureTable twice is fine.
	if err := s.EnsureTable(ctx); err != nil {
		t.Fatalf("second EnsureTable: %v", err)
	}
	counter.Reset()
	return &fixture{store: s, db: db, counter: counter}
}

// snapshot returns every item of the table as a sorted list of strings, to
// show that a refused call changed nothing. (Tests may scan; the store may not.)
func (f *fixture) snapshot(t *testing.T) []string {
	t.Helper()
	var out []string
	p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{TableName: aws.String(f.store.Table())})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			var m map[string]any
			if err := attributevalue.UnmarshalMap(it, &m); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	return out
}

func spec(id string) Spec {
	return Spec{ID: id, Name: "Tenant " + id, Email: id + "@example.com", Tier: TierStandard, Region: "eu-west-1"}
}

func TestCreateGetListTransitionEvents(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.store

	created, ok, err := s.Create(ctx, spec("acme"), "key-1", "signup")
	if err != nil || !ok {
		t.Fatalf("Create = %v, %v", ok, err)
	}
	if created.State != StateRequested || created.Version != 1 || created.Kind != KindTenant {
		t.Errorf("new tenant = %+v", created)
	}
	got, err := s.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("Get (-created +got):\n%s", diff)
	}

	// Walk the happy path, recording an account on the way.
	cur := got
	steps := []struct {
		to     State
		mutate func(*Tenant)
	}{
		{StateCreatingAccount, func(t *Tenant) { t.Operation = "car-123" }},
		{StatePreparing, func(t *Tenant) { t.AccountID = "111122223333"; t.Operation = "" }},
		{StateDeploying, nil},
		{StateActive, func(t *Tenant) { t.Endpoint = "https://acme.example"; t.AppVersion = "v1" }},
	}
	for _, st := range steps {
		cur, err = s.Transition(ctx, cur, st.to, Change{Actor: "reconciler", Mutate: st.mutate})
		if err != nil {
			t.Fatalf("to %s: %v", st.to, err)
		}
	}
	if cur.Version != 5 || cur.AccountID != "111122223333" || cur.Endpoint != "https://acme.example" {
		t.Errorf("after walk: %+v", cur)
	}
	byAcct, err := s.GetByAccount(ctx, "111122223333")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cur, byAcct); diff != "" {
		t.Errorf("GetByAccount (-want +got):\n%s", diff)
	}
	if _, err := s.GetByAccount(ctx, "999999999999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetByAccount(unknown) = %v, want ErrNotFound", err)
	}

	active, err := s.List(ctx, StateActive, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(active.Tenants) != 1 || active.Tenants[0].ID != "acme" || active.Next != "" {
		t.Errorf("List(ACTIVE) = %+v", active)
	}
	requested, err := s.List(ctx, StateRequested, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(requested.Tenants) != 0 {
		t.Errorf("List(REQUESTED) still has %d tenants", len(requested.Tenants))
	}

	// An Update with an event type is audited; one without is not.
	cur, err = s.Update(ctx, cur, Change{Actor: "operator:ann", Type: "redeploy", Reason: "ticket 42"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err = s.Update(ctx, cur, Change{Mutate: func(t *Tenant) { t.Health = &Health{Status: HealthUp, LatencyMS: 42} }})
	if err != nil {
		t.Fatal(err)
	}

	events, err := s.Events(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got2 []string
	for _, e := range events {
		got2 = append(got2, fmt.Sprintf("%d %s %s>%s %s %s", e.Seq, e.Type, e.From, e.To, e.Actor, e.Reason))
	}
	want := []string{
		"1 created >REQUESTED signup ",
		"2 state_changed REQUESTED>CREATING_ACCOUNT reconciler ",
		"3 state_changed CREATING_ACCOUNT>PREPARING reconciler ",
		"4 state_changed PREPARING>DEPLOYING reconciler ",
		"5 state_changed DEPLOYING>ACTIVE reconciler ",
		"6 redeploy > operator:ann ticket 42",
	}
	if diff := cmp.Diff(want, got2); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if cur.Version != 7 || cur.Health == nil || cur.Health.Status != HealthUp {
		t.Errorf("after updates: version %d health %+v", cur.Version, cur.Health)
	}
}

func TestFailAndRetry(t *testing.T) {
	ctx := context.Background()
	s := newFixture(t).store
	cur, _, err := s.Create(ctx, spec("flaky"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	cur, err = s.Transition(ctx, cur, StateCreatingAccount, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, cur, StateFailed, Change{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("FAILED without reason: %v, want ErrInvalid", err)
	}
	cur, err = s.Transition(ctx, cur, StateFailed, Change{Reason: "EMAIL_ALREADY_EXISTS"})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Reason != "EMAIL_ALREADY_EXISTS" || cur.FailedFrom != StateCreatingAccount {
		t.Errorf("failed tenant: reason %q from %q", cur.Reason, cur.FailedFrom)
	}
	cur, err = s.Transition(ctx, cur, cur.FailedFrom, Change{Actor: "operator:bob", Type: "retry"})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Reason != "" || cur.FailedFrom != "" || cur.State != StateCreatingAccount {
		t.Errorf("retried tenant: %+v", cur)
	}
}

func TestTombstoneOnClose(t *testing.T) {
	ctx := context.Background()
	s := newFixture(t).store
	cur, _, err := s.Create(ctx, spec("gone"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	cur, err = s.Transition(ctx, cur, StateDecommissioning, Change{Actor: "operator:ann", Reason: "churned"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err = s.Transition(ctx, cur, StateClosed, Change{Actor: "reconciler"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Tombstone() || got.ClosedAt == nil {
		t.Errorf("closed tenant is not a tombstone: %+v", got)
	}
	for _, to := range []State{StateActive, StateRequested, StateDecommissioning} {
		if _, err := s.Transition(ctx, cur, to, Change{}); !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("CLOSED -> %s: %v, want ErrInvalidTransition", to, err)
		}
	}
	if _, _, err := s.Create(ctx, spec("gone"), "", ""); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("reusing a closed id: %v, want ErrAlreadyExists", err)
	}
	events, err := s.Events(ctx, "gone")
	if err != nil || len(events) != 3 {
		t.Errorf("closed tenant keeps its history: %d events, %v", len(events), err)
	}
}

func TestIdempotentCreate(t *testing.T) {
	ctx := context.Background()
	s := newFixture(t).store
	first, created, err := s.Create(ctx, spec("idem-a"), "signup-1", "")
	if err != nil || !created {
		t.Fatal(created, err)
	}
	// Same key, same request, even with another generated id: the same tenant.
	again := spec("idem-a")
	again.ID = "idem-b"
	got, created, err := s.Create(ctx, again, "signup-1", "")
	if err != nil || created {
		t.Fatalf("replay: created=%v err=%v", created, err)
	}
	if got.ID != first.ID {
		t.Errorf("replay returned %s, want %s", got.ID, first.ID)
	}
	// Same key, another request: conflict.
	other := spec("idem-a")
	other.Tier = TierEnterprise
	if _, _, err := s.Create(ctx, other, "signup-1", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("same key, other spec: %v, want ErrConflict", err)
	}
	if _, err := s.Get(ctx, "idem-b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("replay created a second tenant: %v", err)
	}
	// No key: an existing id is taken.
	if _, _, err := s.Create(ctx, spec("idem-a"), "", ""); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("same id without key: %v, want ErrAlreadyExists", err)
	}
}

func TestConcurrentCreateOneKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const n = 100
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	var fresh sync.Map
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp := spec("racer")
			sp.ID = fmt.Sprintf("racer-%03d", i) // as a signup API that derives an id per attempt
			got, created, err := f.store.Create(ctx, sp, "same-key", "")
			errs[i] = err
			if err == nil {
				ids[i] = got.ID
				if created {
					fresh.Store(i, true)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create %d: %v", i, err)
		}
	}
	winners := 0
	fresh.Range(func(any, any) bool { winners++; return true })
	if winners != 1 {
		t.Errorf("%d creates reported a new tenant, want 1", winners)
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("create %d answered %s, create 0 answered %s", i, id, ids[0])
		}
	}
	page, err := f.store.List(ctx, StateRequested, ListOptions{Limit: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Tenants) != 1 {
		t.Errorf("%d tenants exist, want 1", len(page.Tenants))
	}
}

func TestTransitionRace(t *testing.T) {
	ctx := context.Background()
	s := newFixture(t).store
	cur, _, err := s.Create(ctx, spec("contested"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, cur, StateCreatingAccount, Change{}); err != nil {
		t.Fatal(err)
	}
	// Five rounds; in each, 50 writers hold the same version and race.
	const writers, rounds = 50, 5
	for round := range rounds {
		base, err := s.Get(ctx, "contested")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([]error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[w] = s.Update(ctx, base, Change{Type: "probe", Actor: fmt.Sprintf("w%d", w),
					Mutate: func(t *Tenant) { t.Operation = fmt.Sprintf("op-%d-%d", round, w) }})
			}()
		}
		wg.Wait()
		wins := 0
		for w, err := range results {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, ErrConflict):
				t.Errorf("round %d writer %d: %v, want nil or ErrConflict", round, w, err)
			}
		}
		if wins != 1 {
			t.Errorf("round %d: %d writers won version %d, want exactly 1", round, wins, base.Version)
		}
		after, _ := s.Get(ctx, "contested")
		if after.Version != base.Version+1 {
			t.Errorf("round %d: version %d -> %d, want +1", round, base.Version, after.Version)
		}
	}
	events, err := s.Events(ctx, "contested")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2+rounds {
		t.Errorf("%d audit events, want %d (one per winning write)", len(events), 2+rounds)
	}
}

func TestListThousandAcrossPagesWithoutScan(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const n = 1000
	want := make(map[string]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("bulk-%04d", i)
			if _, _, err := f.store.Create(ctx, spec(id), "", ""); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want[id] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.counter.Reset()

	seen := map[string]int{}
	pages := 0
	var cursor string
	for {
		page, err := f.store.List(ctx, StateRequested, ListOptions{Limit: 73, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
		for _, tn := range page.Tenants {
			seen[tn.ID]++
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
		if pages > 100 {
			t.Fatal("listing does not end")
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d distinct tenants, want %d", len(seen), len(want))
	}
	for id, c := range seen {
		if c != 1 || !want[id] {
			t.Errorf("tenant %s listed %d times (created: %v)", id, c, want[id])
		}
	}
	if scans := f.counter.Calls("DynamoDB", "Scan"); scans != 0 {
		t.Errorf("listing made %d Scan calls, want 0", scans)
	}
	if q := f.counter.Calls("DynamoDB", "Query"); q != int64(pages) {
		t.Errorf("listing made %d Query calls for %d pages", q, pages)
	}
	t.Logf("1000 tenants in %d pages, calls: %v", pages, f.counter.Snapshot())
}

func TestBadInputLeavesTableUnchanged(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.store
	base, _, err := s.Create(ctx, spec("steady"), "k", "")
	if err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t)

	mustFail := []struct {
		name string
		call func() error
		want error
		text string
	}{
		{"bad id", func() error { _, _, err := s.Create(ctx, spec("-bad"), "", ""); return err }, ErrInvalid, "hyphen"},
		{"bad email", func() error {
			sp := spec("okid")
			sp.Email = "nope"
			_, _, err := s.Create(ctx, sp, "", "")
			return err
		}, ErrInvalid, "email"},
		{"bad tier", func() error { sp := spec("okid"); sp.Tier = "gold"; _, _, err := s.Create(ctx, sp, "", ""); return err }, ErrInvalid, "tier"},
		{"bad region", func() error {
			sp := spec("okid")
			sp.Region = "mars-1"
			_, _, err := s.Create(ctx, sp, "", "")
			return err
		}, ErrInvalid, "region"},
		{"bad key", func() error { _, _, err := s.Create(ctx, spec("okid"), "has space", ""); return err }, ErrInvalid, "idempotency_key"},
		{"get bad id", func() error { _, err := s.Get(ctx, "UPPER"); return err }, ErrInvalid, "id"},
		{"get missing", func() error { _, err := s.Get(ctx, "missing"); return err }, ErrNotFound, "missing"},
		{"bad account", func() error { _, err := s.GetByAccount(ctx, "12ab"); return err }, ErrInvalid, "12-digit"},
		{"bad state", func() error { _, err := s.List(ctx, "SLEEPING", ListOptions{}); return err }, ErrInvalid, "SLEEPING"},
		{"bad limit", func() error { _, err := s.List(ctx, StateActive, ListOptions{Limit: 5000}); return err }, ErrInvalid, "limit"},
		{"bad cursor", func() error { _, err := s.List(ctx, StateRequested, ListOptions{Cursor: "garbage!"}); return err }, ErrInvalidCursor, "previous page"},
		{"cursor of other state", func() error {
			c, _ := encodeCursorFor(StateActive, "steady")
			_, err := s.List(ctx, StateRequested, ListOptions{Cursor: c})
			return err
		}, ErrInvalidCursor, "ACTIVE"},
		{"skip to ACTIVE", func() error { _, err := s.Transition(ctx, base, StateActive, Change{}); return err }, ErrInvalidTransition, "REQUESTED to ACTIVE"},
		{"unknown state", func() error { _, err := s.Transition(ctx, base, "LIMBO", Change{}); return err }, ErrInvalid, "LIMBO"},
		{"stale version", func() error {
			stale := *base
			stale.Version = 0
			_, err := s.Transition(ctx, &stale, StateCreatingAccount, Change{})
			return err
		}, ErrInvalid, "version"},
		{"bad account in mutate", func() error {
			_, err := s.Transition(ctx, base, StateCreatingAccount, Change{Mutate: func(t *Tenant) { t.AccountID = "x" }})
			return err
		}, ErrInvalid, "12-digit"},
	}
	for _, tc := range mustFail {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("message %q does not mention %q", err, tc.text)
			}
		})
	}
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("refused calls changed the table (-before +after):\n%s", diff)
	}
	// A real conflict: write once, then write again from the old copy.
	if _, err := s.Update(ctx, base, Change{Mutate: func(t *Tenant) { t.Health = &Health{Status: HealthUp, LatencyMS: 42} }}); err != nil {
		t.Fatal(err)
	}
	mid := f.snapshot(t)
	if _, err := s.Transition(ctx, base, StateCreatingAccount, Change{}); !errors.Is(err, ErrConflict) {
		t.Errorf("stale write: %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(mid, f.snapshot(t)); diff != "" {
		t.Errorf("a lost race changed the table:\n%s", diff)
	}
}

// encodeCursorFor builds a well-formed cursor for a listing of state.
func encodeCursorFor(state State, id string) (string, error) {
	return encodeCursor(state, map[string]types.AttributeValue{
		attrPK:      &types.AttributeValueMemberS{Value: prefixTenant + id},
		attrStateSK: &types.AttributeValueMemberS{Value: sortTime(time.Now()) + "#" + id},
	})
}
