package vending

import (
	"fmt"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Every working state has a deadline: a tenant that makes no progress in
// it for longer goes to FAILED with the reason AWS gives (see expire.go).
// The judgement is made from what the registry records, never from memory,
// so that the runner's sweep (in AWS: the minute sweep of a Lambda) and a
// Drive waiting on the tenant reach the same verdict:
//
//   - the clock starts at the tenant's last progress (registry
//     Tenant.LastProgress: it entered the state, or the reconciler recorded
//     an operation handle or checkpointed a step);
//   - time spent under a live quota note (Tenant.Waiting, renewed by the
//     waiter) does not count: a wait for a quota AWS enforces is visible
//     and bounded, not stuck; the clock restarts when the note runs out;
//   - a parked preview (waiting for a pool account) is judged by the pool
//     against its own --wait, and an UPDATING tenant held by a rollout by
//     the rollout's waves and gates: the reconciler does not work on
//     either, so it does not judge them.

// StateDeadlines bounds, for each working state, how long a tenant may
// make no progress there. A zero field takes its default.
type StateDeadlines struct {
	Requested       time.Duration `json:"requested,omitempty"`
	CreatingAccount time.Duration `json:"creating_account,omitempty"`
	Preparing       time.Duration `json:"preparing,omitempty"`
	Deploying       time.Duration `json:"deploying,omitempty"`
	Updating        time.Duration `json:"updating,omitempty"`
	Decommissioning time.Duration `json:"decommissioning,omitempty"`
}

// Of returns the deadline of state s; zero for a state that has none (the
// resting states: ACTIVE, SUSPENDED, CLOSED, FAILED).
func (d StateDeadlines) Of(s registry.State) time.Duration {
	switch s {
	case registry.StateRequested:
		return d.Requested
	case registry.StateCreatingAccount:
		return d.CreatingAccount
	case registry.StatePreparing:
		return d.Preparing
	case registry.StateDeploying:
		return d.Deploying
	case registry.StateUpdating:
		return d.Updating
	case registry.StateDecommissioning:
		return d.Decommissioning
	}
	return 0
}

func (d StateDeadlines) withDefaults(def StateDeadlines) StateDeadlines {
	orDefault(&d.Requested, def.Requested)
	orDefault(&d.CreatingAccount, def.CreatingAccount)
	orDefault(&d.Preparing, def.Preparing)
	orDefault(&d.Deploying, def.Deploying)
	orDefault(&d.Updating, def.Updating)
	orDefault(&d.Decommissioning, def.Decommissioning)
	return d
}

// Deadlines is the whole deadline configuration: per state for customer
// tenants, previews and pool-account records, the preview pool's resets,
// and how long a quota note holds. docs/operations.md explains each
// default.
type Deadlines struct {
	// Tenant bounds customer tenants (kind tenant).
	Tenant StateDeadlines `json:"tenant"`
	// Preview bounds PR previews (kind preview), and Pool the vending
	// records that make warm-pool accounts (kind pool). A zero field takes
	// its default in DefaultDeadlines, and where that is zero too,
	// Tenant's.
	Preview StateDeadlines `json:"preview"`
	Pool    StateDeadlines `json:"pool"`
	// PoolResetting bounds how long a returned pool account may stay
	// resetting without a reset attempt being recorded (a reset that keeps
	// erroring before it can count an attempt); past it the account is
	// quarantined with the error. Failed attempts are counted and
	// quarantine the account after the pool's MaxResetAttempts.
	PoolResetting time.Duration `json:"pool_resetting,omitempty"`
	// QuotaNote is how long a quota note (Tenant.Waiting) holds unless its
	// waiter renews it; the waiter renews it when less than half is left,
	// so a waiting tenant costs one registry write per QuotaNote/2.
	QuotaNote time.Duration `json:"quota_note,omitempty"`
}

// DefaultDeadlines returns the defaults, sized for AWS: account creation
// takes minutes, a new account may be unusable for up to 20 minutes
// (aws:PrincipalOrgID), a StackSet operation and the tenant stack take
// minutes, and decommissioning deletes and inventories a whole account.
// Waits behind a quota (create-account slots, one operation per stack set,
// account closures) do not count against them.
func DefaultDeadlines() Deadlines { return Deadlines{}.WithDefaults() }

// defaultDeadlines are the defaults as written, before Preview and Pool
// take Tenant's where they have none of their own.
func defaultDeadlines() Deadlines {
	return Deadlines{
		Tenant: StateDeadlines{
			Requested:       15 * time.Minute,
			CreatingAccount: 30 * time.Minute,
			Preparing:       30 * time.Minute,
			Deploying:       30 * time.Minute,
			Updating:        30 * time.Minute,
			Decommissioning: time.Hour,
		},
		// A preview's account comes from the pool, already usable: only
		// the retag and the OU move remain before its stack deploys, and
		// CI is waiting.
		Preview: StateDeadlines{
			Preparing:       10 * time.Minute,
			Deploying:       20 * time.Minute,
			Updating:        20 * time.Minute,
			Decommissioning: 30 * time.Minute,
		},
		PoolResetting: time.Hour,
		QuotaNote:     5 * time.Minute,
	}
}

// WithDefaults fills every unset field with its default.
func (d Deadlines) WithDefaults() Deadlines {
	def := defaultDeadlines()
	d.Tenant = d.Tenant.withDefaults(def.Tenant)
	d.Preview = d.Preview.withDefaults(def.Preview.withDefaults(d.Tenant))
	d.Pool = d.Pool.withDefaults(def.Pool.withDefaults(d.Tenant))
	orDefault(&d.PoolResetting, def.PoolResetting)
	orDefault(&d.QuotaNote, def.QuotaNote)
	return d
}

// Scaled returns d with every deadline multiplied by f, for tests and
// local runs against the emulator, which is hundreds of times faster than
// AWS.
func (d Deadlines) Scaled(f float64) Deadlines {
	d = d.WithDefaults()
	s := func(v *time.Duration) { *v = time.Duration(float64(*v) * f) }
	for _, sd := range []*StateDeadlines{&d.Tenant, &d.Preview, &d.Pool} {
		s(&sd.Requested)
		s(&sd.CreatingAccount)
		s(&sd.Preparing)
		s(&sd.Deploying)
		s(&sd.Updating)
		s(&sd.Decommissioning)
	}
	s(&d.PoolResetting)
	s(&d.QuotaNote)
	return d
}

// For returns the deadline of a tenant of kind in state s (zero: none).
// d must have its defaults (WithDefaults).
func (d Deadlines) For(kind registry.Kind, s registry.State) time.Duration {
	switch kind {
	case registry.KindPreview:
		return d.Preview.Of(s)
	case registry.KindPool:
		return d.Pool.Of(s)
	}
	return d.Tenant.Of(s)
}

// Verdict is what Judge found about one tenant.
type Verdict struct {
	State registry.State
	// Limit is the state's deadline; zero when the tenant is not judged
	// (a resting state, a parked preview, a rollout's tenant).
	Limit time.Duration
	// Since is when the tenant entered its state, and Progress when the
	// deadline's clock started: its last progress, or the end of a quota
	// note that ran out after it.
	Since, Progress time.Time
	// Idle is how long the clock has run (zero under a live quota note).
	Idle time.Duration
	// Due is when the tenant is past its deadline (zero without a limit,
	// or under a live quota note, when it is not known yet).
	Due time.Time
	// Waiting is the live quota note, if any.
	Waiting string
	// Overdue is true when the tenant is past its state's deadline.
	Overdue bool
}

// Judge decides whether t is past its state's deadline at now. It reads
// only what the registry records, so any process reaches the same verdict.
// d must have its defaults (WithDefaults).
func (d Deadlines) Judge(t *registry.Tenant, now time.Time) Verdict {
	v := Verdict{State: t.State, Since: t.Since(), Progress: t.LastProgress()}
	if parked(t) || heldByRollout(t) {
		return v
	}
	v.Limit = d.For(t.Kind, t.State)
	if v.Limit <= 0 {
		return v
	}
	if t.WaitingAt(now) {
		v.Waiting = t.Waiting
		return v
	}
	if t.WaitingUntil != nil && t.WaitingUntil.After(v.Progress) {
		// The note ran out (its waiter got its turn and died, or died
		// waiting): the clock runs from then.
		v.Progress = *t.WaitingUntil
	}
	v.Due = v.Progress.Add(v.Limit)
	v.Idle = max(now.Sub(v.Progress), 0)
	v.Overdue = v.Idle > v.Limit
	return v
}

// WatchedFrom returns v with the clock started no earlier than from: the
// time the judging reconciler started. A tenant left idle while no
// reconciler ran (an outage, a deploy of the control plane) is not stuck
// in the sense deadlines catch, which is a reconciler trying and getting
// nowhere; it gets its state's whole deadline from the reconciler's start.
func (v Verdict) WatchedFrom(from, now time.Time) Verdict {
	if v.Due.IsZero() || !v.Progress.Before(from) {
		return v
	}
	v.Progress = from
	v.Due = from.Add(v.Limit)
	v.Idle = max(now.Sub(from), 0)
	v.Overdue = v.Idle > v.Limit
	return v
}

// heldByRollout reports whether t is an UPDATING tenant a rollout's wave
// is updating: the rollout's own bounds (its operation, its gate timeout)
// apply, and the reconciler leaves it alone.
func heldByRollout(t *registry.Tenant) bool {
	return t.State == registry.StateUpdating && t.Attributes[registry.AttrRollout] != ""
}

// Summary says in a few words how long the tenant has made no progress,
// for reasons and logs: "no progress in DEPLOYING for 31m2s (deadline 30m0s)".
func (v Verdict) Summary() string {
	return fmt.Sprintf("no progress in %s for %s (deadline %s)", v.State, v.Idle.Round(time.Second), v.Limit)
}
