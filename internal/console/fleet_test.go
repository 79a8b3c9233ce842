package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// fakeStore serves a fixed fleet and counts list calls; the refresh logic
// is about timing and counting, which a fake shows more plainly than moto.
type fakeStore struct {
	mu      sync.Mutex
	tenants []*registry.Tenant
	lists   atomic.Int64
	block   chan struct{} // when set, List waits on it
	err     error         // when set, List fails with it
}

func (s *fakeStore) List(ctx context.Context, st registry.State, o registry.ListOptions) (*registry.Page, error) {
	s.lists.Add(1)
	if s.err != nil {
		return nil, s.err
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &registry.Page{}
	for _, t := range s.tenants {
		if t.State == st {
			p.Tenants = append(p.Tenants, t)
		}
	}
	return p, nil
}

func (s *fakeStore) Get(context.Context, string) (*registry.Tenant, error) {
	return nil, registry.ErrNotFound
}

func (s *fakeStore) Events(context.Context, string) ([]registry.Event, error) { return nil, nil }

func (s *fakeStore) Rollups(context.Context, string, time.Time) ([]registry.Rollup, error) {
	return nil, nil
}

// fakeVerifier accepts the token "ok" as a viewer.
type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, tok string) (api.Principal, error) {
	if tok == "ok" {
		return api.Principal{Subject: "bench", Role: api.RoleViewer}, nil
	}
	return api.Principal{}, errors.New("bad token")
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLazyRefresh(t *testing.T) {
	now := &clock{t: time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)}
	store := &fakeStore{tenants: fleetTenants(20, now.Now())}
	c, err := New(Deps{Registry: store, Verifier: fakeVerifier{}}, Options{Now: now.Now, RefreshEvery: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	states := int64(len(registry.States()))
	get := func() string {
		r := do(t, c, "GET", "/tenants?per=500", "ok", nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return r.body
	}

	// The first requests load at once, together, and only once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { get() })
	}
	wg.Wait()
	if n := store.lists.Load(); n != states {
		t.Fatalf("first load: %d List calls, want %d", n, states)
	}
	// Fresh: no reads.
	now.Add(5 * time.Second)
	get()
	if n := store.lists.Load(); n != states {
		t.Fatalf("fresh snapshot read again: %d", n)
	}

	// Stale: requests are served the old snapshot while one refresh runs.
	store.block = make(chan struct{})
	store.mu.Lock()
	store.tenants = append(store.tenants, &registry.Tenant{Spec: registry.Spec{ID: "t-new", Name: "Newcomer", Email: "n@example.com",
		Tier: registry.TierBasic, Region: "us-east-1"}, State: registry.StateActive})
	store.mu.Unlock()
	now.Add(10 * time.Second)
	for range 5 {
		if strings.Contains(get(), "t-new") {
			t.Fatal("stale request waited for the refresh")
		}
	}
	close(store.block)
	c.fleet.wg.Wait()
	if n := store.lists.Load(); n != 2*states {
		t.Fatalf("refresh: %d List calls, want %d (single-flight)", n, 2*states)
	}
	if !strings.Contains(get(), "t-new") {
		t.Fatal("refreshed snapshot not served")
	}

	// Refresh forces a read.
	if err := c.Refresh(t.Context()); err != nil || store.lists.Load() != 3*states {
		t.Fatalf("Refresh: %v, %d calls", err, store.lists.Load())
	}
}

func TestRegistryDownIs503WithoutInternals(t *testing.T) {
	store := &fakeStore{err: errors.New("dial tcp 10.1.2.3:443: secret-internal-detail")}
	logs := &syncBuffer{}
	c, err := New(Deps{Registry: store, Verifier: fakeVerifier{}, Log: slog.New(slog.NewTextHandler(logs, nil))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"/", "/tenants"} {
		r := do(t, c, "GET", p, "ok", nil, nil)
		if r.status != http.StatusServiceUnavailable || strings.Contains(r.body, "secret-internal-detail") || !strings.Contains(r.body, "Reference:") {
			t.Errorf("GET %s: %d\n%s", p, r.status, r.body)
		}
	}
	if !strings.Contains(logs.String(), "secret-internal-detail") {
		t.Errorf("the cause is not logged")
	}
}

// BenchmarkOverview10k and BenchmarkTenantList10k render from an in-memory
// 10,000-tenant snapshot: the server time of a page, without the registry.
func BenchmarkOverview10k(b *testing.B) {
	c := benchConsole(b)
	for b.Loop() {
		if r := do(b, c, "GET", "/", "ok", nil, nil); r.status != http.StatusOK {
			b.Fatal(r.status)
		}
	}
}

func BenchmarkTenantList10k(b *testing.B) {
	c := benchConsole(b)
	queries := []string{
		"/tenants",
		"/tenants?q=tenant%2001&sort=name&order=desc&per=100",
		"/tenants?state=ACTIVE&health=down&sort=uptime&page=3",
		"/tenants?sort=updated&order=desc&per=500&page=7",
	}
	i := 0
	for b.Loop() {
		if r := do(b, c, "GET", queries[i%len(queries)], "ok", nil, nil); r.status != http.StatusOK {
			b.Fatal(r.status, r.body)
		}
		i++
	}
}

func BenchmarkSnapshotBuild10k(b *testing.B) {
	ts := fleetTenants(10000, time.Now())
	for b.Loop() {
		buildSnapshot(time.Now(), append([]*registry.Tenant(nil), ts...), vending.DefaultDeadlines())
	}
}

func benchConsole(b *testing.B) *Console {
	b.Helper()
	c, err := NewFromTenants(fleetTenants(10000, time.Now()), Deps{Verifier: fakeVerifier{}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}
