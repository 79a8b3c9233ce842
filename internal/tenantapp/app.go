// Package tenantapp is the application every tenant runs in its own AWS
// account: a small JSON API over an items table, an attachments bucket
// encrypted with the tenant's own KMS key, and a health endpoint the fleet
// prober reads.
//
// It is an http.Handler so that one code path serves both deployments: the
// Lambda behind API Gateway (lambdas/tenantapp) and the local app host, which
// serves each tenant on a loopback URL with that tenant's credentials.
//
// Isolation comes from the account boundary: the app only ever sees its own
// table, bucket and key. The tenant claim check on tokens is defence in depth
// against a token minted for another tenant being replayed here.
//
// Routes:
//
//	GET    /health          unauthenticated; 200 ok, 503 degraded
//	POST   /items           create (bearer token)
//	GET    /items           list, ?limit=1..100&cursor=<opaque>
//	GET    /items/{id}      read, with the attachment inline
//	DELETE /items/{id}      delete, with the attachment
package tenantapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds a request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// App is one tenant's application.
type App struct {
	cfg  Config
	c    Clients
	log  *slog.Logger
	auth *authenticator
	mux  *http.ServeMux
}

// Options tune New beyond Config; the zero value is fine.
type Options struct {
	// HTTPClient fetches the issuer's JWKS; a client with a 5 s timeout when nil.
	HTTPClient *http.Client
}

// New returns the app for cfg using clients, which must act in the tenant's
// own account.
func New(c Clients, cfg Config, log *slog.Logger, o Options) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if c.DynamoDB == nil || c.S3 == nil || c.KMS == nil || c.Secrets == nil {
		return nil, errors.New("tenantapp: every client (DynamoDB, S3, KMS, Secrets) is required")
	}
	if log == nil {
		return nil, errors.New("tenantapp: logger is required")
	}
	a := &App{cfg: cfg, c: c, log: log.With("tenant", cfg.TenantID), auth: newAuthenticator(cfg, o.HTTPClient)}
	a.routes()
	return a, nil
}

func (a *App) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /health", a.health)
	m.Handle("POST /items", a.authed(a.createItem))
	m.Handle("GET /items", a.authed(a.listItems))
	m.Handle("GET /items/{id}", a.authed(a.getItem))
	m.Handle("DELETE /items/{id}", a.authed(a.deleteItem))
	// The method-less patterns catch what the ones above do not, so a known
	// path with another method is a JSON 405 and anything else a JSON 404
	// (ServeMux's own answers are plain text).
	m.Handle("/health", methodNotAllowed("GET, HEAD"))
	m.Handle("/items", methodNotAllowed("GET, HEAD, POST"))
	m.Handle("/items/{id}", methodNotAllowed("GET, HEAD, DELETE"))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	a.mux = m
}

// ServeHTTP serves one request.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
	})
}

// apiError is an answer for the caller: its message is safe to show.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "bad_request", message: fmt.Sprintf(format, args...)}
}

var errNotFound = &apiError{status: http.StatusNotFound, code: "not_found", message: "no such item"}

// fail answers err: an *apiError as it is, anything else as a 500 whose
// cause is logged and never shown.
func (a *App) fail(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.code, ae.message)
		return
	}
	a.log.ErrorContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, map[string]body{"error": {Code: code, Message: message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON reads r's body into v: at most MaxBodyBytes (413 past that),
// one JSON value, no unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > MaxBodyBytes {
		return tooLarge()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", message: "send application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// A second value (or garbage) after the first is a malformed body.
	if err := dec.Decode(&struct{}{}); !isEOF(err) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		return badRequest("body must be a single JSON object")
	}
	return nil
}

func tooLarge() *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large", message: fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes)}
}

func jsonError(err error) *apiError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge()
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("malformed JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return badRequest("field %q has the wrong type", te.Field)
	case isEOF(err):
		return badRequest("empty body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return badRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return badRequest("malformed JSON")
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
