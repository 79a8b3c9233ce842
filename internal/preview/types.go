// Package preview runs silo's PR previews: a warm pool of accounts in the
// Pool OU, leased one per pull request, deployed with the PR's build, and
// reset after use, with the reset proved by inventory before the account
// goes back into the pool.
//
// A preview is a tenant of kind preview whose id comes from its repository
// and PR number. Asking for one creates (or reopens) that tenant in
// REQUESTED; the pool leases it an account in request order (waiting up to
// a deadline when the pool is empty), and the vending reconciler does the
// rest exactly as for a customer tenant: move the account into
// Tenants/Preview, deploy the stack instance with the PR's release, record
// the endpoint. Releasing it removes the stack instance and hands the
// account back for a reset. The pool is refilled through the vending
// engine (pool-kind tenants), so new accounts obey the same quota governor.
//
// Everything here is level-triggered: Tick looks at the registry and takes
// the next step for each account and request, so a crash anywhere resumes.
package preview

import (
	"errors"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Errors callers branch on (the API maps them to HTTP statuses).
var (
	// ErrInvalid: bad input (repo, PR, TTL, artifact); wraps registry.ErrInvalid.
	ErrInvalid = registry.ErrInvalid
	// ErrNotFound: no preview for that repository and PR.
	ErrNotFound = registry.ErrNotFound
	// ErrBusy: the preview is being released; ask again once it is.
	ErrBusy = errors.New("preview busy")
	// ErrNoAccount: no pool account became free before the request's
	// deadline.
	ErrNoAccount = errors.New("no pool account available")
)

// Phase is where a preview is, in the words CI shows to people.
type Phase string

// The phases.
const (
	PhaseWaiting   Phase = "waiting"   // queued for a pool account
	PhaseDeploying Phase = "deploying" // account leased; stack instance on its way
	PhaseReady     Phase = "ready"     // serving at URL
	PhaseUpdating  Phase = "updating"  // serving; a new build is being deployed
	PhaseReleasing Phase = "releasing" // stack instance being removed
	PhaseReleased  Phase = "released"  // account handed back
	PhaseFailed    Phase = "failed"    // see Reason
)

// Preview is one PR's preview as callers see it.
type Preview struct {
	ID    string         `json:"preview_id"`
	Repo  string         `json:"repo"`
	PR    int            `json:"pr"`
	Phase Phase          `json:"phase"`
	State registry.State `json:"state"`
	// Reason says why a preview failed.
	Reason    string `json:"reason,omitempty"`
	URL       string `json:"url,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	// Release is the build the preview should run: the one the last
	// accepted up asked for. Running is the one it runs now (they differ
	// while a new build deploys).
	Release string `json:"release,omitempty"`
	Running string `json:"running,omitempty"`
	// Build is the build one up asked for, set only on that up's answer:
	// a caller waiting for its build compares it with Release and Running
	// (BuildOutcome), since either may move to another up's build.
	Build string `json:"build,omitempty"`
	// Health is the prober's latest verdict on the URL (while it serves).
	// HealthFresh says it comes from a probe taken after the running build
	// became active; until then it is about the build before, or absent.
	Health      *registry.Health `json:"health,omitempty"`
	HealthFresh bool             `json:"health_fresh,omitempty"`
	// QueuePosition is 1 for the next request to get an account (waiting
	// previews only); WaitUntil is when a waiting request gives up.
	QueuePosition int        `json:"queue_position,omitempty"`
	WaitUntil     *time.Time `json:"wait_until,omitempty"`
	LeasedAt      *time.Time `json:"leased_at,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RequestedBy   string     `json:"requested_by,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// Done reports whether the preview has reached a phase that a waiting
// caller stops at: ready, failed or released.
func (p *Preview) Done() bool {
	return p.Phase == PhaseReady || p.Phase == PhaseFailed || p.Phase == PhaseReleased
}

// Outcome is where one build stands in a preview, as the caller that asked
// for it (up) sees it.
type Outcome string

// The outcomes. Only OutcomePending is worth waiting on.
const (
	// OutcomePending: on its way (queued, deploying, updating), or running
	// but not yet probed since it became active.
	OutcomePending Outcome = "pending"
	// OutcomeHealthy: running, and the first probe after it became active
	// found it up.
	OutcomeHealthy Outcome = "healthy"
	// OutcomeUnhealthy: running, but that probe found it down or degraded
	// (Health says why).
	OutcomeUnhealthy Outcome = "unhealthy"
	// OutcomeSuperseded: a later up asked for another build; the preview
	// deploys that one (Release) instead.
	OutcomeSuperseded Outcome = "superseded"
	// OutcomeFailed: the preview failed on this build (Reason).
	OutcomeFailed Outcome = "failed"
	// OutcomeReleased: the preview was released.
	OutcomeReleased Outcome = "released"
)

// BuildOutcome says where build stands in p. The registry decides which of
// two racing ups wins: the last accepted write sets Release, so every
// caller reading the preview afterwards sees the same winner, and a
// caller whose build is not Release has been superseded. An up of the same
// build again keeps Release, so a duplicate never supersedes its twin.
func (p *Preview) BuildOutcome(build string) Outcome {
	switch {
	case p.Phase == PhaseReleasing || p.Phase == PhaseReleased:
		return OutcomeReleased
	case p.Release != build:
		return OutcomeSuperseded
	case p.Phase == PhaseFailed:
		return OutcomeFailed
	case p.Phase != PhaseReady || p.Running != build || !p.HealthFresh || p.Health == nil:
		return OutcomePending
	case p.Health.Status == registry.HealthUp:
		return OutcomeHealthy
	}
	return OutcomeUnhealthy
}

// UpRequest asks for a PR's preview with a build.
type UpRequest struct {
	// Repo is "owner/name"; PR the pull request number.
	Repo string
	PR   int
	// Artifact is the code zip; ArtifactURI an s3://bucket/key to read it
	// from instead. Exactly one is set.
	Artifact    []byte
	ArtifactURI string
	// TTL is how long the lease lasts (Config.DefaultTTL when zero; at most
	// Config.MaxTTL).
	TTL time.Duration
	// Wait is how long the request may queue for a pool account
	// (Config.WaitTimeout when zero).
	Wait time.Duration
	// Actor is who asks ("operator:ci-bot").
	Actor string
}

// Listing is the pool and its previews, for `silo preview ls`, the API and
// the console.
type Listing struct {
	// Target is the pool size the pool is kept at.
	Target int `json:"target"`
	// Counts is the number of pool accounts per state, plus "creating" for
	// accounts the vending engine is still making.
	Counts   map[string]int          `json:"counts"`
	Previews []*Preview              `json:"previews"`
	Accounts []*registry.PoolAccount `json:"accounts"`
}
