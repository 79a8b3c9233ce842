package registry

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sentinel errors. Every error the registry returns for bad input or a lost
// race wraps one of these, so callers (the API, the reconciler) branch with
// errors.Is and never on message text.
var (
	// ErrNotFound: no tenant with that id (or account, or key).
	ErrNotFound = errors.New("not found")
	// ErrConflict: someone else changed the tenant first (re-read and retry),
	// or an idempotency key was reused with a different spec.
	ErrConflict = errors.New("conflict")
	// ErrAlreadyExists: the tenant id is taken (also by a closed tenant: ids
	// are never reused).
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalid: the input is malformed; the error says which field and why.
	ErrInvalid = errors.New("invalid input")
	// ErrInvalidTransition: the state machine does not allow the move.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrInvalidCursor: a list cursor that this registry did not hand out
	// for this query.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// State is a tenant's lifecycle state.
type State string

// The lifecycle: REQUESTED → CREATING_ACCOUNT → PREPARING → DEPLOYING →
// ACTIVE, ACTIVE ⇄ UPDATING, ACTIVE ⇄ SUSPENDED, any → DECOMMISSIONING →
// CLOSED, and FAILED (with a reason) from any working state, left by a retry.
const (
	StateRequested       State = "REQUESTED"
	StateCreatingAccount State = "CREATING_ACCOUNT"
	StatePreparing       State = "PREPARING"
	StateDeploying       State = "DEPLOYING"
	StateActive          State = "ACTIVE"
	StateUpdating        State = "UPDATING"
	StateSuspended       State = "SUSPENDED"
	StateDecommissioning State = "DECOMMISSIONING"
	StateClosed          State = "CLOSED"
	StateFailed          State = "FAILED"
)

// States lists every state in lifecycle order.
func States() []State {
	return []State{StateRequested, StateCreatingAccount, StatePreparing, StateDeploying, StateActive,
		StateUpdating, StateSuspended, StateDecommissioning, StateClosed, StateFailed}
}

// transitions is the whole state machine: from → allowed targets.
var transitions = map[State][]State{
	StateRequested:       {StateCreatingAccount, StateFailed, StateDecommissioning},
	StateCreatingAccount: {StatePreparing, StateFailed, StateDecommissioning},
	StatePreparing:       {StateDeploying, StateFailed, StateDecommissioning},
	StateDeploying:       {StateActive, StateFailed, StateDecommissioning},
	StateActive:          {StateUpdating, StateSuspended, StateDecommissioning},
	StateUpdating:        {StateActive, StateFailed, StateDecommissioning},
	StateSuspended:       {StateActive, StateDecommissioning},
	StateDecommissioning: {StateClosed, StateFailed},
	// A retry resumes at the step that failed; the reconciler knows which
	// from the tenant's recorded progress.
	StateFailed: {StateRequested, StateCreatingAccount, StatePreparing, StateDeploying, StateUpdating, StateDecommissioning},
	StateClosed: nil,
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// CanTransition reports whether the state machine allows from → to.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// ParseState returns the state named s, or an ErrInvalid error.
func ParseState(s string) (State, error) {
	st := State(s)
	if !st.Valid() {
		return "", &FieldError{Field: "state", Problem: fmt.Sprintf("%q is not a tenant state (one of %v)", s, States())}
	}
	return st, nil
}

// Tier is a tenant's service tier.
type Tier string

// The tiers.
const (
	TierBasic      Tier = "basic"
	TierStandard   Tier = "standard"
	TierEnterprise Tier = "enterprise"
)

// Kind distinguishes customer tenants from preview environments.
type Kind string

// The kinds.
const (
	KindTenant  Kind = "tenant"
	KindPreview Kind = "preview"
	// KindPool is the vending record of a warm-pool account: the reconciler
	// creates and prepares its account like a tenant's, then hands it to the
	// preview pool (AddPoolAccount) and the record closes.
	KindPool Kind = "pool"
)

// Spec is what was asked for: it does not change after creation.
type Spec struct {
	ID     string `json:"id" dynamodbav:"id"`
	Name   string `json:"name" dynamodbav:"name"`
	Email  string `json:"email" dynamodbav:"email"`
	Tier   Tier   `json:"tier" dynamodbav:"tier"`
	Region string `json:"region" dynamodbav:"region"`
	Kind   Kind   `json:"kind,omitempty" dynamodbav:"kind,omitempty"`
}

// Tenant is a tenant as the registry knows it: its spec and its status.
type Tenant struct {
	Spec
	State State `json:"state"`
	// Reason says why the tenant is FAILED (or was suspended, or closed).
	Reason string `json:"reason,omitempty"`
	// FailedFrom is the state a FAILED tenant failed in, so a retry can
	// resume there.
	FailedFrom State  `json:"failed_from,omitempty"`
	AccountID  string `json:"account_id,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	// Operation is the handle of the AWS operation in flight (a
	// create-account request id, a StackSet operation id), recorded before
	// waiting on it so a crash resumes instead of starting another.
	Operation  string `json:"operation,omitempty"`
	AppVersion string `json:"app_version,omitempty"`
	// TargetVersion is the release the tenant should run; differs from
	// AppVersion while an update is under way.
	TargetVersion string `json:"target_version,omitempty"`
	// Health is what the prober last recorded; nil until it first probes.
	Health     *Health           `json:"health,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// StateSince is when the tenant entered its state, and ProgressAt when
	// it last made progress there: it entered the state, or a write marked
	// Change.Progress (the reconciler recorded an operation handle or
	// checkpointed a step). State deadlines are judged from ProgressAt.
	// Both are kept by the registry; a record written before they existed
	// gets its previous write's time in them at its next write (see Since
	// and LastProgress for reading such a record before that).
	StateSince time.Time `json:"state_since,omitzero"`
	ProgressAt time.Time `json:"progress_at,omitzero"`
	// LastError is the reconciler's latest error in this state, shortened,
	// and LastErrorAt when it was first seen: what an operator reads while
	// a tenant is not moving. A state change or progress clears it.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Waiting names a quota AWS enforces that the tenant waits its turn
	// for ("create-account slot: 5 requests in progress"), and WaitingUntil
	// how long that note holds unless renewed: the waiter renews it while
	// it waits, so a note whose waiter died runs out. Time spent under a
	// live note does not count against the state's deadline. A state
	// change or progress clears it.
	Waiting      string     `json:"waiting,omitempty"`
	WaitingUntil *time.Time `json:"waiting_until,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	ClosedAt     *time.Time `json:"closed_at,omitempty"`
	// Version increases by one with every write; writes are conditional on it.
	Version int64 `json:"version"`
}

// Since returns when the tenant entered its state: StateSince, or for a
// record not written since StateSince existed, its last update (the
// latest the state can have begun).
func (t *Tenant) Since() time.Time {
	if !t.StateSince.IsZero() {
		return t.StateSince
	}
	return t.UpdatedAt
}

// LastProgress returns when the tenant last made progress in its state:
// ProgressAt, or Since for a record written before ProgressAt existed.
func (t *Tenant) LastProgress() time.Time {
	if !t.ProgressAt.IsZero() {
		return t.ProgressAt
	}
	return t.Since()
}

// WaitingAt reports whether a live quota note (Waiting) holds at now.
func (t *Tenant) WaitingAt(now time.Time) bool {
	return t.Waiting != "" && t.WaitingUntil != nil && now.Before(*t.WaitingUntil)
}

// Tombstone reports whether the tenant is closed: its record is kept (for
// audit, and so its id is never reused) but it owns nothing any more.
func (t *Tenant) Tombstone() bool { return t.State == StateClosed }

// Event is one entry of a tenant's audit history.
type Event struct {
	TenantID string    `json:"tenant_id"`
	Time     time.Time `json:"time"`
	Seq      int64     `json:"seq"`
	Type     string    `json:"type"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to,omitempty"`
	Actor    string    `json:"actor"`
	Reason   string    `json:"reason,omitempty"`
	// Detail carries event-specific data (the account id, an operation id).
	Detail map[string]string `json:"detail,omitempty"`
}

// AttrProbeAfter asks the prober for a verdict from a probe taken at or
// after this time (RFC 3339): a rollout sets it when a tenant's update
// finishes, so that its health gate decides on the new release's health,
// never on a verdict from before it. The prober writes such a tenant's
// health on its next probe even when nothing changed.
const AttrProbeAfter = "probe_after"

// ProbeAfter returns the time set by AttrProbeAfter.
func (t *Tenant) ProbeAfter() (time.Time, bool) {
	v, ok := t.Attributes[AttrProbeAfter]
	if !ok {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	return at, err == nil
}

// FreshHealth reports whether t's recorded health is from a probe taken
// after the time AttrProbeAfter asks for (any recorded health when it is
// not set).
func (t *Tenant) FreshHealth() bool {
	if t.Health == nil || t.Health.Status == HealthUnknown {
		return false
	}
	after, ok := t.ProbeAfter()
	return !ok || !t.Health.CheckedAt.Before(after)
}

// AttrRollout names the rollout that holds an UPDATING tenant: the rollout
// engine updates it as part of a wave's one StackSet operation, and the
// reconciler leaves it alone.
const AttrRollout = "rollout"
