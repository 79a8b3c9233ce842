package preview

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// Config tunes the pool and the leases.
type Config struct {
	// PoolSize is how many accounts the pool keeps (available, leased,
	// resetting or being created); quarantined accounts are replaced.
	PoolSize int
	// Region is where previews are deployed.
	Region string
	// DefaultTTL is a lease's length when the request names none; MaxTTL
	// bounds any lease's end from the moment it is set or extended.
	DefaultTTL, MaxTTL time.Duration
	// WaitTimeout is how long a request queues for an account by default;
	// MaxWait bounds what a request may ask for.
	WaitTimeout, MaxWait time.Duration
	// MaxResetAttempts failed resets quarantine an account.
	MaxResetAttempts int
	// ResetBackoff is the pause after a failed reset; it doubles with each.
	ResetBackoff time.Duration
	// Deadlines are the vending engine's; the pool uses PoolResetting, the
	// deadline of its own resetting state (vending.DefaultDeadlines when
	// zero).
	Deadlines vending.Deadlines
	// PoolOU is where pool accounts wait between leases.
	PoolOU string
	// ContactEmail is the contact of preview and pool records.
	ContactEmail string
	// MaxArtifactBytes bounds a build's code zip.
	MaxArtifactBytes int64
	// Actor names the pool in audit events.
	Actor string
}

// Defaults.
const (
	DefaultTTL              = 24 * time.Hour
	DefaultMaxTTL           = 72 * time.Hour
	DefaultWaitTimeout      = 15 * time.Minute
	DefaultMaxWait          = time.Hour
	DefaultMaxResetAttempts = 3
	// DefaultMaxArtifactBytes is Lambda's limit on an unzipped-from-S3
	// deployment package's zip.
	DefaultMaxArtifactBytes = 50 << 20
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DefaultTTL, DefaultTTL)
	def(&c.MaxTTL, DefaultMaxTTL)
	def(&c.WaitTimeout, DefaultWaitTimeout)
	def(&c.MaxWait, DefaultMaxWait)
	def(&c.ResetBackoff, 30*time.Second)
	c.Deadlines = c.Deadlines.WithDefaults()
	if c.MaxResetAttempts <= 0 {
		c.MaxResetAttempts = DefaultMaxResetAttempts
	}
	if c.MaxArtifactBytes <= 0 {
		c.MaxArtifactBytes = DefaultMaxArtifactBytes
	}
	if c.ContactEmail == "" {
		c.ContactEmail = "previews@silo.example.com"
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Actor == "" {
		c.Actor = "preview-pool"
	}
	return c
}

// Releases turns a build's code zip into a content-hashed release and
// records it in the registry's catalog.
type Releases interface {
	Publish(ctx context.Context, code []byte, source string) (registry.Release, error)
}

// Artifacts reads a build from an s3:// URI.
type Artifacts interface {
	Read(ctx context.Context, uri string, max int64) ([]byte, error)
}

// Instances says whether an account still has its stack instance.
type Instances interface {
	HasInstance(ctx context.Context, account, region string) (bool, error)
}

// Deps are the manager's collaborators.
type Deps struct {
	Registry  *registry.Store
	Releases  Releases
	Artifacts Artifacts
	// Cleaner removes and inventories what a lease left in an account.
	Cleaner   vending.Cleaner
	Instances Instances
	Org       OrgAPI
	// Guard proves an account is silo's before anything is deleted in it.
	Guard *vending.Guard
	// Kick asks the reconciler to drive a tenant now; it must not block.
	Kick func(id string)
	Log  *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Manager serves preview requests and keeps the pool.
type Manager struct {
	cfg  Config
	d    Deps
	wake chan struct{}
}

// New returns a manager.
func New(cfg Config, d Deps) (*Manager, error) {
	cfg = cfg.withDefaults()
	if d.Registry == nil || d.Releases == nil || d.Cleaner == nil || d.Org == nil || d.Guard == nil || d.Instances == nil {
		return nil, errors.New("preview: Registry, Releases, Cleaner, Instances, Org and Guard are required")
	}
	if cfg.PoolOU == "" {
		return nil, errors.New("preview: PoolOU is required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Kick == nil {
		d.Kick = func(string) {}
	}
	return &Manager{cfg: cfg, d: d, wake: make(chan struct{}, 1)}, nil
}

// Config returns the manager's effective configuration.
func (m *Manager) Config() Config { return m.cfg }

func (m *Manager) now() time.Time { return m.d.Now().UTC() }

// Wake asks the pool loop to look again now (a lease was released, a
// request arrived). It never blocks.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Tenant attributes of a preview.
const (
	attrRepo        = "repo"
	attrPR          = "pr"
	attrTTL         = "ttl"
	attrRequestedAt = "requested_at"
	attrWaitUntil   = "wait_until"
	attrRequestedBy = "requested_by"
)

var repoPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`)

// ValidateRepo checks an "owner/name" repository.
func ValidateRepo(repo string) error {
	if !repoPattern.MatchString(repo) || strings.Contains(repo, "..") {
		return &registry.FieldError{Field: "repo", Problem: fmt.Sprintf("%q is not owner/name (letters, digits, '.', '_' and '-')", shorten(repo))}
	}
	return nil
}

// ValidatePR checks a pull-request number.
func ValidatePR(pr int) error {
	if pr < 1 || pr > 9_999_999 {
		return &registry.FieldError{Field: "pr", Problem: fmt.Sprintf("must be a pull-request number from 1 to 9999999, got %d", pr)}
	}
	return nil
}

// PreviewID is the tenant id of a repository's PR preview,
// "pr<N>-<name>-<hash>" (registry.PreviewID): the repository's name made a
// slug, cut to fit the id budget, and six hex digits of the whole
// "owner/name", so two owners' repos of one name never share an id.
func PreviewID(repo string, pr int) (string, error) {
	if err := errors.Join(ValidateRepo(repo), ValidatePR(pr)); err != nil {
		return "", err
	}
	id := registry.PreviewID(repo, pr)
	return id, registry.ValidateNewID(id)
}

// LegacyPreviewID is the id a PR's preview got before ids had a length
// budget, when it differs from PreviewID (a PR number of five digits or
// more and a long repository name); "" otherwise, or for a bad repo or PR.
// A preview made under it keeps it while it lives: Up finds it by this id
// too, and the CLI asks for it before the new one.
func LegacyPreviewID(repo string, pr int) string {
	if errors.Join(ValidateRepo(repo), ValidatePR(pr)) != nil {
		return ""
	}
	if legacy := registry.LegacyPreviewID(repo, pr); legacy != registry.PreviewID(repo, pr) {
		return legacy
	}
	return ""
}

func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// checkTTL validates a requested lease length.
func (m *Manager) checkTTL(field string, d time.Duration) error {
	if d < time.Minute || d > m.cfg.MaxTTL {
		return &registry.FieldError{Field: field, Problem: fmt.Sprintf("must be from 1m to %s (the longest a preview may live without an extend), got %s", m.cfg.MaxTTL, d)}
	}
	return nil
}

// checkArtifact refuses what cannot be a Lambda code zip, before anything
// is stored.
func (m *Manager) checkArtifact(code []byte) error {
	if int64(len(code)) > m.cfg.MaxArtifactBytes {
		return &registry.FieldError{Field: "artifact", Problem: fmt.Sprintf("is %d bytes; at most %d", len(code), m.cfg.MaxArtifactBytes)}
	}
	zr, err := zip.NewReader(bytes.NewReader(code), int64(len(code)))
	if err != nil || len(zr.File) == 0 {
		return &registry.FieldError{Field: "artifact", Problem: "is not a zip file with at least one entry (a Lambda deployment package)"}
	}
	return nil
}

// Up asks for the PR's preview with a build: a new preview queues for a
// pool account; an existing one keeps its account and deploys the build.
func (m *Manager) Up(ctx context.Context, req UpRequest) (*Preview, error) {
	id, err := PreviewID(req.Repo, req.PR)
	if err != nil {
		return nil, err
	}
	if id, err = m.existingLegacy(ctx, id, req.Repo, req.PR); err != nil {
		return nil, err
	}
	if req.TTL == 0 {
		req.TTL = m.cfg.DefaultTTL
	}
	if req.Wait == 0 {
		req.Wait = m.cfg.WaitTimeout
	}
	var errs []error
	errs = append(errs, m.checkTTL("ttl", req.TTL))
	if req.Wait < 0 || req.Wait > m.cfg.MaxWait {
		errs = append(errs, &registry.FieldError{Field: "wait", Problem: fmt.Sprintf("must be from 0 to %s, got %s", m.cfg.MaxWait, req.Wait)})
	}
	if (len(req.Artifact) == 0) == (req.ArtifactURI == "") {
		errs = append(errs, &registry.FieldError{Field: "artifact", Problem: "give exactly one: the code zip, or an s3://bucket/key to read it from"})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	code, source := req.Artifact, fmt.Sprintf("preview %s#%d", req.Repo, req.PR)
	if req.ArtifactURI != "" {
		if m.d.Artifacts == nil {
			return nil, &registry.FieldError{Field: "artifact", Problem: "s3:// artifacts are not configured here; send the zip"}
		}
		if code, err = m.d.Artifacts.Read(ctx, req.ArtifactURI, m.cfg.MaxArtifactBytes); err != nil {
			return nil, err
		}
		source += " from " + req.ArtifactURI
	}
	if err := m.checkArtifact(code); err != nil {
		return nil, err
	}
	rel, err := m.d.Releases.Publish(ctx, code, source)
	if err != nil {
		return nil, fmt.Errorf("publish the build: %w", err)
	}
	actor := req.Actor
	if actor == "" {
		actor = "preview"
	}
	now := m.now()
	build := func(n *registry.Tenant) {
		setAttr(n, attrRepo, req.Repo)
		setAttr(n, attrPR, strconv.Itoa(req.PR))
		setAttr(n, attrTTL, req.TTL.String())
		setAttr(n, attrRequestedBy, actor)
		n.TargetVersion = rel.Version
	}
	queue := func(n *registry.Tenant) {
		build(n)
		setAttr(n, attrRequestedAt, now.Format(time.RFC3339Nano))
		setAttr(n, attrWaitUntil, now.Add(req.Wait).Format(time.RFC3339Nano))
	}
	detail := map[string]string{"release": rel.Version, "repo": req.Repo, "pr": strconv.Itoa(req.PR)}
	var t *registry.Tenant
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			return nil, fmt.Errorf("preview %s: concurrent changes kept conflicting: %w", id, registry.ErrConflict)
		}
		cur, err := m.d.Registry.Get(ctx, id)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			t, err = m.d.Registry.CreateWith(ctx, registry.Spec{
				ID: id, Name: fmt.Sprintf("preview of %s#%d", req.Repo, req.PR), Email: m.cfg.ContactEmail,
				Tier: registry.TierStandard, Region: m.cfg.Region, Kind: registry.KindPreview,
			}, actor, queue)
			if errors.Is(err, registry.ErrAlreadyExists) {
				continue // another up for this PR won the race
			}
		case err != nil:
			return nil, err
		case cur.Kind != registry.KindPreview:
			return nil, fmt.Errorf("tenant %s exists and is not a preview: %w", id, registry.ErrAlreadyExists)
		default:
			t, err = m.apply(ctx, cur, actor, detail, build, queue, rel.Version)
			if errors.Is(err, registry.ErrConflict) {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if t.AccountID != "" {
		if err := m.renew(ctx, t.AccountID, t.ID, req.TTL); err != nil {
			m.d.Log.WarnContext(ctx, "lease not renewed", "preview", id, "error", err)
		}
	}
	m.d.Kick(t.ID)
	m.Wake()
	m.d.Log.InfoContext(ctx, "preview requested", "preview", id, "repo", req.Repo, "pr", req.PR, "release", rel.Version, "state", t.State)
	p, err := m.viewQueued(ctx, t)
	if err != nil {
		return nil, err
	}
	// The build this request asked for, whatever later ups do to Release.
	p.Build = rel.Version
	return p, nil
}

// existingLegacy returns the PR's preview id to use: its legacy id when a
// preview made before the id budget still lives under it (it keeps its
// account and its id until it is released), id otherwise. A released
// (CLOSED) legacy preview is not reopened: the PR starts afresh under id.
func (m *Manager) existingLegacy(ctx context.Context, id, repo string, pr int) (string, error) {
	legacy := LegacyPreviewID(repo, pr)
	if legacy == "" {
		return id, nil
	}
	t, err := m.d.Registry.Get(ctx, legacy)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return id, nil
	case err != nil:
		return "", err
	case t.Kind == registry.KindPreview && t.State != registry.StateClosed:
		return legacy, nil
	}
	return id, nil
}

// viewQueued is view with the queue position of a waiting preview.
func (m *Manager) viewQueued(ctx context.Context, t *registry.Tenant) (*Preview, error) {
	p, err := m.view(ctx, t, nil)
	if err != nil || p.Phase != PhaseWaiting {
		return p, err
	}
	waiting, err := m.waiting(ctx)
	if err != nil {
		return nil, err
	}
	for i, w := range waiting {
		if w.ID == t.ID {
			p.QueuePosition = i + 1
		}
	}
	return p, nil
}

// apply brings an existing preview to the new build, by its state.
func (m *Manager) apply(ctx context.Context, t *registry.Tenant, actor string, detail map[string]string,
	build, queue func(*registry.Tenant), version string) (*registry.Tenant, error) {
	change := registry.Change{Actor: actor, Type: "preview.build", Detail: detail, Mutate: build}
	switch t.State {
	case registry.StateClosed:
		return m.d.Registry.ReopenPreview(ctx, t, registry.Change{Actor: actor, Detail: detail, Mutate: queue})
	case registry.StateDecommissioning:
		return nil, fmt.Errorf("preview %s is being released; run up again once it is: %w", t.ID, ErrBusy)
	case registry.StateActive:
		if t.AppVersion == version && t.TargetVersion == version {
			return t, nil // the same build again: nothing to deploy
		}
		return m.d.Registry.Transition(ctx, t, registry.StateUpdating, change)
	case registry.StateFailed:
		retried, err := vending.Retry(ctx, m.d.Registry, t.ID, actor, "new build "+version)
		if err != nil {
			return nil, err
		}
		if retried.State == registry.StateRequested {
			change.Mutate = queue // a fresh place in the queue
		}
		return m.d.Registry.Update(ctx, retried, change)
	default:
		// Waiting, or on its way: the deploy or update that runs next
		// picks the new target.
		return m.d.Registry.Update(ctx, t, change)
	}
}

// renew moves a lease's end to ttl from now, if that is later.
func (m *Manager) renew(ctx context.Context, account, tenant string, ttl time.Duration) error {
	for attempt := 0; attempt < 5; attempt++ {
		a, err := m.d.Registry.GetPoolAccount(ctx, account)
		if err != nil {
			return err
		}
		if a.State != registry.PoolLeased || a.Lease == nil || a.Lease.Tenant != tenant {
			return nil
		}
		until := m.now().Add(ttl)
		if !until.After(a.Lease.ExpiresAt) {
			return nil
		}
		_, err = m.d.Registry.MovePoolAccount(ctx, a, registry.PoolLeased, func(n *registry.PoolAccount) { n.Lease.ExpiresAt = until })
		if !errors.Is(err, registry.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("renew the lease of %s: %w", account, registry.ErrConflict)
}

// Down releases a preview: its stack instance is removed and its account
// goes back to the pool for a reset. Releasing a released preview is a
// no-op.
func (m *Manager) Down(ctx context.Context, id, actor, reason string) (*Preview, error) {
	if reason == "" {
		reason = "released"
	}
	for attempt := 0; attempt < 8; attempt++ {
		t, err := m.get(ctx, id)
		if err != nil {
			return nil, err
		}
		switch t.State {
		case registry.StateClosed, registry.StateDecommissioning:
			return m.view(ctx, t, nil)
		}
		next, err := m.d.Registry.Transition(ctx, t, registry.StateDecommissioning, registry.Change{Actor: actor, Reason: reason, Type: "preview.release"})
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m.d.Kick(id)
		m.d.Log.InfoContext(ctx, "preview release requested", "preview", id, "by", actor, "reason", reason)
		return m.view(ctx, next, nil)
	}
	return nil, fmt.Errorf("release preview %s: %w", id, registry.ErrConflict)
}

// Extend lengthens a preview's lease by d, counted from its current end
// (or from now, for a lease already past its end); the new end may not be
// more than MaxTTL from now.
func (m *Manager) Extend(ctx context.Context, id string, d time.Duration, actor string) (*Preview, error) {
	if err := m.checkTTL("by", d); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 8; attempt++ {
		t, err := m.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if t.AccountID == "" {
			return nil, fmt.Errorf("preview %s holds no account (it is %s): %w", id, phaseOf(t), registry.ErrInvalidTransition)
		}
		a, err := m.d.Registry.GetPoolAccount(ctx, t.AccountID)
		if err != nil {
			return nil, err
		}
		if a.State != registry.PoolLeased || a.Lease == nil || a.Lease.Tenant != id {
			return nil, fmt.Errorf("preview %s holds no lease on %s: %w", id, t.AccountID, registry.ErrInvalidTransition)
		}
		now := m.now()
		until := a.Lease.ExpiresAt
		if until.Before(now) {
			until = now
		}
		until = until.Add(d)
		if until.Sub(now) > m.cfg.MaxTTL {
			return nil, &registry.FieldError{Field: "by", Problem: fmt.Sprintf("would end the lease %s from now; a lease may end at most %s from now (it ends %s)",
				until.Sub(now).Round(time.Minute), m.cfg.MaxTTL, a.Lease.ExpiresAt.Format(time.RFC3339))}
		}
		next, err := m.d.Registry.MovePoolAccount(ctx, a, registry.PoolLeased, func(n *registry.PoolAccount) { n.Lease.ExpiresAt = until })
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, err := m.d.Registry.Update(ctx, t, registry.Change{Actor: actor, Type: "preview.extended",
			Detail: map[string]string{"expires_at": until.Format(time.RFC3339), "by": d.String()}}); err != nil && !errors.Is(err, registry.ErrConflict) {
			return nil, err
		}
		return m.view(ctx, t, next)
	}
	return nil, fmt.Errorf("extend preview %s: %w", id, registry.ErrConflict)
}

// Get returns one preview by id.
func (m *Manager) Get(ctx context.Context, id string) (*Preview, error) {
	t, err := m.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return m.viewQueued(ctx, t)
}

func (m *Manager) get(ctx context.Context, id string) (*registry.Tenant, error) {
	t, err := m.d.Registry.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Kind != registry.KindPreview {
		return nil, fmt.Errorf("tenant %s is not a preview: %w", id, registry.ErrNotFound)
	}
	return t, nil
}

// List returns the pool and the previews holding or waiting for accounts,
// and failed ones.
func (m *Manager) List(ctx context.Context) (*Listing, error) {
	accounts, err := m.d.Registry.ListPoolAll(ctx)
	if err != nil {
		return nil, err
	}
	l := &Listing{Target: m.cfg.PoolSize, Counts: map[string]int{}, Accounts: accounts, Previews: []*Preview{}}
	for _, s := range registry.PoolStates() {
		l.Counts[string(s)] = 0
	}
	byAccount := map[string]*registry.PoolAccount{}
	for _, a := range accounts {
		l.Counts[string(a.State)]++
		byAccount[a.AccountID] = a
	}
	creating, err := m.creating(ctx)
	if err != nil {
		return nil, err
	}
	l.Counts["creating"] = len(creating)
	waiting, err := m.waiting(ctx)
	if err != nil {
		return nil, err
	}
	for i, t := range waiting {
		p, err := m.view(ctx, t, nil)
		if err != nil {
			return nil, err
		}
		p.QueuePosition = i + 1
		l.Previews = append(l.Previews, p)
	}
	for _, st := range []registry.State{registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying,
		registry.StateActive, registry.StateUpdating, registry.StateDecommissioning, registry.StateFailed} {
		ts, err := m.listState(ctx, st, registry.KindPreview)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			p, err := m.view(ctx, t, byAccount[t.AccountID])
			if err != nil {
				return nil, err
			}
			l.Previews = append(l.Previews, p)
		}
	}
	return l, nil
}

// listState returns every tenant of a kind in a state.
func (m *Manager) listState(ctx context.Context, st registry.State, kind registry.Kind) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	cursor := ""
	for {
		page, err := m.d.Registry.List(ctx, st, registry.ListOptions{Cursor: cursor, Limit: registry.MaxPageSize})
		if err != nil {
			return nil, err
		}
		for _, t := range page.Tenants {
			if t.Kind == kind {
				out = append(out, t)
			}
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

// waiting returns the previews queued for an account, first come first.
func (m *Manager) waiting(ctx context.Context) ([]*registry.Tenant, error) {
	ts, err := m.listState(ctx, registry.StateRequested, registry.KindPreview)
	if err != nil {
		return nil, err
	}
	ts = slices.DeleteFunc(ts, func(t *registry.Tenant) bool { return t.AccountID != "" })
	slices.SortStableFunc(ts, func(a, b *registry.Tenant) int {
		if c := timeAttr(a, attrRequestedAt).Compare(timeAttr(b, attrRequestedAt)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ts, nil
}

// creating returns the pool-kind tenants still being made (or failed and
// waiting for an operator): they count toward the pool's size.
func (m *Manager) creating(ctx context.Context) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	for _, st := range []registry.State{registry.StateRequested, registry.StateCreatingAccount, registry.StatePreparing,
		registry.StateDeploying, registry.StateFailed} {
		ts, err := m.listState(ctx, st, registry.KindPool)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

func timeAttr(t *registry.Tenant, k string) time.Time {
	at, err := time.Parse(time.RFC3339Nano, t.Attributes[k])
	if err != nil {
		return t.CreatedAt
	}
	return at
}

func setAttr(t *registry.Tenant, k, v string) {
	if t.Attributes == nil {
		t.Attributes = map[string]string{}
	}
	t.Attributes[k] = v
}

func phaseOf(t *registry.Tenant) Phase {
	switch t.State {
	case registry.StateRequested:
		if t.AccountID == "" {
			return PhaseWaiting
		}
		return PhaseDeploying
	case registry.StateCreatingAccount, registry.StatePreparing, registry.StateDeploying:
		return PhaseDeploying
	case registry.StateActive:
		return PhaseReady
	case registry.StateUpdating:
		return PhaseUpdating
	case registry.StateDecommissioning:
		return PhaseReleasing
	case registry.StateClosed:
		return PhaseReleased
	}
	return PhaseFailed
}

// view makes the caller's view of a preview; a is its pool account when
// the caller has it at hand.
func (m *Manager) view(ctx context.Context, t *registry.Tenant, a *registry.PoolAccount) (*Preview, error) {
	pr, _ := strconv.Atoi(t.Attributes[attrPR])
	p := &Preview{
		ID: t.ID, Repo: t.Attributes[attrRepo], PR: pr, Phase: phaseOf(t), State: t.State, Reason: t.Reason,
		URL: t.Endpoint, AccountID: t.AccountID, Release: t.TargetVersion, Running: t.AppVersion,
		RequestedBy: t.Attributes[attrRequestedBy], CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if p.Phase == PhaseReady || p.Phase == PhaseUpdating {
		if t.Health != nil {
			h := *t.Health
			p.Health, p.HealthFresh = &h, t.FreshHealth()
		}
	} else {
		p.URL = "" // only a serving preview has a URL worth opening
	}
	if p.Phase == PhaseWaiting {
		w := timeAttr(t, attrWaitUntil)
		p.WaitUntil = &w
	}
	if t.AccountID != "" && a == nil {
		got, err := m.d.Registry.GetPoolAccount(ctx, t.AccountID)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return nil, err
		}
		a = got
	}
	if a != nil && a.Lease != nil && a.Lease.Tenant == t.ID && a.State == registry.PoolLeased {
		leased, expires := a.Lease.LeasedAt, a.Lease.ExpiresAt
		p.LeasedAt, p.ExpiresAt = &leased, &expires
	}
	return p, nil
}
