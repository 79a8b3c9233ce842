package api

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/silo-saas/silo/registry"
)

// SignupRequest is the body of POST /v1/signup. Unknown fields are refused.
type SignupRequest struct {
	Name   string `json:"name"`
	Email  string `json:"email"`
	Tier   string `json:"tier"`
	Region string `json:"region"`
}

// SignupResponse is the 202 answer to a signup, and to each replay of it.
type SignupResponse struct {
	TenantID    string         `json:"tenant_id"`
	State       registry.State `json:"state"`
	StatusURL   string         `json:"status_url"`
	StatusToken string         `json:"status_token"`
}

// IdempotencyKeyHeader names the header every signup must carry.
const IdempotencyKeyHeader = "Idempotency-Key"

// ReplayedHeader is "true" on a signup answer that replays an earlier one.
const ReplayedHeader = "Idempotent-Replayed"

// decodeJSON reads exactly one JSON object of type T from r's body,
// decoded strictly (decodeBody), with its size bounded by max and its
// arrival by the server's read timeout.
func decodeJSON[T any](w http.ResponseWriter, r *http.Request, max int64) (T, error) {
	var v T
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return v, fail(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "send the body as application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return v, fail(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the body is larger than %d bytes", max)
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			// The server's read timeout (ServerTimeouts.Read) cut a body
			// that arrived too slowly.
			return v, fail(http.StatusRequestTimeout, CodeRequestTimeout, "the body did not arrive in time; send it at once")
		}
		return v, fail(http.StatusBadRequest, CodeInvalidRequest, "the body could not be read")
	}
	return decodeBody[T](body)
}

// signup registers a tenant. Order of checks: the client's rate limit,
// idempotency key, body, the email domain's rate limit, then the registry.
// A refused request writes nothing. The domain's token is given back when
// the signup created nothing: a replay answered from the registry, or a
// body the registry refused, so neither eats the domain's budget.
func (a *API) signup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if ok, wait := a.limits.allow(clientKey(r, a.o.TrustForwardedFor), a.d.Now()); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(ctx, w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many signups from this client; retry later"))
		return
	}
	key := r.Header.Get(IdempotencyKeyHeader)
	if key == "" {
		writeError(ctx, w, fail(http.StatusBadRequest, CodeIdempotencyKeyMissing, "the %s header is required", IdempotencyKeyHeader))
		return
	}
	if err := ValidateIdempotencyKey(key); err != nil {
		e := fail(http.StatusBadRequest, CodeInvalidRequest, "%s header %s", IdempotencyKeyHeader, problemOf(err))
		e.fields = []FieldProblem{{Field: IdempotencyKeyHeader, Problem: problemOf(err)}}
		writeError(ctx, w, e)
		return
	}
	req, err := decodeJSON[SignupRequest](w, r, a.o.MaxBody)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	domain := emailDomain(req.Email)
	if ok, wait := a.domains.allow(domain, a.d.Now()); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(ctx, w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many signups for email addresses of this domain; retry later"))
		return
	}
	t, created, err := a.create(r, req, key)
	if _, refused := errors.AsType[*apiError](err); err == nil && !created || refused {
		a.domains.refund(domain, a.d.Now())
	}
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	if created {
		logger(ctx).InfoContext(ctx, "tenant signed up", "tenant", t.ID)
		a.d.Kick(t.ID)
	} else {
		w.Header().Set(ReplayedHeader, "true")
	}
	statusURL := strings.TrimSuffix(a.o.BaseURL, "/") + "/v1/tenants/" + t.ID
	w.Header().Set("Location", statusURL)
	writeJSON(w, http.StatusAccepted, SignupResponse{
		TenantID: t.ID, State: t.State, StatusURL: statusURL, StatusToken: a.status.mint(t.ID),
	})
}

// create calls the registry with an id derived from the name
// (registry.NewTenantID). A fresh random suffix per attempt is fine: the
// registry's replay ignores the id. An id collision (the same name twice,
// and an unlucky suffix) is retried with another.
func (a *API) create(r *http.Request, req SignupRequest, key string) (*registry.Tenant, bool, error) {
	spec := registry.Spec{Name: req.Name, Email: req.Email, Tier: registry.Tier(req.Tier), Region: req.Region, Kind: registry.KindTenant}
	for attempt := 0; ; attempt++ {
		spec.ID = registry.NewTenantID(req.Name)
		t, created, err := a.d.Registry.Create(r.Context(), spec, key, "signup")
		switch {
		case err == nil:
			return t, created, nil
		case errors.Is(err, registry.ErrAlreadyExists) && attempt < 3:
			continue
		case errors.Is(err, registry.ErrConflict):
			return nil, false, fail(http.StatusConflict, CodeIdempotencyConflict,
				"this %s was already used for a different signup; use a new key for a new signup", IdempotencyKeyHeader)
		case errors.Is(err, registry.ErrInvalid):
			fields := fieldProblems(err)
			return nil, false, &apiError{status: http.StatusUnprocessableEntity, code: CodeValidation, message: fieldsMessage(fields), fields: fields}
		}
		return nil, false, err
	}
}

func problemOf(err error) string {
	var fe *registry.FieldError
	if errors.As(err, &fe) {
		return fe.Problem
	}
	return "is invalid"
}
