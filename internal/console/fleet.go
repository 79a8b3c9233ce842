package console

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// snapshot is every tenant of the fleet at one moment, with what the pages
// need precomputed: it is built once per refresh and then only read, by any
// number of requests at once, so it is never modified after build.
type snapshot struct {
	at   time.Time
	rows []*row // by id
	byID map[string]*row
	// orders holds, per sort key, the indexes of rows in ascending order
	// (ties by id), so a list request filters in one pass and never sorts.
	orders map[string][]int32

	states      map[registry.State]int
	health      map[string]int // among serving tenants: up, degraded, down, unknown
	serving     int
	failing     []*row // serving, down then degraded, longest failing first
	uptimeSum   float64
	uptimeN     int
	accounts    []string // distinct account ids of tenants, for the cost total
	versions    []string // distinct app versions, for the filter
	tenantCount int

	// overdue are the tenants past their state's deadline, longest past
	// first (judged when the snapshot was built).
	overdue []*row

	// poolCreating counts pool accounts the vending engine is still making
	// (pool-kind tenants in a working state).
	poolCreating int
	// waiting are the preview requests with no account yet, longest
	// waiting first.
	waiting []*row
}

// row is one tenant with its derived fields.
type row struct {
	T *registry.Tenant
	// Key is what a search matches: id, name, email and account, lower-cased.
	Key string
	// Status is the tenant's health: up, degraded, down or unknown.
	Status string
	// V is the tenant judged against its state's deadline when the
	// snapshot was built.
	V vending.Verdict
}

// Sort keys of the tenant list.
var sortKeys = []string{"id", "name", "state", "since", "health", "tier", "version", "updated", "uptime"}

// healthRank orders health in a sort: the worse, the later.
var healthRank = map[string]int{"up": 0, "degraded": 1, "down": 2, "unknown": 3}

// serving reports whether a tenant is supposed to answer on its endpoint:
// only those count in health figures (a suspended tenant is down on purpose).
func serving(s registry.State) bool { return s == registry.StateActive || s == registry.StateUpdating }

func healthOf(t *registry.Tenant) string {
	if t.Health == nil || t.Health.Status == registry.HealthUnknown {
		return "unknown"
	}
	return string(t.Health.Status)
}

// buildSnapshot indexes tenants, judging each against its state's deadline
// (d, with its defaults) at at. It takes ownership of the slice.
func buildSnapshot(at time.Time, tenants []*registry.Tenant, d vending.Deadlines) *snapshot {
	s := &snapshot{
		at: at, byID: make(map[string]*row, len(tenants)), orders: map[string][]int32{},
		states: map[registry.State]int{}, health: map[string]int{"up": 0, "degraded": 0, "down": 0, "unknown": 0},
		tenantCount: len(tenants),
	}
	// A tenant that moved state while the fleet was read can be listed
	// twice; keep its newest version.
	slices.SortFunc(tenants, func(a, b *registry.Tenant) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), cmp.Compare(b.Version, a.Version))
	})
	tenants = slices.CompactFunc(tenants, func(a, b *registry.Tenant) bool { return a.ID == b.ID })
	s.rows = make([]*row, len(tenants))
	accounts, versions := map[string]bool{}, map[string]bool{}
	for i, t := range tenants {
		r := &row{T: t, Status: healthOf(t), Key: strings.ToLower(t.ID + "\x00" + t.Name + "\x00" + t.Email + "\x00" + t.AccountID),
			V: d.Judge(t, at)}
		s.rows[i] = r
		if r.V.Overdue {
			s.overdue = append(s.overdue, r)
		}
		s.byID[t.ID] = r
		s.states[t.State]++
		if t.AccountID != "" {
			accounts[t.AccountID] = true
		}
		if t.AppVersion != "" {
			versions[t.AppVersion] = true
		}
		switch {
		case t.Kind == registry.KindPool && creating(t.State):
			s.poolCreating++
		case t.Kind == registry.KindPreview && t.State == registry.StateRequested && t.AccountID == "":
			s.waiting = append(s.waiting, r)
		}
		if !serving(t.State) {
			continue
		}
		s.serving++
		s.health[r.Status]++
		if r.Status == "down" || r.Status == "degraded" {
			s.failing = append(s.failing, r)
		}
		if t.Health != nil && t.Health.Uptime24h != nil {
			s.uptimeSum += *t.Health.Uptime24h
			s.uptimeN++
		}
	}
	s.tenantCount = len(s.rows)
	slices.SortFunc(s.failing, func(a, b *row) int {
		if c := cmp.Compare(healthRank[b.Status], healthRank[a.Status]); c != 0 {
			return c
		}
		if c := a.T.Health.Since.Compare(b.T.Health.Since); c != 0 {
			return c
		}
		return strings.Compare(a.T.ID, b.T.ID)
	})
	slices.SortFunc(s.overdue, func(a, b *row) int {
		return cmp.Or(cmp.Compare(b.V.Idle-b.V.Limit, a.V.Idle-a.V.Limit), strings.Compare(a.T.ID, b.T.ID))
	})
	slices.SortFunc(s.waiting, func(a, b *row) int {
		return cmp.Or(waitingSince(a.T).Compare(waitingSince(b.T)), strings.Compare(a.T.ID, b.T.ID))
	})
	s.accounts = slices.Sorted(maps.Keys(accounts))
	s.versions = slices.Sorted(maps.Keys(versions))

	for _, key := range sortKeys {
		idx := make([]int32, len(s.rows))
		for i := range idx {
			idx[i] = int32(i)
		}
		less := rowCompare(key)
		// rows are by id, so a stable sort leaves ties in id order.
		slices.SortStableFunc(idx, func(a, b int32) int { return less(s.rows[a], s.rows[b]) })
		s.orders[key] = idx
	}
	return s
}

// creating reports whether a pool-kind tenant is still being made into a
// pool account.
func creating(s registry.State) bool {
	switch s {
	case registry.StateRequested, registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying:
		return true
	}
	return false
}

// waitingSince is when a preview request began waiting for an account:
// the requested_at the preview pool stamps on it (a reopened preview keeps
// its old record, so its creation is not the request).
func waitingSince(t *registry.Tenant) time.Time {
	if at, err := time.Parse(time.RFC3339Nano, t.Attributes["requested_at"]); err == nil {
		return at
	}
	return t.CreatedAt
}

func rowCompare(key string) func(a, b *row) int {
	switch key {
	case "name":
		return func(a, b *row) int { return cmp.Compare(strings.ToLower(a.T.Name), strings.ToLower(b.T.Name)) }
	case "state":
		return func(a, b *row) int { return cmp.Compare(stateRank[a.T.State], stateRank[b.T.State]) }
	case "since":
		return func(a, b *row) int { return a.V.Since.Compare(b.V.Since) }
	case "health":
		return func(a, b *row) int { return cmp.Compare(healthRank[a.Status], healthRank[b.Status]) }
	case "tier":
		return func(a, b *row) int { return cmp.Compare(tierRank[a.T.Tier], tierRank[b.T.Tier]) }
	case "version":
		return func(a, b *row) int { return cmp.Compare(a.T.AppVersion, b.T.AppVersion) }
	case "updated":
		return func(a, b *row) int { return a.T.UpdatedAt.Compare(b.T.UpdatedAt) }
	case "uptime":
		return func(a, b *row) int { return cmp.Compare(uptimeOf(a.T), uptimeOf(b.T)) }
	}
	return func(a, b *row) int { return 0 } // id: rows are already by id
}

// uptimeOf is a tenant's 24-hour uptime for sorting; unknown sorts first.
func uptimeOf(t *registry.Tenant) float64 {
	if t.Health == nil || t.Health.Uptime24h == nil {
		return -1
	}
	return *t.Health.Uptime24h
}

var stateRank = func() map[registry.State]int {
	m := map[registry.State]int{}
	for i, s := range registry.States() {
		m[s] = i
	}
	return m
}()

var tierRank = map[registry.Tier]int{registry.TierBasic: 0, registry.TierStandard: 1, registry.TierEnterprise: 2}

// fleet holds the current snapshot and refreshes it lazily: a request that
// finds it stale is served the stale one and starts one refresh in the
// background, so no request waits on a full fleet read except the first.
// That needs no ticker, which suits a Lambda as well as `silo local`.
type fleet struct {
	load  func(ctx context.Context) (*snapshot, error)
	every time.Duration
	now   func() time.Time
	log   logger

	cur atomic.Pointer[snapshot]
	// first serializes the synchronous first load, so a burst of first
	// requests reads the fleet once.
	first sync.Mutex
	// refreshing makes background refreshes single-flight; lastTry keeps a
	// failing registry from being asked again by every request.
	refreshing atomic.Bool
	lastTry    atomic.Int64 // unix nanoseconds

	// ctx and wg own the background refreshes: Close cancels and waits.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// logger is the part of *slog.Logger the fleet uses.
type logger interface {
	ErrorContext(ctx context.Context, msg string, args ...any)
}

func newFleet(load func(ctx context.Context) (*snapshot, error), every time.Duration, now func() time.Time, log logger) *fleet {
	ctx, cancel := context.WithCancel(context.Background())
	return &fleet{load: load, every: every, now: now, log: log, ctx: ctx, cancel: cancel}
}

// refreshTimeout bounds one full read of the registry.
const refreshTimeout = 2 * time.Minute

// get returns the current snapshot, loading it first if there is none, and
// starts a background refresh if it is older than every.
func (f *fleet) get(ctx context.Context) (*snapshot, error) {
	s := f.cur.Load()
	if s == nil {
		f.first.Lock()
		defer f.first.Unlock()
		if s = f.cur.Load(); s == nil {
			var err error
			if s, err = f.refresh(ctx); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	now := f.now()
	if now.Sub(s.at) >= f.every && now.Sub(time.Unix(0, f.lastTry.Load())) >= f.every && f.refreshing.CompareAndSwap(false, true) {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(f.ctx, refreshTimeout)
			defer cancel()
			if _, err := f.refresh(ctx); err != nil && f.ctx.Err() == nil {
				f.log.ErrorContext(ctx, "fleet refresh failed; serving the previous snapshot", "error", err, "snapshot_age", now.Sub(s.at).String())
			}
		}()
	}
	return s, nil
}

// refresh loads a new snapshot and makes it current.
func (f *fleet) refresh(ctx context.Context) (*snapshot, error) {
	f.lastTry.Store(f.now().UnixNano())
	s, err := f.load(ctx)
	if err != nil {
		return nil, err
	}
	f.cur.Store(s)
	return s, nil
}

func (f *fleet) close() {
	f.cancel()
	f.wg.Wait()
}

// loadFleet reads every tenant in every state, a Query per state (in
// parallel: they are independent) and up to registry.MaxPageSize a page.
func loadFleet(ctx context.Context, reg tenantStore, now func() time.Time, d vending.Deadlines) (*snapshot, error) {
	at := now()
	states := registry.States()
	parts := make([][]*registry.Tenant, len(states))
	errs := make([]error, len(states))
	var wg sync.WaitGroup
	for i, st := range states {
		wg.Go(func() {
			cursor := ""
			for {
				page, err := reg.List(ctx, st, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
				if err != nil {
					errs[i] = fmt.Errorf("list %s tenants: %w", st, err)
					return
				}
				parts[i] = append(parts[i], page.Tenants...)
				if page.Next == "" {
					return
				}
				cursor = page.Next
			}
		})
	}
	wg.Wait()
	var all []*registry.Tenant
	for i := range states {
		if errs[i] != nil {
			return nil, errs[i]
		}
		all = append(all, parts[i]...)
	}
	return buildSnapshot(at, all, d), nil
}
