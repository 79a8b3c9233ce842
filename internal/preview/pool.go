package preview

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// OrgAPI lists the Organizations calls the pool makes.
type OrgAPI interface {
	ListParents(ctx context.Context, in *organizations.ListParentsInput, opts ...func(*organizations.Options)) (*organizations.ListParentsOutput, error)
	MoveAccount(ctx context.Context, in *organizations.MoveAccountInput, opts ...func(*organizations.Options)) (*organizations.MoveAccountOutput, error)
	TagResource(ctx context.Context, in *organizations.TagResourceInput, opts ...func(*organizations.Options)) (*organizations.TagResourceOutput, error)
}

// ReportReset is the kind of the reset report stored on the preview that
// last held the account.
const ReportReset = "reset"

// TickReport says what one pass over the pool did.
type TickReport struct {
	Leased      int `json:"leased"`
	WaitExpired int `json:"wait_expired"`
	Reaped      int `json:"reaped"`
	Reset       int `json:"reset"`
	ResetFailed int `json:"reset_failed"`
	Quarantined int `json:"quarantined"`
	Created     int `json:"created"`
}

// Tick makes one pass over the pool: fail requests that waited too long,
// lease free accounts to waiting requests in order, release expired leases,
// reset returned accounts, and create accounts the pool lacks. Each step is
// safe to run from several places at once: every write is conditional.
func (m *Manager) Tick(ctx context.Context) (TickReport, error) {
	var rep TickReport
	var errs []error
	if err := m.assign(ctx, &rep); err != nil {
		errs = append(errs, fmt.Errorf("assign: %w", err))
	}
	if err := m.reap(ctx, &rep); err != nil {
		errs = append(errs, fmt.Errorf("reap: %w", err))
	}
	if err := m.resetAll(ctx, &rep); err != nil {
		errs = append(errs, fmt.Errorf("reset: %w", err))
	}
	if err := m.refill(ctx, &rep); err != nil {
		errs = append(errs, fmt.Errorf("refill: %w", err))
	}
	return rep, errors.Join(errs...)
}

// Run ticks every interval, and at once when woken, until ctx ends.
func (m *Manager) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := m.Tick(ctx); err != nil && ctx.Err() == nil {
			m.d.Log.WarnContext(ctx, "pool pass incomplete; the next one retries", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-m.wake:
		}
	}
}

// assign leases available accounts to waiting requests, oldest request
// first and least recently used account first; requests past their
// deadline fail with the pool's state in the reason.
func (m *Manager) assign(ctx context.Context, rep *TickReport) error {
	waiting, err := m.waiting(ctx)
	if err != nil {
		return err
	}
	if len(waiting) == 0 {
		return nil
	}
	now := m.now()
	live := waiting[:0]
	var pool []*registry.PoolAccount // read once, for every expired request's reason
	read := false
	for _, t := range waiting {
		if now.Before(timeAttr(t, attrWaitUntil)) {
			live = append(live, t)
			continue
		}
		if !read {
			if pool, err = m.d.Registry.ListPoolAll(ctx); err != nil {
				return err
			}
			read = true
		}
		if err := m.expire(ctx, t, pool); err != nil && !errors.Is(err, registry.ErrConflict) {
			return err
		}
		rep.WaitExpired++
	}
	avail, err := m.d.Registry.ListPool(ctx, registry.PoolAvailable)
	if err != nil {
		return err
	}
	for i := 0; i < len(live) && i < len(avail); i++ {
		t, a := live[i], avail[i]
		ttl, err := time.ParseDuration(t.Attributes[attrTTL])
		if err != nil || ttl <= 0 {
			ttl = m.cfg.DefaultTTL
		}
		lease := registry.Lease{Repo: t.Attributes[attrRepo], By: t.Attributes[attrRequestedBy], LeasedAt: now, ExpiresAt: now.Add(ttl)}
		fmt.Sscan(t.Attributes[attrPR], &lease.PR)
		_, leased, err := m.d.Registry.LeaseAccount(ctx, a, t, lease, m.cfg.Actor)
		if errors.Is(err, registry.ErrConflict) || errors.Is(err, registry.ErrInvalidTransition) {
			continue // taken or changed meanwhile: the next pass looks again
		}
		if err != nil {
			return err
		}
		rep.Leased++
		m.d.Log.InfoContext(ctx, "account leased", "preview", t.ID, "account", a.AccountID, "expires_at", lease.ExpiresAt)
		m.d.Kick(leased.ID)
	}
	return nil
}

// expire fails a request that waited past its deadline, saying what the
// pool (accounts) was doing meanwhile.
func (m *Manager) expire(ctx context.Context, t *registry.Tenant, accounts []*registry.PoolAccount) error {
	counts := map[registry.PoolState]int{}
	for _, a := range accounts {
		counts[a.State]++
	}
	waited := m.now().Sub(timeAttr(t, attrRequestedAt)).Round(time.Second)
	reason := fmt.Sprintf("no pool account became free within %s: the pool has %d accounts (%d leased, %d resetting, %d quarantined, %d available); release previews, or raise the pool size",
		waited, len(accounts), counts[registry.PoolLeased], counts[registry.PoolResetting], counts[registry.PoolQuarantined], counts[registry.PoolAvailable])
	_, err := m.d.Registry.Transition(ctx, t, registry.StateFailed, registry.Change{Actor: m.cfg.Actor, Reason: reason, Type: "preview.wait_expired"})
	if err == nil {
		m.d.Log.WarnContext(ctx, "preview request expired", "preview", t.ID, "reason", reason)
	}
	return err
}

// reap releases leases past their end.
func (m *Manager) reap(ctx context.Context, rep *TickReport) error {
	leased, err := m.d.Registry.ListPool(ctx, registry.PoolLeased)
	if err != nil {
		return err
	}
	now := m.now()
	for _, a := range leased {
		if a.Lease == nil || now.Before(a.Lease.ExpiresAt) {
			continue
		}
		p, err := m.Down(ctx, a.Lease.Tenant, "reaper", "lease expired at "+a.Lease.ExpiresAt.UTC().Format(time.RFC3339))
		if err != nil {
			if errors.Is(err, registry.ErrNotFound) {
				continue
			}
			return err
		}
		if p.Phase == PhaseReleasing {
			rep.Reaped++
		}
	}
	return nil
}

// resetAll resets every returned account whose backoff has passed, a few
// at a time.
func (m *Manager) resetAll(ctx context.Context, rep *TickReport) error {
	resetting, err := m.d.Registry.ListPool(ctx, registry.PoolResetting)
	if err != nil {
		return err
	}
	now := m.now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 3)
	)
	for _, a := range resetting {
		if a.ResetAttempts > 0 && now.Before(a.UpdatedAt.Add(m.cfg.ResetBackoff<<min(a.ResetAttempts-1, 6))) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			next, err := m.reset(ctx, a)
			if err != nil && ctx.Err() == nil && !errors.Is(err, registry.ErrConflict) {
				next, err = m.stuck(ctx, a, now, err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if !errors.Is(err, registry.ErrConflict) {
					errs = append(errs, err)
				}
			case next.State == registry.PoolAvailable:
				rep.Reset++
			case next.State == registry.PoolQuarantined:
				rep.Quarantined++
			default:
				rep.ResetFailed++
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reset empties a returned account and proves it by inventory: the stack
// instance is gone and a second inventory of every kind of resource the
// app can create finds nothing. Only then is the account available again.
// A failed reset is retried with backoff; MaxResetAttempts failures
// quarantine the account with the leftovers listed.
func (m *Manager) reset(ctx context.Context, a *registry.PoolAccount) (*registry.PoolAccount, error) {
	owner := vending.PoolTag
	if a.Lease != nil {
		owner = a.Lease.Tenant
	}
	// Never delete in an account silo cannot prove is its own.
	if err := m.d.Guard.Check(ctx, a.AccountID, owner); err != nil {
		if gerr := m.d.Guard.Check(ctx, a.AccountID, vending.PoolTag); gerr != nil {
			if !errors.Is(err, vending.ErrRefused) {
				return nil, err
			}
			return m.d.Registry.MovePoolAccount(ctx, a, registry.PoolQuarantined, func(n *registry.PoolAccount) {
				n.Reason = "the destructive-call guard refused a reset: " + err.Error()
			})
		}
		owner = vending.PoolTag
	}
	var leftovers []string
	has, err := m.d.Instances.HasInstance(ctx, a.AccountID, m.cfg.Region)
	if err != nil {
		return nil, err
	}
	if has {
		leftovers = append(leftovers, "stack instance in "+m.cfg.Region)
	}
	report, err := m.d.Cleaner.Clean(ctx, &registry.Tenant{Spec: registry.Spec{ID: owner, Region: m.cfg.Region}, AccountID: a.AccountID})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		leftovers = append(leftovers, "inventory incomplete: "+err.Error())
	} else {
		report.At = m.now()
		if owner != vending.PoolTag {
			if err := m.d.Registry.PutReport(ctx, owner, ReportReset, report); err != nil {
				return nil, err
			}
		}
		for _, f := range report.Remaining {
			leftovers = append(leftovers, f.Kind+" "+f.Name)
		}
	}
	if len(leftovers) == 0 {
		if err := m.tagAndPark(ctx, a.AccountID); err != nil {
			return nil, err
		}
		next, err := m.d.Registry.MovePoolAccount(ctx, a, registry.PoolAvailable, func(n *registry.PoolAccount) {
			n.ResetAttempts, n.Leftovers, n.Reason, n.Lease = 0, nil, "", nil
		})
		if err == nil {
			found := 0
			if report != nil {
				found = len(report.Found)
			}
			m.d.Log.InfoContext(ctx, "pool account reset and verified clean", "account", a.AccountID, "previous", owner, "removed", found)
			m.Wake()
		}
		return next, err
	}
	attempts := a.ResetAttempts + 1
	to := registry.PoolResetting
	reason := ""
	if attempts >= m.cfg.MaxResetAttempts {
		to = registry.PoolQuarantined
		reason = fmt.Sprintf("reset failed %d times; %d left: %s", attempts, len(leftovers), strings.Join(leftovers, ", "))
	}
	next, err := m.d.Registry.MovePoolAccount(ctx, a, to, func(n *registry.PoolAccount) {
		n.ResetAttempts, n.Leftovers, n.Reason = attempts, leftovers, reason
	})
	if err == nil {
		m.d.Log.WarnContext(ctx, "pool account reset failed", "account", a.AccountID, "attempt", attempts, "state", to, "leftovers", leftovers)
	}
	return next, err
}

// stuck quarantines a resetting account whose reset keeps erroring before
// it can count an attempt (AWS unreachable, the guard's reads failing) once
// nothing was recorded on it for Deadlines.PoolResetting: the deadline of
// the pool's own resetting state. The reason quotes the error. Before the
// deadline the error is returned for the next pass to retry.
func (m *Manager) stuck(ctx context.Context, a *registry.PoolAccount, now time.Time, cause error) (*registry.PoolAccount, error) {
	idle := now.Sub(a.UpdatedAt)
	if idle <= m.cfg.Deadlines.PoolResetting {
		return nil, cause
	}
	reason := fmt.Sprintf("no progress in resetting for %s (deadline %s): %s",
		idle.Round(time.Second), m.cfg.Deadlines.PoolResetting, awsx.Brief(cause, 500))
	next, err := m.d.Registry.MovePoolAccount(ctx, a, registry.PoolQuarantined, func(n *registry.PoolAccount) { n.Reason = reason })
	if err == nil {
		m.d.Log.WarnContext(ctx, "pool account past its reset deadline; quarantined", "account", a.AccountID, "reason", reason)
	}
	return next, err
}

// tagAndPark tags a clean account for the pool and moves it to the Pool OU.
func (m *Manager) tagAndPark(ctx context.Context, account string) error {
	if _, err := m.d.Org.TagResource(ctx, &organizations.TagResourceInput{
		ResourceId: aws.String(account),
		Tags:       []orgtypes.Tag{{Key: aws.String(vending.TagTenant), Value: aws.String(vending.PoolTag)}},
	}); err != nil {
		return fmt.Errorf("tag %s for the pool: %w", account, err)
	}
	parents, err := m.d.Org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(account)})
	if err != nil {
		return fmt.Errorf("read parent of %s: %w", account, err)
	}
	if len(parents.Parents) != 1 || aws.ToString(parents.Parents[0].Id) == m.cfg.PoolOU {
		return nil
	}
	_, err = m.d.Org.MoveAccount(ctx, &organizations.MoveAccountInput{
		AccountId: aws.String(account), SourceParentId: parents.Parents[0].Id, DestinationParentId: aws.String(m.cfg.PoolOU),
	})
	if err != nil && !awsx.IsAlreadyExists(err) {
		return fmt.Errorf("move %s to the pool: %w", account, err)
	}
	return nil
}

// refill asks the vending engine for the accounts the pool lacks: each is
// a pool-kind tenant that the reconciler creates under the quota governor
// and hands to the pool once the account is usable.
func (m *Manager) refill(ctx context.Context, rep *TickReport) error {
	if m.cfg.PoolSize <= 0 {
		return nil
	}
	// Records being created are read before the pool: one handed over
	// between the two reads is then counted twice (a refill deferred to
	// the next pass), never missed (an extra account).
	creating, err := m.creating(ctx)
	if err != nil {
		return err
	}
	accounts, err := m.d.Registry.ListPoolAll(ctx)
	if err != nil {
		return err
	}
	have := 0
	for _, a := range accounts {
		if a.State != registry.PoolQuarantined {
			have++
		}
	}
	for need := m.cfg.PoolSize - have - len(creating); need > 0; need-- {
		var b [4]byte
		_, _ = rand.Read(b[:])
		t, err := m.d.Registry.CreateWith(ctx, registry.Spec{
			ID: "pool-" + hex.EncodeToString(b[:]), Name: "preview pool account", Email: m.cfg.ContactEmail,
			Tier: registry.TierStandard, Region: m.cfg.Region, Kind: registry.KindPool,
		}, m.cfg.Actor, nil)
		if err != nil {
			return err
		}
		rep.Created++
		m.d.Log.InfoContext(ctx, "pool account requested", "tenant", t.ID, "target", m.cfg.PoolSize)
		m.d.Kick(t.ID)
	}
	return nil
}
