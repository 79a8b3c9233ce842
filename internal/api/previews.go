package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// Previews is the PR-preview service; *preview.Manager satisfies it.
type Previews interface {
	Up(ctx context.Context, req preview.UpRequest) (*preview.Preview, error)
	Down(ctx context.Context, id, actor, reason string) (*preview.Preview, error)
	Extend(ctx context.Context, id string, d time.Duration, actor string) (*preview.Preview, error)
	Get(ctx context.Context, id string) (*preview.Preview, error)
	List(ctx context.Context) (*preview.Listing, error)
}

// MaxInlineArtifact bounds a code zip sent in the body of POST
// /v1/previews. API Gateway and Lambda take at most 6 MB of request, and
// base64 grows the zip by a third; larger builds go to S3 and are named by
// artifact_uri.
const MaxInlineArtifact = 4 << 20

// PreviewUpRequest is the body of POST /v1/previews.
type PreviewUpRequest struct {
	Repo string `json:"repo"`
	PR   int    `json:"pr"`
	// ArtifactZip is the code zip (base64 in JSON); ArtifactURI an
	// s3://bucket/key instead.
	ArtifactZip []byte `json:"artifact_zip,omitempty"`
	ArtifactURI string `json:"artifact_uri,omitempty"`
	// TTL and Wait are Go durations ("24h", "15m").
	TTL  string `json:"ttl,omitempty"`
	Wait string `json:"wait,omitempty"`
}

// PreviewExtendRequest is the body of POST /v1/previews/{id}/extend.
type PreviewExtendRequest struct {
	By string `json:"by"`
}

// PreviewDownRequest is the (optional) body of DELETE /v1/previews/{id}.
type PreviewDownRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (a *API) previewRoutes() {
	a.handle("/v1/previews", route{http.MethodPost: a.previewUp, http.MethodGet: a.previewList})
	a.handle("/v1/previews/{id}", route{http.MethodGet: a.previewGet, http.MethodDelete: a.previewDown})
	a.handle("/v1/previews/{id}/extend", route{http.MethodPost: a.previewExtend})
}

var errNoPreviews = fail(http.StatusNotFound, CodeNotFound, "previews are not enabled on this API")

// previewError maps the preview service's errors onto API errors.
func previewError(err error) error {
	switch {
	case errors.Is(err, preview.ErrBusy):
		return fail(http.StatusConflict, CodeConflict, "%s", strings.TrimSuffix(err.Error(), ": "+preview.ErrBusy.Error()))
	case errors.Is(err, registry.ErrNotFound):
		return fail(http.StatusNotFound, CodeNotFound, "no such preview")
	}
	return err
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, &registry.FieldError{Field: field, Problem: "is not a duration like 24h or 90m"}
	}
	return d, nil
}

// previewUp answers POST /v1/previews (operator): open or update a PR's
// preview with a build. 202: the preview is on its way; poll its URL.
func (a *API) previewUp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, _, ok := a.previewCall(w, r, RoleOperator)
	if !ok {
		return
	}
	// A base64 zip of MaxInlineArtifact bytes plus the other fields.
	req, err := decodeJSON[PreviewUpRequest](w, r, max(a.o.MaxBody, MaxInlineArtifact*4/3+4096))
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	ttl, terr := parseDuration("ttl", req.TTL)
	wait, werr := parseDuration("wait", req.Wait)
	var aerr error
	if len(req.ArtifactZip) > MaxInlineArtifact {
		aerr = &registry.FieldError{Field: "artifact_zip", Problem: "is larger than 4 MiB; upload it to S3 and send artifact_uri"}
	}
	if err := errors.Join(terr, werr, aerr); err != nil {
		writeError(ctx, w, err)
		return
	}
	pv, err := a.d.Previews.Up(ctx, preview.UpRequest{
		Repo: req.Repo, PR: req.PR, Artifact: req.ArtifactZip, ArtifactURI: req.ArtifactURI,
		TTL: ttl, Wait: wait, Actor: p.Actor(),
	})
	if err != nil {
		writeError(ctx, w, previewError(err))
		return
	}
	w.Header().Set("Location", "/v1/previews/"+pv.ID)
	writeJSON(w, http.StatusAccepted, pv)
}

func (a *API) previewList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, _, ok := a.previewCall(w, r, RoleViewer); !ok {
		return
	}
	l, err := a.d.Previews.List(ctx)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// previewCall is what every /v1/previews/{id} handler checks first: the
// service is wired, the caller holds role, and the id is one. It writes the
// error itself; ok is false then.
func (a *API) previewCall(w http.ResponseWriter, r *http.Request, role Role) (p Principal, id string, ok bool) {
	ctx := r.Context()
	if a.d.Previews == nil {
		writeError(ctx, w, errNoPreviews)
		return Principal{}, "", false
	}
	p, err := a.operator(r, role)
	if err != nil {
		writeError(ctx, w, err)
		return Principal{}, "", false
	}
	id = r.PathValue("id")
	if id != "" && registry.ValidateID(id) != nil {
		writeError(ctx, w, fail(http.StatusNotFound, CodeNotFound, "no such preview"))
		return Principal{}, "", false
	}
	return p, id, true
}

func (a *API) previewGet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, id, ok := a.previewCall(w, r, RoleViewer)
	if !ok {
		return
	}
	pv, err := a.d.Previews.Get(ctx, id)
	if err != nil {
		writeError(ctx, w, previewError(err))
		return
	}
	writeJSON(w, http.StatusOK, pv)
}

// previewDown answers DELETE /v1/previews/{id} (operator): release it.
func (a *API) previewDown(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, id, ok := a.previewCall(w, r, RoleOperator)
	if !ok {
		return
	}
	var req PreviewDownRequest
	var err error
	if r.ContentLength != 0 {
		if req, err = decodeJSON[PreviewDownRequest](w, r, a.o.MaxBody); err != nil {
			writeError(ctx, w, err)
			return
		}
	}
	if len(req.Reason) > 1000 {
		writeError(ctx, w, &registry.FieldError{Field: "reason", Problem: "must be at most 1000 characters"})
		return
	}
	pv, err := a.d.Previews.Down(ctx, id, p.Actor(), strings.TrimSpace(req.Reason))
	if err != nil {
		writeError(ctx, w, previewError(err))
		return
	}
	writeJSON(w, http.StatusAccepted, pv)
}

func (a *API) previewExtend(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, id, ok := a.previewCall(w, r, RoleOperator)
	if !ok {
		return
	}
	req, err := decodeJSON[PreviewExtendRequest](w, r, a.o.MaxBody)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	by, err := parseDuration("by", req.By)
	if err == nil && by == 0 {
		err = &registry.FieldError{Field: "by", Problem: "is required (a duration like 12h)"}
	}
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	pv, err := a.d.Previews.Extend(ctx, id, by, p.Actor())
	if err != nil {
		writeError(ctx, w, previewError(err))
		return
	}
	writeJSON(w, http.StatusOK, pv)
}
