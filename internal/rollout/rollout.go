// Package rollout takes a release across the fleet in waves, gated by
// health, with automatic rollback.
//
// A rollout is a plan of waves over the ACTIVE tenants (canaries first,
// enterprise last by default, pinned tenants never). Each wave is one
// StackSet operation over all its accounts, under the wave's concurrency
// and failure tolerance: StackSets run one operation per stack set at a
// time, so per-tenant operations would serialise the fleet. After a wave
// deploys and bakes, its gate waits for probe verdicts taken after each
// tenant's update (never older ones: see registry.AttrProbeAfter), counts
// failed updates, unhealthy tenants and tenants without a fresh verdict,
// and either goes on or halts and rolls every tenant the rollout moved
// back to the release it ran before.
//
// All of a rollout's state is in the registry, written before each step
// it describes, and every step can be run again: an engine that starts
// after a crash resumes the rollout where it was, re-issuing an in-flight
// wave under the same operation id, so no tenant is updated twice.
package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// AttrPinned pins a tenant to a release: rollouts leave it out.
const AttrPinned = "pinned_release"

// Deployer runs the waves' StackSet operations; *stacksets.Manager is one.
type Deployer interface {
	UpdateInstances(ctx context.Context, opID, region string, params map[string]map[string]string, prefs stacksets.Preferences) (string, error)
	Wait(ctx context.Context, opID string) (stacksets.Result, error)
	// OperationFailures names the accounts that failed in an operation
	// that succeeded within its failure tolerance.
	OperationFailures(ctx context.Context, opID string) (map[string]string, error)
	// StackFailure returns why an account's member stack failed, from its
	// events ("" when no resource failed).
	StackFailure(ctx context.Context, account, region string) (string, error)
}

// Tenants is what the rollout needs of the reconciler (*vending.Reconciler):
// the parameters of a tenant on a release, releases by version, and the
// end of an update (outputs, endpoint, ACTIVE on the release).
type Tenants interface {
	Params(t *registry.Tenant, rel vending.Release) map[string]string
	Release(ctx context.Context, version string) (vending.Release, error)
	CompleteUpdate(ctx context.Context, t *registry.Tenant, rel vending.Release, mutate func(*registry.Tenant)) (*registry.Tenant, error)
	// UpdatedEndpoint and Announce are CompleteUpdate's two halves
	// around its write, for a wave's ends written in batches.
	UpdatedEndpoint(ctx context.Context, t *registry.Tenant) (string, error)
	Announce(ctx context.Context, kind string, t *registry.Tenant)
}

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	// Bake is how long a wave runs before its gate (default 5m).
	Bake time.Duration
	// GateTimeout is how long the gate waits, after the bake, for a fresh
	// verdict on every tenant of the wave (default 5m); a tenant without
	// one by then counts as a failure.
	GateTimeout time.Duration
	// MaxConcurrency and FailureTolerance are the waves' StackSet
	// operation preferences unless a wave or a request says otherwise
	// (defaults 25, and the rollout's max failures).
	MaxConcurrency int
	// Poll is how often the engine looks at the registry while it waits
	// (default 1s).
	Poll time.Duration
	// Workers bounds the registry writes in flight (default 16).
	Workers int
	// Actor is how the engine appears in audit events ("rollout").
	Actor string
}

func (c Config) withDefaults() Config {
	if c.Bake == 0 {
		c.Bake = 5 * time.Minute
	}
	if c.GateTimeout == 0 {
		c.GateTimeout = 5 * time.Minute
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 25
	}
	if c.Poll == 0 {
		c.Poll = time.Second
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.Actor == "" {
		c.Actor = "rollout"
	}
	return c
}

// Deps are the engine's collaborators.
type Deps struct {
	Registry *registry.Store
	Deployer Deployer
	Tenants  Tenants
	// Kick asks the reconciler to drive a tenant now (a pin to another
	// release); it must not block. Optional.
	Kick func(id string)
	Log  *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Engine starts rollouts and drives the live one.
type Engine struct {
	cfg  Config
	d    Deps
	wake chan struct{}
}

// New returns an engine.
func New(cfg Config, d Deps) *Engine {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Engine{cfg: cfg.withDefaults(), d: d, wake: make(chan struct{}, 1)}
}

func (e *Engine) now() time.Time { return e.d.Now().UTC() }

// Wake makes Run look at the registry now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// StartRequest asks for a rollout.
type StartRequest struct {
	Release string
	Plan    string
	// Bake, GateTimeout: the engine's defaults when zero.
	Bake, GateTimeout time.Duration
	// MaxFailures is how many of a wave's tenants may fail (update failed,
	// unhealthy, or no fresh verdict) before the rollout halts.
	MaxFailures int
	// MaxConcurrency and FailureTolerance are the waves' StackSet
	// preferences (0 and nil: the engine's concurrency, and MaxFailures).
	MaxConcurrency   int
	FailureTolerance *int
	Selection
	Actor string
}

// Start plans a rollout of req.Release over the ACTIVE tenants and records
// it; Run carries it out.
func (e *Engine) Start(ctx context.Context, req StartRequest) (*registry.Rollout, error) {
	var errs []error
	specs, err := ParsePlan(req.Plan)
	errs = append(errs, err)
	if req.Bake == 0 {
		req.Bake = e.cfg.Bake
	}
	if req.GateTimeout == 0 {
		req.GateTimeout = e.cfg.GateTimeout
	}
	if req.Bake < 0 || req.Bake > 24*time.Hour {
		errs = append(errs, &registry.FieldError{Field: "bake", Problem: fmt.Sprintf("must be from 0 to 24h, got %s", req.Bake)})
	}
	if req.GateTimeout < time.Second || req.GateTimeout > 24*time.Hour {
		errs = append(errs, &registry.FieldError{Field: "gate_timeout", Problem: fmt.Sprintf("must be from 1s to 24h, got %s", req.GateTimeout)})
	}
	if req.MaxFailures < 0 {
		errs = append(errs, &registry.FieldError{Field: "max_failures", Problem: "must be 0 or more"})
	}
	if req.MaxConcurrency == 0 {
		req.MaxConcurrency = e.cfg.MaxConcurrency
	}
	if req.MaxConcurrency < 1 || req.MaxConcurrency > MaxConcurrency {
		errs = append(errs, &registry.FieldError{Field: "max_concurrency", Problem: fmt.Sprintf("must be 1 to %d (StackSets' limit per stack set), got %d", MaxConcurrency, req.MaxConcurrency)})
	}
	tolerance := req.MaxFailures
	if req.FailureTolerance != nil {
		tolerance = *req.FailureTolerance
	}
	if tolerance < 0 {
		errs = append(errs, &registry.FieldError{Field: "failure_tolerance", Problem: "must be 0 or more"})
	}
	if req.CanaryTag != "" && !strings.Contains(req.CanaryTag, "=") {
		errs = append(errs, &registry.FieldError{Field: "canary_tag", Problem: fmt.Sprintf("must be key=value, got %q", req.CanaryTag)})
	}
	if req.CanaryTier != "" && !slices.Contains([]registry.Tier{registry.TierBasic, registry.TierStandard, registry.TierEnterprise}, req.CanaryTier) {
		errs = append(errs, &registry.FieldError{Field: "canary_tier", Problem: fmt.Sprintf("%q is not a tier", req.CanaryTier)})
	}
	if strings.TrimSpace(req.Release) == "" {
		errs = append(errs, &registry.FieldError{Field: "release", Problem: "is required"})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if _, err := e.d.Tenants.Release(ctx, req.Release); err != nil {
		if errors.Is(err, vending.ErrUnknownRelease) {
			return nil, &registry.FieldError{Field: "release", Problem: fmt.Sprintf("%q is not a published release", req.Release)}
		}
		return nil, err
	}
	if active, err := e.d.Registry.ActiveRollout(ctx); err != nil {
		return nil, err
	} else if active != "" {
		return nil, fmt.Errorf("rollout %s is under way (pause, abort or wait for it): %w", active, registry.ErrRolloutActive)
	}

	id := newID(e.now())
	fleet, err := activeTenants(ctx, e.d.Registry)
	if err != nil {
		return nil, err
	}
	skipped := map[string]int{}
	var eligible []*registry.Tenant
	for _, t := range fleet {
		switch {
		case t.Attributes[AttrPinned] != "":
			skipped["pinned"]++
		case t.AppVersion == req.Release:
			skipped["already on the release"]++
		default:
			eligible = append(eligible, t)
		}
	}
	if len(eligible) == 0 {
		return nil, &registry.FieldError{Field: "release", Problem: fmt.Sprintf("no ACTIVE tenant to roll %s out to (%d ACTIVE: %v)", req.Release, len(fleet), skipped)}
	}
	names, groups, specOf := assign(specs, order(id, eligible, req.Selection))
	r := &registry.Rollout{
		ID: id, Release: req.Release, Plan: req.Plan, Bake: req.Bake, GateTimeout: req.GateTimeout,
		MaxFailures: req.MaxFailures, Skipped: skipped, CreatedBy: actorOr(req.Actor, "operator"),
	}
	var records []registry.RolloutTenant
	for i, g := range groups {
		w := registry.Wave{Name: names[i], Tenants: len(g), Phase: registry.WavePending,
			MaxConcurrency: req.MaxConcurrency, FailureTolerance: tolerance}
		if c := specOf[i].Concurrency; c > 0 {
			w.MaxConcurrency = c
		}
		if t := specOf[i].Tolerance; t >= 0 {
			w.FailureTolerance = t
		}
		r.Waves = append(r.Waves, w)
		for _, t := range g {
			records = append(records, registry.RolloutTenant{RolloutID: id, TenantID: t.ID, Tier: t.Tier, Wave: i, From: t.AppVersion, Status: registry.RTPending})
		}
	}
	r.Notes = []registry.Note{{At: e.now(), Text: fmt.Sprintf("planned by %s: %d tenants in %d waves (%s)%s", r.CreatedBy, len(records), len(r.Waves), waveSizes(r), skippedText(skipped))}}
	created, err := e.d.Registry.CreateRollout(ctx, r, records)
	if err != nil {
		return nil, err
	}
	e.d.Log.InfoContext(ctx, "rollout started", "rollout", id, "release", req.Release, "tenants", len(records), "waves", waveSizes(r))
	e.Wake()
	return created, nil
}

func waveSizes(r *registry.Rollout) string {
	parts := make([]string, len(r.Waves))
	for i, w := range r.Waves {
		parts[i] = fmt.Sprintf("%s %d", w.Name, w.Tenants)
	}
	return strings.Join(parts, ", ")
}

func skippedText(s map[string]int) string {
	if len(s) == 0 {
		return ""
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", s[k], k)
	}
	return "; left out: " + strings.Join(parts, ", ")
}

func actorOr(a, def string) string {
	if a == "" {
		return def
	}
	return a
}

// newID names a rollout by its start time, with a random suffix.
func newID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "ro-" + strings.ToLower(now.Format("20060102t150405")) + "-" + hex.EncodeToString(b[:])
}

// activeTenants lists the ACTIVE customer tenants (previews are deployed
// per PR with their own build, never by a fleet rollout).
func activeTenants(ctx context.Context, reg *registry.Store) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	cursor := ""
	for {
		page, err := reg.List(ctx, registry.StateActive, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("list ACTIVE tenants: %w", err)
		}
		for _, t := range page.Tenants {
			if t.Kind == "" || t.Kind == registry.KindTenant {
				out = append(out, t)
			}
		}
		if cursor = page.Next; cursor == "" {
			return out, nil
		}
	}
}

// Get returns a rollout and its tenants.
func (e *Engine) Get(ctx context.Context, id string) (*registry.Rollout, []registry.RolloutTenant, error) {
	r, err := e.d.Registry.GetRollout(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	ts, err := e.d.Registry.RolloutTenants(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return r, ts, nil
}

// List returns the latest rollouts, newest first.
func (e *Engine) List(ctx context.Context, limit int) ([]*registry.Rollout, error) {
	return e.d.Registry.ListRollouts(ctx, limit)
}

// Pause stops the rollout before its next wave; the wave under way
// finishes, gate included.
func (e *Engine) Pause(ctx context.Context, id, actor, reason string) (*registry.Rollout, error) {
	return e.command(ctx, id, func(r *registry.Rollout) error {
		if r.State != registry.RolloutRunning || r.Planning() {
			return fmt.Errorf("rollout %s is %s, not running: %w", id, r.State, registry.ErrInvalidTransition)
		}
		r.State, r.Reason = registry.RolloutPaused, "paused by "+actorOr(actor, "operator")+suffix(reason)
		r.Notes = append(r.Notes, registry.Note{At: e.now(), Text: r.Reason})
		return nil
	})
}

// Resume continues a paused rollout.
func (e *Engine) Resume(ctx context.Context, id, actor string) (*registry.Rollout, error) {
	return e.command(ctx, id, func(r *registry.Rollout) error {
		if r.State != registry.RolloutPaused || r.Planning() {
			return fmt.Errorf("rollout %s is %s, not paused: %w", id, r.State, registry.ErrInvalidTransition)
		}
		r.State, r.Reason = registry.RolloutRunning, ""
		r.Notes = append(r.Notes, registry.Note{At: e.now(), Text: "resumed by " + actorOr(actor, "operator")})
		return nil
	})
}

// Abort stops the rollout for good once the wave in flight (if any) has
// deployed. With rollback, every tenant it moved goes back to the release
// it ran before; without, they stay on the new release.
func (e *Engine) Abort(ctx context.Context, id, actor, reason string, rollback bool) (*registry.Rollout, error) {
	return e.command(ctx, id, func(r *registry.Rollout) error {
		if r.State.Final() || r.State == registry.RolloutRollingBack {
			return fmt.Errorf("rollout %s is %s: %w", id, r.State, registry.ErrInvalidTransition)
		}
		r.AbortRequested, r.RollbackOnAbort = true, rollback
		text := "abort asked by " + actorOr(actor, "operator") + suffix(reason)
		if rollback {
			text += ", with rollback"
		}
		r.Reason = text
		r.Notes = append(r.Notes, registry.Note{At: e.now(), Text: text})
		return nil
	})
}

func suffix(reason string) string {
	if reason = strings.TrimSpace(reason); reason != "" {
		return ": " + reason
	}
	return ""
}

// command applies an operator's change to a rollout, re-reading it when the
// engine wrote it meanwhile.
func (e *Engine) command(ctx context.Context, id string, change func(*registry.Rollout) error) (*registry.Rollout, error) {
	for {
		r, err := e.d.Registry.GetRollout(ctx, id)
		if err != nil {
			return nil, err
		}
		var cerr error
		next, err := e.d.Registry.UpdateRollout(ctx, r, func(n *registry.Rollout) { cerr = change(n) })
		if cerr != nil {
			return nil, cerr
		}
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err == nil {
			e.Wake()
		}
		return next, err
	}
}

// Pin pins a tenant to a release (its current one when release is ""):
// rollouts leave it out. A release other than the one it runs is deployed
// to it by the reconciler.
func (e *Engine) Pin(ctx context.Context, id, release, actor string) (*registry.Tenant, error) {
	for {
		t, err := e.d.Registry.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if t.Tombstone() || t.Kind == registry.KindPreview || t.Kind == registry.KindPool {
			return nil, fmt.Errorf("tenant %s (%s, kind %s) cannot be pinned: %w", id, t.State, t.Kind, registry.ErrInvalidTransition)
		}
		if release == "" {
			release = t.AppVersion
		}
		if release == "" {
			return nil, &registry.FieldError{Field: "release", Problem: "the tenant runs no release yet; name one"}
		}
		if release != t.AppVersion {
			if _, err := e.d.Tenants.Release(ctx, release); err != nil {
				return nil, &registry.FieldError{Field: "release", Problem: fmt.Sprintf("%q is not a published release", release)}
			}
		}
		next, err := e.d.Registry.Update(ctx, t, registry.Change{Actor: actorOr(actor, "operator"), Type: "tenant.pinned",
			Reason: "pinned to " + release + ": rollouts leave it out", Detail: map[string]string{"release": release},
			Mutate: func(n *registry.Tenant) {
				if n.Attributes == nil {
					n.Attributes = map[string]string{}
				}
				n.Attributes[AttrPinned] = release
				n.TargetVersion = release
			}})
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err == nil && release != t.AppVersion && e.d.Kick != nil {
			e.d.Kick(id)
		}
		return next, err
	}
}

// Unpin lets rollouts reach the tenant again.
func (e *Engine) Unpin(ctx context.Context, id, actor string) (*registry.Tenant, error) {
	for {
		t, err := e.d.Registry.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if t.Attributes[AttrPinned] == "" {
			return t, nil
		}
		next, err := e.d.Registry.Update(ctx, t, registry.Change{Actor: actorOr(actor, "operator"), Type: "tenant.unpinned",
			Reason: "unpinned from " + t.Attributes[AttrPinned] + ": rollouts reach it again",
			Mutate: func(n *registry.Tenant) { delete(n.Attributes, AttrPinned) }})
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		return next, err
	}
}

// Run drives the live rollout until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			e.d.Log.WarnContext(ctx, "rollout step failed; trying again", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-t.C:
		}
	}
}

// Tick drives the live rollout as far as it can go now: to its end, or to
// a pause. It returns at once when no rollout is live.
func (e *Engine) Tick(ctx context.Context) error {
	id, err := e.d.Registry.ActiveRollout(ctx)
	if err != nil || id == "" {
		return err
	}
	return e.drive(ctx, id)
}

// drive runs the rollout's steps, re-reading it before each one so that an
// operator's pause or abort and another engine's progress are seen.
func (e *Engine) drive(ctx context.Context, id string) error {
	for {
		r, err := e.d.Registry.GetRollout(ctx, id)
		if err != nil {
			return err
		}
		done, err := e.step(ctx, r)
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err != nil || done {
			return err
		}
	}
}

// step does the next thing r needs and reports whether r is waiting (paused
// or ended).
func (e *Engine) step(ctx context.Context, r *registry.Rollout) (bool, error) {
	if r.State.Final() {
		return true, nil
	}
	if r.Planning() {
		if e.now().Sub(r.CreatedAt) < planningGrace {
			return true, nil // Start is writing its tenants right now
		}
		// Its tenants may not all be written: a plan cannot be resumed.
		_, err := e.update(ctx, r, func(n *registry.Rollout) {
			n.State, n.Reason = registry.RolloutAborted, "planning was interrupted; start the rollout again"
		})
		return true, err
	}
	if r.State == registry.RolloutRollingBack {
		return false, e.rollback(ctx, r)
	}
	w := r.Waves[r.Current]
	if r.AbortRequested && w.Phase != registry.WaveDeploying {
		return false, e.abort(ctx, r)
	}
	switch w.Phase {
	case registry.WavePending:
		if r.State == registry.RolloutPaused {
			return true, nil
		}
		_, err := e.update(ctx, r, func(n *registry.Rollout) {
			now := e.now()
			nw := &n.Waves[n.Current]
			nw.Phase, nw.StartedAt = registry.WaveDeploying, &now
			nw.Operation = registry.RolloutOperationID(n.ID, n.Current+1)
			n.Notes = append(n.Notes, registry.Note{At: now, Text: fmt.Sprintf("wave %s: updating %d tenants (at most %d at once, %d may fail)", nw.Name, nw.Tenants, nw.MaxConcurrency, nw.FailureTolerance)})
		})
		return false, err
	case registry.WaveDeploying:
		return false, e.deployWave(ctx, r)
	case registry.WaveBaking:
		until := w.DeployedAt.Add(r.Bake)
		if wait := until.Sub(e.now()); wait > 0 {
			// Look again at least every Poll: a pause does not stop the
			// bake, an abort does.
			return false, awsx.Sleep(ctx, min(wait, e.cfg.Poll))
		}
		_, err := e.update(ctx, r, func(n *registry.Rollout) { n.Waves[n.Current].Phase = registry.WaveGating })
		return false, err
	case registry.WaveGating:
		return false, e.gate(ctx, r)
	case registry.WavePassed:
		if r.Current == len(r.Waves)-1 {
			// Tenants vended from now on start on the release the fleet runs.
			if err := e.d.Registry.SetCurrentRelease(ctx, r.Release, "rollout "+r.ID); err != nil {
				return false, err
			}
			// Those vended while it ran are moved to it too.
			if err := e.retarget(ctx, r); err != nil {
				return false, err
			}
		}
		_, err := e.update(ctx, r, func(n *registry.Rollout) {
			if n.Current == len(n.Waves)-1 {
				n.State, n.Reason = registry.RolloutCompleted, ""
				n.Notes = append(n.Notes, registry.Note{At: e.now(), Text: fmt.Sprintf("completed: %d tenants on %s", n.Tenants(), n.Release)})
				return
			}
			n.Current++
		})
		if err == nil {
			e.d.Log.InfoContext(ctx, "rollout wave passed", "rollout", r.ID, "wave", w.Name)
		}
		return false, err
	case registry.WaveHalted:
		_, err := e.update(ctx, r, func(n *registry.Rollout) { n.State = registry.RolloutRollingBack })
		return false, err
	}
	return true, fmt.Errorf("rollout %s: wave %s in unknown phase %q", r.ID, w.Name, w.Phase)
}

// retarget makes r's release the target of every customer tenant r did
// not plan (vended while it ran, or FAILED then and retried since) whose
// target is another release, and kicks those that are ACTIVE: they were
// deployed with the release r replaced, and would stay on it. Tenants
// with no target yet take the current release when their deploy ends
// (the reconciler reads it then); the release's own tenants, pinned ones
// and those on their way out are left alone. Run again after a crash, it
// finds nothing left to do for the tenants it already moved.
func (e *Engine) retarget(ctx context.Context, r *registry.Rollout) error {
	recs, err := e.d.Registry.RolloutTenants(ctx, r.ID)
	if err != nil {
		return err
	}
	planned := make(map[string]bool, len(recs))
	for _, rec := range recs {
		planned[rec.TenantID] = true
	}
	behind := func(t *registry.Tenant) bool {
		return (t.Kind == "" || t.Kind == registry.KindTenant) && !planned[t.ID] && t.Attributes[AttrPinned] == "" &&
			t.TargetVersion != "" && t.TargetVersion != r.Release
	}
	for _, st := range registry.States() {
		if st == registry.StateDecommissioning || st == registry.StateClosed {
			continue
		}
		cursor := ""
		for {
			page, err := e.d.Registry.List(ctx, st, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
			if err != nil {
				return fmt.Errorf("list %s tenants: %w", st, err)
			}
			for _, t := range page.Tenants {
				if !behind(t) {
					continue
				}
				if err := e.retargetOne(ctx, r, t.ID, behind); err != nil {
					return err
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
	}
	return nil
}

func (e *Engine) retargetOne(ctx context.Context, r *registry.Rollout, id string, behind func(*registry.Tenant) bool) error {
	for {
		t, err := e.d.Registry.Get(ctx, id)
		if err != nil {
			return err
		}
		if !behind(t) || t.State == registry.StateDecommissioning || t.State == registry.StateClosed {
			return nil
		}
		next, err := e.d.Registry.Update(ctx, t, registry.Change{Actor: e.cfg.Actor, Type: "release_targeted",
			Reason: fmt.Sprintf("rollout %s completed: %s is the fleet's release", r.ID, r.Release),
			Detail: map[string]string{"rollout": r.ID, "release": r.Release},
			Mutate: func(n *registry.Tenant) { n.TargetVersion = r.Release }})
		if errors.Is(err, registry.ErrConflict) {
			continue // the reconciler moved it meanwhile
		}
		if err != nil {
			return fmt.Errorf("retarget tenant %s: %w", id, err)
		}
		if next.State == registry.StateActive && e.d.Kick != nil {
			e.d.Kick(id)
		}
		return nil
	}
}

// planningGrace is how long Start may take to write a rollout's tenants;
// a rollout still planning after it was left by a crashed Start.
const planningGrace = 2 * time.Minute

func (e *Engine) update(ctx context.Context, r *registry.Rollout, mutate func(*registry.Rollout)) (*registry.Rollout, error) {
	return e.d.Registry.UpdateRollout(ctx, r, mutate)
}

// abort ends a rollout an operator aborted, rolling back when asked.
func (e *Engine) abort(ctx context.Context, r *registry.Rollout) error {
	_, err := e.update(ctx, r, func(n *registry.Rollout) {
		if n.RollbackOnAbort {
			n.State = registry.RolloutRollingBack
			n.Notes = append(n.Notes, registry.Note{At: e.now(), Text: "aborted: rolling back"})
			return
		}
		n.State = registry.RolloutAborted
		n.Notes = append(n.Notes, registry.Note{At: e.now(), Text: "aborted: tenants already updated stay on " + n.Release})
	})
	return err
}

// claim hands a tenant to the rollout for an update to release: ACTIVE →
// UPDATING, owned by the rollout, in one conditional write. A tenant the
// rollout already holds is returned as it is; one that left ACTIVE, was
// pinned, or already runs the release is not claimed (ok false, reason).
func (e *Engine) claim(ctx context.Context, r *registry.Rollout, id, release, op string, rollback bool) (*registry.Tenant, string, error) {
	for {
		t, err := e.d.Registry.Get(ctx, id)
		if err != nil {
			return nil, "", err
		}
		if done, skip, claim := claimable(r, t, release, rollback); claim == nil {
			return done, skip, nil
		}
		next, err := e.d.Registry.Transition(ctx, t, registry.StateUpdating, e.claimChange(r, t, release, op))
		if errors.Is(err, registry.ErrConflict) {
			continue // the prober wrote its health meanwhile
		}
		return next, "", err
	}
}

// claimable says what claim does with t: returns it as it is (owned
// already, or already on the release, with a reason), skips it (nil and a
// reason), or claims it (claim is t).
func claimable(r *registry.Rollout, t *registry.Tenant, release string, rollback bool) (done *registry.Tenant, skip string, claim *registry.Tenant) {
	switch {
	case t.State == registry.StateUpdating && t.Attributes[registry.AttrRollout] == r.ID:
		return t, "", nil
	case t.State != registry.StateActive:
		return nil, "tenant is " + string(t.State), nil
	case !rollback && t.Attributes[AttrPinned] != "":
		return nil, "pinned to " + t.Attributes[AttrPinned], nil
	case t.AppVersion == release:
		return t, "already on " + release, nil
	}
	return nil, "", t
}

func (e *Engine) claimChange(r *registry.Rollout, t *registry.Tenant, release, op string) registry.Change {
	return registry.Change{Actor: e.cfg.Actor,
		Reason: fmt.Sprintf("rollout %s: %s → %s", r.ID, t.AppVersion, release),
		Detail: map[string]string{"rollout": r.ID, "release": release, "operation": op},
		Mutate: func(n *registry.Tenant) {
			if n.Attributes == nil {
				n.Attributes = map[string]string{}
			}
			n.Attributes[registry.AttrRollout] = r.ID
			n.TargetVersion, n.Operation = release, op
		}}
}

// claimed is claim's answer for one tenant.
type claimed struct {
	t    *registry.Tenant
	skip string
}

// claimMany claims ids like claim, reading them in one batch and writing
// them 50 to a transaction; tenants whose transaction lost a race (the
// prober wrote one of them) are claimed one by one.
func (e *Engine) claimMany(ctx context.Context, r *registry.Rollout, ids []string, release, op string, rollback bool) (map[string]claimed, error) {
	got, err := e.d.Registry.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]claimed, len(ids))
	var moves []registry.Move
	for _, id := range ids {
		t := got[id]
		if t == nil {
			out[id] = claimed{skip: "tenant not found"}
			continue
		}
		done, skip, claim := claimable(r, t, release, rollback)
		if claim == nil {
			out[id] = claimed{t: done, skip: skip}
			continue
		}
		moves = append(moves, registry.Move{Tenant: t, To: registry.StateUpdating, Change: e.claimChange(r, t, release, op)})
	}
	next, err := e.d.Registry.TransitionMany(ctx, moves)
	var ce *registry.ConflictError
	if err != nil && !errors.As(err, &ce) {
		return nil, err
	}
	for id, t := range next {
		out[id] = claimed{t: t}
	}
	if ce != nil {
		var mu sync.Mutex
		err := e.each(ctx, idMoves(ce.IDs), func(ctx context.Context, m move) error {
			t, skip, err := e.claim(ctx, r, m.rec.TenantID, release, op, rollback)
			mu.Lock()
			defer mu.Unlock()
			out[m.rec.TenantID] = claimed{t: t, skip: skip}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func idMoves(ids []string) []move {
	out := make([]move, len(ids))
	for i, id := range ids {
		out[i] = move{rec: &registry.RolloutTenant{TenantID: id}}
	}
	return out
}

// move is one tenant's part in an operation.
type move struct {
	rec    *registry.RolloutTenant
	tenant *registry.Tenant
}

// apply updates the claimed tenants to rel under one StackSet operation
// per region, then ends each tenant's update: ACTIVE on rel asking for a
// fresh verdict, or, when its instance failed, ACTIVE on the release it
// ran (StackSets roll a failed instance back) with the reason. It returns
// the tenants' new records.
func (e *Engine) apply(ctx context.Context, r *registry.Rollout, op string, moves []move, rel vending.Release, prefs stacksets.Preferences, done, failed registry.RolloutTenantStatus) error {
	byRegion := map[string][]move{}
	for _, m := range moves {
		byRegion[m.tenant.Region] = append(byRegion[m.tenant.Region], m)
	}
	regions := make([]string, 0, len(byRegion))
	for reg := range byRegion {
		regions = append(regions, reg)
	}
	sort.Strings(regions)
	failures := map[string]string{} // account → reason
	for _, region := range regions {
		opID := op
		if len(regions) > 1 {
			opID = registry.RegionalOperationID(op, region)
		}
		params := map[string]map[string]string{}
		for _, m := range byRegion[region] {
			params[m.tenant.AccountID] = e.d.Tenants.Params(m.tenant, rel)
		}
		if err := e.runOperation(ctx, opID, region, params, prefs, failures); err != nil {
			return err
		}
	}
	// The ends of the updates: endpoints served (in parallel), then the
	// tenants written in batches.
	var mu sync.Mutex
	endpoints := map[string]string{}
	var ok []move
	err := e.each(ctx, moves, func(ctx context.Context, m move) error {
		if _, bad := failures[m.tenant.AccountID]; bad {
			return nil
		}
		ep, err := e.d.Tenants.UpdatedEndpoint(ctx, m.tenant)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", m.tenant.ID, err)
		}
		mu.Lock()
		defer mu.Unlock()
		endpoints[m.tenant.ID] = ep
		ok = append(ok, m)
		return nil
	})
	if err != nil {
		return err
	}
	now := e.now()
	finish := func(n *registry.Tenant) {
		vending.Updated(n, endpoints[n.ID], rel)
		delete(n.Attributes, registry.AttrRollout)
		n.Attributes[registry.AttrProbeAfter] = now.Format(time.RFC3339Nano)
		n.TargetVersion = rel.Version
	}
	batch := make([]registry.Move, len(ok))
	for i, m := range ok {
		batch[i] = registry.Move{Tenant: m.tenant, To: registry.StateActive, Change: registry.Change{Actor: e.cfg.Actor, Mutate: finish}}
	}
	written, err := e.d.Registry.TransitionMany(ctx, batch)
	var ce *registry.ConflictError
	if err != nil && !errors.As(err, &ce) {
		return err
	}
	for _, m := range ok {
		if t := written[m.tenant.ID]; t != nil {
			e.d.Tenants.Announce(ctx, "tenant.updated", t)
			m.rec.Status, m.rec.Reason, m.rec.UpdatedAt, m.rec.Health = done, "", &now, nil
		}
	}
	return e.each(ctx, moves, func(ctx context.Context, m move) error {
		now := e.now()
		if written[m.tenant.ID] != nil {
			return nil
		}
		if reason, bad := failures[m.tenant.AccountID]; bad {
			_, err := e.d.Registry.Transition(ctx, m.tenant, registry.StateActive, registry.Change{Actor: e.cfg.Actor,
				Type: "rollout.update_failed", Reason: fmt.Sprintf("rollout %s: the update to %s failed: %s", r.ID, rel.Version, reason),
				Detail: map[string]string{"rollout": r.ID, "release": rel.Version},
				Mutate: func(n *registry.Tenant) {
					n.TargetVersion, n.Operation = n.AppVersion, ""
					delete(n.Attributes, registry.AttrRollout)
				}})
			if err != nil {
				return err
			}
			m.rec.Status, m.rec.Reason, m.rec.UpdatedAt = failed, reason, &now
			return nil
		}
		// Its batch lost a race: re-read it and end its update alone.
		t, err := e.d.Registry.Get(ctx, m.tenant.ID)
		if err != nil {
			return err
		}
		if _, err := e.d.Tenants.CompleteUpdate(ctx, t, rel, func(n *registry.Tenant) {
			delete(n.Attributes, registry.AttrRollout)
			n.Attributes[registry.AttrProbeAfter] = now.Format(time.RFC3339Nano)
			n.TargetVersion = rel.Version
		}); err != nil {
			return fmt.Errorf("tenant %s: %w", m.tenant.ID, err)
		}
		m.rec.Status, m.rec.Reason, m.rec.UpdatedAt, m.rec.Health = done, "", &now, nil
		return nil
	})
}

// runOperation issues one wave operation (again, after a crash: the same
// id is the same operation) and waits for it, adding each failed
// account's reason to failures.
func (e *Engine) runOperation(ctx context.Context, opID, region string, params map[string]map[string]string, prefs stacksets.Preferences, failures map[string]string) error {
	for {
		got, err := e.d.Deployer.UpdateInstances(ctx, opID, region, params, prefs)
		if err != nil {
			if errors.Is(err, stacksets.ErrBusy) || awsx.IsThrottled(err) {
				// Another operation holds the stack set (a tenant's own
				// deploy): wait for it.
				if err := awsx.Sleep(ctx, e.cfg.Poll); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("issue %s: %w", opID, err)
		}
		_, err = e.d.Deployer.Wait(ctx, got)
		var oe *stacksets.OperationError
		switch {
		case err == nil:
			failed, err := e.d.Deployer.OperationFailures(ctx, got)
			if err != nil {
				return fmt.Errorf("results of %s: %w", opID, err)
			}
			for account, reason := range failed {
				if _, ok := params[account]; ok {
					failures[account] = reason
				}
			}
			return e.memberReasons(ctx, region, params, failures)
		case errors.As(err, &oe):
			for account := range params {
				switch reason, ok := oe.Accounts[account]; {
				case ok:
					failures[account] = reason
				case len(oe.Accounts) == 0:
					// The operation failed as a whole.
					failures[account] = strings.ToLower(string(oe.Status)) + ": " + oe.Reason
				}
			}
			return e.memberReasons(ctx, region, params, failures)
		default:
			return fmt.Errorf("wait for %s: %w", opID, err)
		}
	}
}

// memberReasons replaces the operation's reason for each failed account of
// params with what its member stack's events say (Deployer.StackFailure),
// when they say something: AWS gives the operation only the stack's own
// "The following resource(s) failed to update: [Fn]", the refusal itself
// is in the member account. An account cancelled at the failure tolerance
// was never updated, and a stack that cannot be read keeps the operation's
// reason. Throttling and the end of ctx are errors (the wave is re-run).
func (e *Engine) memberReasons(ctx context.Context, region string, params map[string]map[string]string, failures map[string]string) error {
	for account := range params {
		reason, bad := failures[account]
		if !bad || stacksets.Cancelled(reason) {
			continue
		}
		member, err := e.d.Deployer.StackFailure(ctx, account, region)
		switch {
		case err == nil && member != "":
			failures[account] = "stack instance failed: " + member
		case ctx.Err() != nil || awsx.IsThrottled(err):
			return fmt.Errorf("read why the stack instance in %s failed: %w", account, err)
		case err != nil:
			e.d.Log.WarnContext(ctx, "member stack not readable", "account", account, "region", region, "error", err)
		}
	}
	return nil
}

// each runs f on every move, Workers at a time, and returns the first error.
func (e *Engine) each(ctx context.Context, moves []move, f func(context.Context, move) error) error {
	sem := make(chan struct{}, e.cfg.Workers)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, m := range moves {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, m); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// records returns the rollout's tenant records, those of wave (or every
// wave when wave < 0).
func (e *Engine) records(ctx context.Context, r *registry.Rollout, wave int) ([]*registry.RolloutTenant, error) {
	all, err := e.d.Registry.RolloutTenants(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	var out []*registry.RolloutTenant
	for i := range all {
		if wave < 0 || all[i].Wave == wave {
			out = append(out, &all[i])
		}
	}
	return out, nil
}

func (e *Engine) save(ctx context.Context, recs []*registry.RolloutTenant) error {
	out := make([]registry.RolloutTenant, len(recs))
	for i, r := range recs {
		out[i] = *r
	}
	return e.d.Registry.PutRolloutTenants(ctx, out)
}

// deployWave updates the current wave's tenants to the release in one
// operation and starts its bake.
func (e *Engine) deployWave(ctx context.Context, r *registry.Rollout) error {
	w := r.Waves[r.Current]
	rel, err := e.d.Tenants.Release(ctx, r.Release)
	if err != nil {
		return err
	}
	recs, err := e.records(ctx, r, r.Current)
	if err != nil {
		return err
	}
	var moves []move
	var open []*registry.RolloutTenant
	var ids []string
	for _, rec := range recs {
		if rec.Status == registry.RTPending || rec.Status == registry.RTUpdating {
			open = append(open, rec) // the rest finished before a crash
			ids = append(ids, rec.TenantID)
		}
	}
	got, err := e.claimMany(ctx, r, ids, rel.Version, w.Operation, false)
	if err != nil {
		return err
	}
	for _, rec := range open {
		m := move{rec: rec}
		t, skip := got[rec.TenantID].t, got[rec.TenantID].skip
		switch {
		case skip != "" && t != nil:
			// It ran the release already: its update finished before a
			// crash, or someone deployed it meanwhile.
			m.rec.Status, m.rec.Reason = registry.RTUpdated, skip
			now := e.now()
			if m.rec.UpdatedAt == nil {
				m.rec.UpdatedAt = &now
			}
		case skip != "":
			m.rec.Status, m.rec.Reason = registry.RTSkipped, skip
		default:
			if m.rec.Status == registry.RTPending {
				m.rec.From = t.AppVersion
			}
			m.rec.Status = registry.RTUpdating
			moves = append(moves, move{rec: m.rec, tenant: t})
		}
	}
	if err := e.save(ctx, open); err != nil {
		return err
	}
	if len(moves) > 0 {
		prefs := stacksets.Preferences{MaxConcurrentCount: int32(w.MaxConcurrency), FailureToleranceCount: int32(min(w.FailureTolerance, max(len(moves)-1, 0))), SoftFailureTolerance: true}
		if err := e.apply(ctx, r, w.Operation, moves, rel, prefs, registry.RTUpdated, registry.RTFailed); err != nil {
			return err
		}
		recs := make([]*registry.RolloutTenant, len(moves))
		for i, m := range moves {
			recs[i] = m.rec
		}
		if err := e.save(ctx, recs); err != nil {
			return err
		}
	}
	_, err = e.update(ctx, r, func(n *registry.Rollout) {
		now := e.now()
		nw := &n.Waves[n.Current]
		nw.Phase, nw.DeployedAt = registry.WaveBaking, &now
		n.Notes = append(n.Notes, registry.Note{At: now, Text: fmt.Sprintf("wave %s: %d tenants updated; baking %s", nw.Name, len(moves), n.Bake)})
	})
	return err
}

func asMoves(recs []*registry.RolloutTenant) []move {
	out := make([]move, len(recs))
	for i, r := range recs {
		out[i] = move{rec: r}
	}
	return out
}

// verdicts reads the tenants of recs that run the release and sorts them
// into fresh (a verdict from after their update), gone (no longer serving:
// decommissioned, suspended or deleted since their update, so never to be
// probed again; by state) and waiting.
func (e *Engine) verdicts(ctx context.Context, recs []*registry.RolloutTenant) (map[string]*registry.Tenant, map[string]string, int, error) {
	ids := make([]string, len(recs))
	for i, rec := range recs {
		ids[i] = rec.TenantID
	}
	all, err := e.d.Registry.GetMany(ctx, ids)
	if err != nil {
		return nil, nil, 0, err
	}
	got, gone := map[string]*registry.Tenant{}, map[string]string{}
	waiting := 0
	for _, id := range ids {
		t := all[id]
		switch {
		case t == nil:
			gone[id] = "not found"
		case t.FreshHealth():
			got[id] = t
		case t.State != registry.StateActive && t.State != registry.StateUpdating:
			gone[id] = string(t.State)
		default:
			waiting++
		}
	}
	return got, gone, waiting, nil
}

// gate decides the current wave on fresh verdicts.
func (e *Engine) gate(ctx context.Context, r *registry.Rollout) error {
	w := r.Waves[r.Current]
	recs, err := e.records(ctx, r, r.Current)
	if err != nil {
		return err
	}
	var updated []*registry.RolloutTenant
	g := registry.Gate{MaxFailures: r.MaxFailures}
	for _, rec := range recs {
		switch rec.Status {
		case registry.RTFailed:
			g.DeployFailed++
		case registry.RTUpdated, registry.RTHealthy, registry.RTUnhealthy:
			updated = append(updated, rec)
		}
	}
	deadline := w.DeployedAt.Add(r.Bake + r.GateTimeout)
	var fresh map[string]*registry.Tenant
	var gone map[string]string
	for {
		var waiting int
		if fresh, gone, waiting, err = e.verdicts(ctx, updated); err != nil {
			return err
		}
		if waiting == 0 || !e.now().Before(deadline) {
			break
		}
		if err := awsx.Sleep(ctx, e.cfg.Poll); err != nil {
			return err
		}
	}
	classes := map[string]int{}
	for _, rec := range updated {
		t := fresh[rec.TenantID]
		switch {
		case t == nil && gone[rec.TenantID] != "":
			// It left the fleet after its update (an operator
			// decommissioned it): nothing to judge, not a failure.
			rec.Status, rec.Reason = registry.RTSkipped, "left the fleet after its update: tenant is "+gone[rec.TenantID]
		case t == nil:
			g.NoProbe++
			rec.Status, rec.Reason = registry.RTUnhealthy, fmt.Sprintf("no probe after its update within %s", r.GateTimeout)
		case t.Health.Status == registry.HealthUp:
			g.Healthy++
			rec.Status, rec.Reason = registry.RTHealthy, ""
		default:
			g.Unhealthy++
			why := string(t.Health.Status)
			if t.Health.Detail != "" {
				why += ": " + t.Health.Detail
			}
			classes[why]++
			rec.Status, rec.Reason = registry.RTUnhealthy, why
		}
		if t != nil {
			h := *t.Health
			rec.Health = &h
		}
	}
	g.Pass = g.Failures() <= r.MaxFailures
	g.At = e.now()
	g.Why = gateWhy(w.Name, g, len(updated)-len(gone), classes)
	if err := e.save(ctx, updated); err != nil {
		return err
	}
	if !g.Pass {
		// Each tenant that failed the gate says so in its own history.
		err := e.each(ctx, asMoves(updated), func(ctx context.Context, m move) error {
			if m.rec.Status != registry.RTUnhealthy {
				return nil
			}
			return e.event(ctx, m.rec.TenantID, "rollout.gate_failed", fmt.Sprintf("rollout %s wave %s: %s; %s", r.ID, w.Name, m.rec.Reason, g.Why),
				map[string]string{"rollout": r.ID, "wave": w.Name, "release": r.Release})
		})
		if err != nil {
			return err
		}
	}
	_, err = e.update(ctx, r, func(n *registry.Rollout) {
		nw := &n.Waves[n.Current]
		gg := g
		nw.Gate = &gg
		n.Notes = append(n.Notes, registry.Note{At: g.At, Text: g.Why})
		if g.Pass {
			nw.Phase = registry.WavePassed
			return
		}
		nw.Phase = registry.WaveHalted
		n.State, n.Reason = registry.RolloutRollingBack, g.Why
	})
	if err == nil {
		e.d.Log.InfoContext(ctx, "rollout gate decided", "rollout", r.ID, "wave", w.Name, "pass", g.Pass, "why", g.Why)
	}
	return err
}

func gateWhy(wave string, g registry.Gate, updated int, classes map[string]int) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d of %d updated tenants up on probes taken after their update", g.Healthy, updated))
	if g.Unhealthy > 0 {
		keys := make([]string, 0, len(classes))
		for k := range classes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var cs []string
		for _, k := range keys {
			cs = append(cs, fmt.Sprintf("%s ×%d", k, classes[k]))
		}
		parts = append(parts, fmt.Sprintf("%d unhealthy (%s)", g.Unhealthy, strings.Join(cs, "; ")))
	}
	if g.NoProbe > 0 {
		parts = append(parts, fmt.Sprintf("%d without a probe after their update in time", g.NoProbe))
	}
	if g.DeployFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d whose update failed", g.DeployFailed))
	}
	verdict := fmt.Sprintf("%d failures ≤ %d allowed: go on", g.Failures(), g.MaxFailures)
	if !g.Pass {
		verdict = fmt.Sprintf("%d failures > %d allowed: halt and roll back", g.Failures(), g.MaxFailures)
	}
	return fmt.Sprintf("wave %s gate: %s; %s", wave, strings.Join(parts, ", "), verdict)
}

// event writes an audit event on a tenant without changing it otherwise.
func (e *Engine) event(ctx context.Context, id, typ, reason string, detail map[string]string) error {
	for {
		t, err := e.d.Registry.Get(ctx, id)
		if err != nil {
			return err
		}
		_, err = e.d.Registry.Update(ctx, t, registry.Change{Actor: e.cfg.Actor, Type: typ, Reason: reason, Detail: detail})
		if !errors.Is(err, registry.ErrConflict) {
			return err
		}
	}
}

// rollback takes every tenant the rollout moved back to the release it
// ran before (one operation per such release), waits for fresh verdicts
// on them, and ends the rollout.
func (e *Engine) rollback(ctx context.Context, r *registry.Rollout) error {
	recs, err := e.records(ctx, r, -1)
	if err != nil {
		return err
	}
	byFrom := map[string][]*registry.RolloutTenant{}
	var back []*registry.RolloutTenant
	for _, rec := range recs {
		if rec.Status.OnRelease() {
			byFrom[rec.From] = append(byFrom[rec.From], rec)
		}
		if rec.Status == registry.RTRolledBack {
			back = append(back, rec)
		}
	}
	froms := make([]string, 0, len(byFrom))
	for f := range byFrom {
		froms = append(froms, f)
	}
	sort.Strings(froms)
	for i, from := range froms {
		rel, err := e.d.Tenants.Release(ctx, from)
		if err != nil {
			return fmt.Errorf("roll back to %s: %w", from, err)
		}
		op := registry.RollbackOperationID(r.ID, i+1)
		var mu sync.Mutex
		var moves []move
		err = e.each(ctx, asMoves(byFrom[from]), func(ctx context.Context, m move) error {
			t, skip, err := e.claim(ctx, r, m.rec.TenantID, from, op, true)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", m.rec.TenantID, err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case skip != "" && t != nil: // back on it already (a crash after)
				m.rec.Status, m.rec.Reason = registry.RTRolledBack, skip
				back = append(back, m.rec)
			case skip != "":
				m.rec.Status, m.rec.Reason = registry.RTSkipped, "not rolled back: "+skip
			default:
				m.rec.Status = registry.RTRollingBack
				moves = append(moves, move{rec: m.rec, tenant: t})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := e.save(ctx, byFrom[from]); err != nil {
			return err
		}
		prefs := stacksets.Preferences{MaxConcurrentCount: int32(min(MaxConcurrency, max(e.cfg.MaxConcurrency, len(moves)))), FailureToleranceCount: int32(max(len(moves)-1, 0)), SoftFailureTolerance: true}
		if len(moves) > 0 {
			if err := e.apply(ctx, r, op, moves, rel, prefs, registry.RTRolledBack, registry.RTFailed); err != nil {
				return err
			}
		}
		err = e.each(ctx, moves, func(ctx context.Context, m move) error {
			if m.rec.Status != registry.RTRolledBack {
				return nil
			}
			return e.event(ctx, m.rec.TenantID, "rollout.rolled_back",
				fmt.Sprintf("rollout %s rolled back to %s: %s", r.ID, from, r.Reason), map[string]string{"rollout": r.ID, "release": from})
		})
		if err != nil {
			return err
		}
		for _, m := range moves {
			if m.rec.Status == registry.RTRolledBack {
				back = append(back, m.rec)
			}
		}
		if err := e.save(ctx, byFrom[from]); err != nil {
			return err
		}
	}
	// The rollback is judged by the same rule: fresh verdicts.
	deadline := e.now().Add(r.GateTimeout)
	var fresh map[string]*registry.Tenant
	for {
		var waiting int
		// Tenants decommissioned meanwhile are never probed: not waited for.
		if fresh, _, waiting, err = e.verdicts(ctx, back); err != nil {
			return err
		}
		if waiting == 0 || !e.now().Before(deadline) {
			break
		}
		if err := awsx.Sleep(ctx, e.cfg.Poll); err != nil {
			return err
		}
	}
	up := 0
	for _, rec := range back {
		if t := fresh[rec.TenantID]; t != nil {
			h := *t.Health
			rec.Health = &h
			if h.Status == registry.HealthUp {
				up++
			}
		}
	}
	if err := e.save(ctx, back); err != nil {
		return err
	}
	_, err = e.update(ctx, r, func(n *registry.Rollout) {
		n.State = registry.RolloutRolledBack
		n.Notes = append(n.Notes, registry.Note{At: e.now(), Text: fmt.Sprintf("rolled back: %d tenants back on their previous release, %d of them up on probes taken after the rollback", len(back), up)})
	})
	return err
}
