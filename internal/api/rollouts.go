package api

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/registry"
)

// Rollouts is the rollout engine; *rollout.Engine satisfies it.
type Rollouts interface {
	Start(ctx context.Context, req rollout.StartRequest) (*registry.Rollout, error)
	Get(ctx context.Context, id string) (*registry.Rollout, []registry.RolloutTenant, error)
	List(ctx context.Context, limit int) ([]*registry.Rollout, error)
	Pause(ctx context.Context, id, actor, reason string) (*registry.Rollout, error)
	Resume(ctx context.Context, id, actor string) (*registry.Rollout, error)
	Abort(ctx context.Context, id, actor, reason string, rollback bool) (*registry.Rollout, error)
	Pin(ctx context.Context, tenantID, release, actor string) (*registry.Tenant, error)
	Unpin(ctx context.Context, tenantID, actor string) (*registry.Tenant, error)
}

// Releases publishes builds as releases; preview.StackSetReleases
// satisfies it.
type Releases interface {
	Publish(ctx context.Context, code []byte, source string) (registry.Release, error)
}

// ReleasePublishRequest is the body of POST /v1/releases.
type ReleasePublishRequest struct {
	// ArtifactZip is the code zip (base64 in JSON), at most
	// MaxInlineArtifact bytes.
	ArtifactZip []byte `json:"artifact_zip"`
	// Source says where the build came from ("ci acme/web@1a2b3c");
	// "uploaded by <actor>" when empty.
	Source string `json:"source,omitempty"`
}

// ReleaseResponse is the answer to POST /v1/releases.
type ReleaseResponse struct {
	Release registry.Release `json:"release"`
}

// RolloutStartRequest is the body of POST /v1/rollouts. Durations are Go
// durations ("5m"); zero values take the engine's defaults.
type RolloutStartRequest struct {
	Release          string `json:"release"`
	Plan             string `json:"plan"`
	Bake             string `json:"bake,omitempty"`
	GateTimeout      string `json:"gate_timeout,omitempty"`
	MaxFailures      int    `json:"max_failures,omitempty"`
	MaxConcurrency   int    `json:"max_concurrency,omitempty"`
	FailureTolerance *int   `json:"failure_tolerance,omitempty"`
	CanaryTag        string `json:"canary_tag,omitempty"`
	CanaryTier       string `json:"canary_tier,omitempty"`
	// EnterpriseLast is true when absent.
	EnterpriseLast *bool `json:"enterprise_last,omitempty"`
}

// RolloutAbortRequest is the (optional) body of POST /v1/rollouts/{id}/abort.
type RolloutAbortRequest struct {
	Rollback bool   `json:"rollback,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// RolloutPauseRequest is the (optional) body of POST /v1/rollouts/{id}/pause.
type RolloutPauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// PinRequest is the (optional) body of POST /v1/tenants/{id}/pin: the
// release to pin to, the one the tenant runs when empty.
type PinRequest struct {
	Release string `json:"release,omitempty"`
}

// RolloutView is a rollout as the API shows it: the registry's record with
// its durations written as Go durations ("5m0s") rather than nanoseconds.
type RolloutView struct {
	*registry.Rollout
	Bake        string `json:"bake"`
	GateTimeout string `json:"gate_timeout"`
}

// NewRolloutView is r as the API shows it.
func NewRolloutView(r *registry.Rollout) RolloutView {
	return RolloutView{Rollout: r, Bake: r.Bake.String(), GateTimeout: r.GateTimeout.String()}
}

// record is the rollout back from its view (the client's half).
func (v RolloutView) record() (*registry.Rollout, error) {
	if v.Rollout == nil {
		return nil, errors.New("the answer holds no rollout")
	}
	r := *v.Rollout
	var err error
	if r.Bake, err = time.ParseDuration(v.Bake); err != nil {
		return nil, err
	}
	if r.GateTimeout, err = time.ParseDuration(v.GateTimeout); err != nil {
		return nil, err
	}
	return &r, nil
}

// RolloutList is the answer to GET /v1/rollouts.
type RolloutList struct {
	Rollouts []RolloutView `json:"rollouts"`
}

// RolloutDetail is the answer to GET /v1/rollouts/{id}.
type RolloutDetail struct {
	Rollout RolloutView              `json:"rollout"`
	Tenants []registry.RolloutTenant `json:"tenants"`
}

// DefaultRolloutList is how many rollouts GET /v1/rollouts lists unless
// asked for another number.
const DefaultRolloutList = 20

func (a *API) rolloutRoutes() {
	a.handle("/v1/releases", route{http.MethodPost: a.releasePublish})
	a.handle("/v1/rollouts", route{http.MethodPost: a.rolloutStart, http.MethodGet: a.rolloutList})
	a.handle("/v1/rollouts/{id}", route{http.MethodGet: a.rolloutGet})
	a.handle("/v1/rollouts/{id}/pause", route{http.MethodPost: a.rolloutPause})
	a.handle("/v1/rollouts/{id}/resume", route{http.MethodPost: a.rolloutResume})
	a.handle("/v1/rollouts/{id}/abort", route{http.MethodPost: a.rolloutAbort})
}

var (
	errNoRollouts = fail(http.StatusNotFound, CodeNotFound, "rollouts are not enabled on this API")
	errNoReleases = fail(http.StatusNotFound, CodeNotFound, "releases are not enabled on this API")
	errNoRollout  = fail(http.StatusNotFound, CodeNotFound, "no such rollout")
)

// rolloutError maps the engine's errors onto API errors; the ones it does
// not name (a bad field, an invalid transition) classify maps.
func rolloutError(err error) error {
	switch {
	case errors.Is(err, registry.ErrRolloutActive):
		return fail(http.StatusConflict, CodeConflict, "%s", strings.TrimSuffix(err.Error(), ": "+registry.ErrRolloutActive.Error()))
	case errors.Is(err, registry.ErrNotFound):
		return errNoRollout
	}
	return err
}

// rolloutCall is what every /v1/rollouts handler checks first: the engine
// is wired, the caller holds role, and the id (when the path has one) is
// one. It writes the error itself; ok is false then.
func (a *API) rolloutCall(w http.ResponseWriter, r *http.Request, role Role) (p Principal, id string, ok bool) {
	ctx := r.Context()
	if a.d.Rollouts == nil {
		writeError(ctx, w, errNoRollouts)
		return Principal{}, "", false
	}
	p, err := a.operator(r, role)
	if err != nil {
		writeError(ctx, w, err)
		return Principal{}, "", false
	}
	id = r.PathValue("id")
	if id != "" && registry.ValidateRolloutID(id) != nil {
		writeError(ctx, w, errNoRollout)
		return Principal{}, "", false
	}
	return p, id, true
}

// optionalBody decodes a body that may be left out.
func optionalBody[T any](a *API, w http.ResponseWriter, r *http.Request) (T, error) {
	if r.ContentLength == 0 {
		var zero T
		return zero, nil
	}
	return decodeJSON[T](w, r, a.o.MaxBody)
}

// checkZip refuses what is not a zip with at least one entry. It does not
// look for a bootstrap: a release may be any Lambda code package, and the
// template names its handler.
func checkZip(field string, code []byte) error {
	switch {
	case len(code) == 0:
		return &registry.FieldError{Field: field, Problem: "is required: the build's code zip, base64-encoded"}
	case len(code) > MaxInlineArtifact:
		return &registry.FieldError{Field: field, Problem: "is larger than 4 MiB"}
	}
	zr, err := zip.NewReader(bytes.NewReader(code), int64(len(code)))
	if err != nil || len(zr.File) == 0 {
		return &registry.FieldError{Field: field, Problem: "is not a zip file with at least one entry"}
	}
	return nil
}

// releasePublish answers POST /v1/releases (operator): store a build as a
// release that rollouts and pins can name.
func (a *API) releasePublish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.d.Releases == nil {
		writeError(ctx, w, errNoReleases)
		return
	}
	p, err := a.operator(r, RoleOperator)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	req, err := decodeJSON[ReleasePublishRequest](w, r, max(a.o.MaxBody, MaxInlineArtifact*4/3+4096))
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	var serr error
	req.Source = strings.TrimSpace(req.Source)
	if len(req.Source) > 200 {
		serr = &registry.FieldError{Field: "source", Problem: "must be at most 200 characters"}
	}
	if err := errors.Join(checkZip("artifact_zip", req.ArtifactZip), serr); err != nil {
		writeError(ctx, w, err)
		return
	}
	if req.Source == "" {
		req.Source = "uploaded by " + p.Actor()
	}
	rel, err := a.d.Releases.Publish(ctx, req.ArtifactZip, req.Source)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	logger(ctx).InfoContext(ctx, "release published", "release", rel.Version, "actor", p.Actor(), "bytes", len(req.ArtifactZip))
	writeJSON(w, http.StatusCreated, ReleaseResponse{Release: rel})
}

// rolloutStart answers POST /v1/rollouts (operator): plan a rollout; the
// engine carries it out. 201 with the planned rollout.
// startTimeout bounds the planning of a rollout once its request arrived,
// whether or not the client still waits for the answer.
const startTimeout = time.Minute

func (a *API) rolloutStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, _, ok := a.rolloutCall(w, r, RoleOperator)
	if !ok {
		return
	}
	req, err := decodeJSON[RolloutStartRequest](w, r, a.o.MaxBody)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	bake, berr := parseDuration("bake", req.Bake)
	gate, gerr := parseDuration("gate_timeout", req.GateTimeout)
	if err := errors.Join(berr, gerr); err != nil {
		writeError(ctx, w, err)
		return
	}
	sr := rollout.StartRequest{
		Release: strings.TrimSpace(req.Release), Plan: req.Plan, Bake: bake, GateTimeout: gate,
		MaxFailures: req.MaxFailures, MaxConcurrency: req.MaxConcurrency, FailureTolerance: req.FailureTolerance,
		Selection: rollout.Selection{
			CanaryTag: strings.TrimSpace(req.CanaryTag), CanaryTier: registry.Tier(strings.TrimSpace(req.CanaryTier)),
			EnterpriseLast: req.EnterpriseLast == nil || *req.EnterpriseLast,
		},
		Actor: p.Actor(),
	}
	// Planning writes the rollout, then its tenants: cut short, it leaves a
	// half-written plan that holds the one live rollout's place until the
	// engine gives it up (minutes). A client that stops waiting (its own
	// timeout, a dropped connection) must not cut it short.
	planCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	ro, err := a.d.Rollouts.Start(planCtx, sr)
	if err != nil {
		writeError(ctx, w, rolloutError(err))
		return
	}
	logger(ctx).InfoContext(ctx, "rollout started", "rollout", ro.ID, "release", ro.Release, "actor", p.Actor())
	w.Header().Set("Location", "/v1/rollouts/"+ro.ID)
	writeJSON(w, http.StatusCreated, NewRolloutView(ro))
}

func (a *API) rolloutList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, _, ok := a.rolloutCall(w, r, RoleViewer); !ok {
		return
	}
	limit := DefaultRolloutList
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > registry.MaxPageSize {
			writeError(ctx, w, fail(http.StatusBadRequest, CodeInvalidRequest, "limit must be a whole number from 1 to %d", registry.MaxPageSize))
			return
		}
		limit = n
	}
	rs, err := a.d.Rollouts.List(ctx, limit)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	out := RolloutList{Rollouts: make([]RolloutView, 0, len(rs))}
	for _, ro := range rs {
		out.Rollouts = append(out.Rollouts, NewRolloutView(ro))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) rolloutGet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, id, ok := a.rolloutCall(w, r, RoleViewer)
	if !ok {
		return
	}
	ro, ts, err := a.d.Rollouts.Get(ctx, id)
	if err != nil {
		writeError(ctx, w, rolloutError(err))
		return
	}
	if ts == nil {
		ts = []registry.RolloutTenant{}
	}
	writeJSON(w, http.StatusOK, RolloutDetail{Rollout: NewRolloutView(ro), Tenants: ts})
}

// checkReason bounds an optional reason as the tenant actions do.
func checkReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > 1000 {
		return "", &registry.FieldError{Field: "reason", Problem: "must be at most 1000 characters"}
	}
	return reason, nil
}

// rolloutCommand runs an operator's command on a rollout and answers with
// the rollout as it left it.
func (a *API) rolloutCommand(w http.ResponseWriter, r *http.Request, name string, do func(ctx context.Context, p Principal, id string) (*registry.Rollout, error)) {
	ctx := r.Context()
	p, id, ok := a.rolloutCall(w, r, RoleOperator)
	if !ok {
		return
	}
	ro, err := do(ctx, p, id)
	if err != nil {
		writeError(ctx, w, rolloutError(err))
		return
	}
	logger(ctx).InfoContext(ctx, "rollout command", "command", name, "rollout", id, "actor", p.Actor(), "state", ro.State)
	writeJSON(w, http.StatusOK, NewRolloutView(ro))
}

func (a *API) rolloutPause(w http.ResponseWriter, r *http.Request) {
	a.rolloutCommand(w, r, "pause", func(ctx context.Context, p Principal, id string) (*registry.Rollout, error) {
		req, err := optionalBody[RolloutPauseRequest](a, w, r)
		if err != nil {
			return nil, err
		}
		reason, err := checkReason(req.Reason)
		if err != nil {
			return nil, err
		}
		return a.d.Rollouts.Pause(ctx, id, p.Actor(), reason)
	})
}

func (a *API) rolloutResume(w http.ResponseWriter, r *http.Request) {
	a.rolloutCommand(w, r, "resume", func(ctx context.Context, p Principal, id string) (*registry.Rollout, error) {
		if _, err := optionalBody[struct{}](a, w, r); err != nil {
			return nil, err
		}
		return a.d.Rollouts.Resume(ctx, id, p.Actor())
	})
}

func (a *API) rolloutAbort(w http.ResponseWriter, r *http.Request) {
	a.rolloutCommand(w, r, "abort", func(ctx context.Context, p Principal, id string) (*registry.Rollout, error) {
		req, err := optionalBody[RolloutAbortRequest](a, w, r)
		if err != nil {
			return nil, err
		}
		reason, err := checkReason(req.Reason)
		if err != nil {
			return nil, err
		}
		return a.d.Rollouts.Abort(ctx, id, p.Actor(), reason, req.Rollback)
	})
}

// tenantPin answers POST /v1/tenants/{id}/pin and /unpin (operator): keep
// rollouts away from a tenant (on the release named, or the one it runs),
// or let them reach it again.
func (a *API) tenantPin(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	if a.d.Rollouts == nil {
		writeError(ctx, w, errNoRollouts)
		return
	}
	p, err := a.operator(r, RoleOperator)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	req, err := optionalBody[PinRequest](a, w, r)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	if name == "unpin" && req.Release != "" {
		writeError(ctx, w, &registry.FieldError{Field: "release", Problem: "is for pin; unpin takes none"})
		return
	}
	id := r.PathValue("id")
	if registry.ValidateID(id) != nil {
		writeError(ctx, w, registry.ErrNotFound)
		return
	}
	var t *registry.Tenant
	if name == "pin" {
		t, err = a.d.Rollouts.Pin(ctx, id, strings.TrimSpace(req.Release), p.Actor())
	} else {
		t, err = a.d.Rollouts.Unpin(ctx, id, p.Actor())
	}
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	logger(ctx).InfoContext(ctx, "operator action", "action", name, "tenant", id, "actor", p.Actor(), "pinned", t.Attributes[rollout.AttrPinned])
	writeJSON(w, http.StatusOK, a.view(t))
}
