package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

// Error codes of the JSON error body. They are part of the API: clients
// branch on them, so they never change meaning.
const (
	CodeInvalidJSON           = "invalid_json"
	CodeInvalidRequest        = "invalid_request"
	CodeIdempotencyKeyMissing = "idempotency_key_required"
	CodeValidation            = "validation_failed"
	CodeBodyTooLarge          = "body_too_large"
	CodeRequestTimeout        = "request_timeout"
	CodeUnsupportedMedia      = "unsupported_media_type"
	CodeIdempotencyConflict   = "idempotency_conflict"
	CodeInvalidTransition     = "invalid_transition"
	CodeConflict              = "conflict"
	CodeInvalidCursor         = "invalid_cursor"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeUnauthorized          = "unauthorized"
	CodeForbidden             = "forbidden"
	CodeRateLimited           = "rate_limited"
	CodeInternal              = "internal"
)

// apiError is an error the caller sees as it is: its status, code and
// message are chosen for the caller.
type apiError struct {
	status  int
	code    string
	message string
	fields  []FieldProblem
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// FieldProblem names one invalid field of a request body.
type FieldProblem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody. Fields is set for validation errors.
type ErrorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Fields  []FieldProblem `json:"fields,omitempty"`
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// NoSuchRoute is the message of the routing 404 (no route matches the
// path), which tells it from a handler's 404 of something it looked for.
const NoSuchRoute = "no such route"

var (
	errMethod = fail(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this path")
	errRoute  = fail(http.StatusNotFound, CodeNotFound, NoSuchRoute)
)

// classify maps an error to what the caller is told. Anything it does not
// recognise is a 500 whose body says nothing about the cause.
func classify(err error) (*apiError, bool) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae, true
	case errors.Is(err, registry.ErrNotFound):
		return fail(http.StatusNotFound, CodeNotFound, "no such tenant"), true
	case errors.Is(err, registry.ErrInvalidTransition):
		return fail(http.StatusConflict, CodeInvalidTransition, "%s", transitionMessage(err)), true
	case errors.Is(err, registry.ErrConflict):
		return fail(http.StatusConflict, CodeConflict, "the tenant changed while the request ran; read it again and retry"), true
	case errors.Is(err, registry.ErrInvalidCursor):
		return fail(http.StatusBadRequest, CodeInvalidCursor, "cursor is not one a previous page of this listing returned"), true
	case errors.Is(err, audit.ErrRunsElsewhere):
		// The API reads reports but does not run audits (in AWS the
		// reconciler runs them daily): a setting of this deployment.
		return fail(http.StatusNotImplemented, CodeNotConfigured, "the isolation audit does not run from this API: it runs daily in the reconciler; read a tenant's latest report with GET /v1/tenants/{id}/isolation"), true
	case errors.Is(err, registry.ErrInvalid):
		fields := fieldProblems(err)
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidRequest, message: fieldsMessage(fields), fields: fields}, true
	}
	return nil, false
}

// transitionMessage keeps the registry's explanation ("cannot go from X to
// Y (allowed: …)"), which names only states the caller may know.
func transitionMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "cannot go from"); i >= 0 {
		msg = msg[i:]
	}
	return strings.TrimSuffix(msg, ": "+registry.ErrInvalidTransition.Error())
}

// fieldProblems collects every registry.FieldError in err's tree.
func fieldProblems(err error) []FieldProblem {
	var out []FieldProblem
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*registry.FieldError); ok {
			out = append(out, FieldProblem{Field: fe.Field, Problem: fe.Problem})
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func fieldsMessage(fields []FieldProblem) string {
	if len(fields) == 0 {
		return "invalid request"
	}
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.Field + " " + f.Problem
	}
	return strings.Join(parts, "; ")
}

// writeError writes err as a JSON error. A 5xx is logged with its cause and
// answered with the request id only.
func writeError(ctx context.Context, w http.ResponseWriter, err error) {
	ae, ok := classify(err)
	if !ok {
		id := requestID(ctx)
		logger(ctx).ErrorContext(ctx, "request failed", "error", err)
		ae = fail(http.StatusInternalServerError, CodeInternal, "internal error (request id %s)", id)
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="silo"`)
	}
	writeJSON(w, ae.status, ErrorBody{Error: ErrorDetail{Code: ae.code, Message: ae.message, Fields: ae.fields}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are written; this is a bug, not a request problem.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
