package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/registry"
)

// TenantView is a tenant as the API shows it.
type TenantView struct {
	ID            string         `json:"tenant_id"`
	Name          string         `json:"name"`
	Tier          registry.Tier  `json:"tier"`
	Region        string         `json:"region"`
	State         registry.State `json:"state"`
	Reason        string         `json:"reason,omitempty"`
	AccountID     string         `json:"account_id,omitempty"`
	Endpoint      string         `json:"endpoint,omitempty"`
	AppVersion    string         `json:"app_version,omitempty"`
	TargetVersion string         `json:"target_version,omitempty"`
	// PinnedRelease is the release the tenant is pinned to: rollouts
	// leave it out.
	PinnedRelease string           `json:"pinned_release,omitempty"`
	Health        *registry.Health `json:"health,omitempty"`
	// FailedFrom is the state a FAILED tenant failed in (retry resumes
	// there).
	FailedFrom registry.State `json:"failed_from,omitempty"`
	// StateSince is when the tenant entered its state, and InState how
	// long ago that was when the answer was made (a Go duration, "3m12s").
	StateSince time.Time `json:"state_since"`
	InState    string    `json:"in_state"`
	// Deadline is how long the tenant may make no progress in its state
	// (absent in resting states, for a preview waiting for a pool account
	// and for a tenant a rollout updates); DueAt is when it will be past
	// it (absent while it waits on a quota); Overdue says it is.
	Deadline string     `json:"deadline,omitempty"`
	DueAt    *time.Time `json:"due_at,omitempty"`
	Overdue  bool       `json:"overdue,omitempty"`
	// LastError is the reconciler's latest error in this state, and
	// LastErrorAt when it was first seen.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Waiting names the quota AWS enforces that the tenant waits its turn
	// for, and WaitingUntil when that note runs out unless renewed.
	Waiting      string          `json:"waiting,omitempty"`
	WaitingUntil *time.Time      `json:"waiting_until,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	LastEvent    *registry.Event `json:"last_event,omitempty"`
}

// view is the tenant as the API shows it, judged against its state's
// deadline now.
func (a *API) view(t *registry.Tenant) TenantView {
	now := a.d.Now().UTC()
	v := a.o.Deadlines.Judge(t, now)
	tv := TenantView{
		ID: t.ID, Name: t.Name, Tier: t.Tier, Region: t.Region, State: t.State, Reason: t.Reason,
		AccountID: t.AccountID, Endpoint: t.Endpoint, AppVersion: t.AppVersion, TargetVersion: t.TargetVersion,
		PinnedRelease: t.Attributes[rollout.AttrPinned], Health: t.Health, FailedFrom: t.FailedFrom,
		StateSince: v.Since, InState: max(now.Sub(v.Since), 0).Round(time.Second).String(),
		Overdue: v.Overdue, LastError: t.LastError, LastErrorAt: t.LastErrorAt,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if v.Limit > 0 {
		tv.Deadline = v.Limit.String()
	}
	if !v.Due.IsZero() {
		due := v.Due
		tv.DueAt = &due
	}
	if v.Waiting != "" {
		tv.Waiting, tv.WaitingUntil = t.Waiting, t.WaitingUntil
	}
	return tv
}

// getTenant answers GET /v1/tenants/{id} for the tenant's status token or
// a viewer (or stronger) operator token.
func (a *API) getTenant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	tok, ok := bearer(r)
	if !ok {
		writeError(ctx, w, errNoToken)
		return
	}
	if isStatusToken(tok) {
		if !a.status.valid(tok, id) {
			writeError(ctx, w, fail(http.StatusForbidden, CodeForbidden, "this status token is not for this tenant"))
			return
		}
	} else if _, err := a.verify(r, tok, RoleViewer); err != nil {
		writeError(ctx, w, err)
		return
	}
	t, err := a.get(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	v := a.view(t)
	events, err := a.d.Registry.Events(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	if len(events) > 0 {
		v.LastEvent = &events[len(events)-1]
	}
	writeJSON(w, http.StatusOK, v)
}

// get reads a tenant; an id that is not even valid is simply not found.
func (a *API) get(ctx context.Context, id string) (*registry.Tenant, error) {
	if registry.ValidateID(id) != nil {
		return nil, registry.ErrNotFound
	}
	return a.d.Registry.Get(ctx, id)
}

// TenantList is the answer to GET /v1/tenants.
type TenantList struct {
	Tenants []TenantView `json:"tenants"`
	// Next is the cursor of the following page; empty on the last page.
	Next string `json:"next,omitempty"`
}

func (a *API) listTenants(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := a.operator(r, RoleViewer); err != nil {
		writeError(ctx, w, err)
		return
	}
	q := r.URL.Query()
	stateArg := q.Get("state")
	if stateArg == "" {
		writeError(ctx, w, fail(http.StatusBadRequest, CodeInvalidRequest, "state is required (one of %v)", registry.States()))
		return
	}
	state, err := registry.ParseState(strings.ToUpper(stateArg))
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	var limit int
	if s := q.Get("limit"); s != "" {
		limit, err = strconv.Atoi(s)
		if err != nil || limit < 1 {
			writeError(ctx, w, fail(http.StatusBadRequest, CodeInvalidRequest, "limit must be a whole number from 1 to %d", registry.MaxPageSize))
			return
		}
	}
	page, err := a.d.Registry.List(ctx, state, registry.ListOptions{Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	out := TenantList{Tenants: make([]TenantView, 0, len(page.Tenants)), Next: page.Next}
	for _, t := range page.Tenants {
		out.Tenants = append(out.Tenants, a.view(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// EventList is the answer to GET /v1/tenants/{id}/events.
type EventList struct {
	Events []registry.Event `json:"events"`
}

func (a *API) tenantEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := a.operator(r, RoleViewer); err != nil {
		writeError(ctx, w, err)
		return
	}
	id := r.PathValue("id")
	if registry.ValidateID(id) != nil {
		writeError(ctx, w, registry.ErrNotFound)
		return
	}
	events, err := a.d.Registry.Events(ctx, id)
	if err != nil {
		writeError(ctx, w, err)
		return
	}
	if events == nil {
		events = []registry.Event{}
	}
	writeJSON(w, http.StatusOK, EventList{Events: events})
}

// ActionRequest is the body of every operator action.
type ActionRequest struct {
	Reason string `json:"reason"`
}

// action is one operator action: who may do it and what it does.
type action struct {
	role Role
	do   func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error)
}

// actionNamed returns the action of a path segment. (A function, not a
// package-level map: no package state anyone could change.)
func actionNamed(name string) (action, bool) {
	switch name {
	case "suspend":
		return action{RoleOperator, func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error) {
			return a.transition(ctx, id, registry.StateSuspended, c)
		}}, true
	case "resume":
		return action{RoleOperator, func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error) {
			// Only a suspended tenant resumes: ACTIVE is reachable from
			// UPDATING too, which is the reconciler's move, not an operator's.
			return a.transitionFrom(ctx, id, registry.StateSuspended, registry.StateActive, c)
		}}, true
	case "retry":
		return action{RoleOperator, func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error) {
			t, err := a.d.Retry(ctx, id, c.Actor, c.Reason)
			if err == nil {
				a.d.Kick(id)
			}
			return t, err
		}}, true
	case "redeploy":
		return action{RoleOperator, func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error) {
			t, err := a.withFresh(ctx, id, func(t *registry.Tenant) (*registry.Tenant, error) {
				if t.State == registry.StateDecommissioning || t.State == registry.StateClosed {
					return nil, fail(http.StatusConflict, CodeInvalidTransition, "tenant is %s: nothing to redeploy", t.State)
				}
				return a.d.Registry.Update(ctx, t, c)
			})
			if err == nil {
				a.d.Kick(id)
			}
			return t, err
		}}, true
	case "decommission":
		return action{RoleAdmin, func(ctx context.Context, a *API, id string, c registry.Change) (*registry.Tenant, error) {
			t, err := a.transition(ctx, id, registry.StateDecommissioning, c)
			if err == nil {
				a.d.Kick(id)
			}
			return t, err
		}}, true
	}
	return action{}, false
}

// tenantAction answers POST /v1/tenants/{id}/<name>.
func (a *API) tenantAction(name string) http.HandlerFunc {
	act, ok := actionNamed(name)
	if !ok {
		panic("api: no tenant action " + name) // a typo in routes, caught by every test
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		p, err := a.operator(r, act.role)
		if err != nil {
			writeError(ctx, w, err)
			return
		}
		req, err := decodeJSON[ActionRequest](w, r, a.o.MaxBody)
		if err != nil {
			writeError(ctx, w, err)
			return
		}
		req.Reason = strings.TrimSpace(req.Reason)
		if req.Reason == "" || len(req.Reason) > 1000 {
			fields := []FieldProblem{{Field: "reason", Problem: "is required (1 to 1000 characters): say why, for the audit history"}}
			writeError(ctx, w, &apiError{status: http.StatusUnprocessableEntity, code: CodeValidation, message: fieldsMessage(fields), fields: fields})
			return
		}
		id := r.PathValue("id")
		if registry.ValidateID(id) != nil {
			writeError(ctx, w, registry.ErrNotFound)
			return
		}
		t, err := act.do(ctx, a, id, registry.Change{Actor: p.Actor(), Reason: req.Reason, Type: name})
		if err != nil {
			writeError(ctx, w, err)
			return
		}
		logger(ctx).InfoContext(ctx, "operator action", "action", name, "tenant", id, "actor", p.Actor(), "state", t.State)
		writeJSON(w, http.StatusOK, a.view(t))
	}
}

func (a *API) transition(ctx context.Context, id string, to registry.State, c registry.Change) (*registry.Tenant, error) {
	return a.withFresh(ctx, id, func(t *registry.Tenant) (*registry.Tenant, error) {
		return a.d.Registry.Transition(ctx, t, to, c)
	})
}

func (a *API) transitionFrom(ctx context.Context, id string, from, to registry.State, c registry.Change) (*registry.Tenant, error) {
	return a.withFresh(ctx, id, func(t *registry.Tenant) (*registry.Tenant, error) {
		if t.State != from {
			return nil, fail(http.StatusConflict, CodeInvalidTransition, "tenant is %s, not %s", t.State, from)
		}
		return a.d.Registry.Transition(ctx, t, to, c)
	})
}

// withFresh reads the tenant and applies write, reading again when the
// reconciler wrote in between (a lost race, not a caller's mistake). After a
// few lost races the caller gets the conflict.
func (a *API) withFresh(ctx context.Context, id string, write func(*registry.Tenant) (*registry.Tenant, error)) (*registry.Tenant, error) {
	for attempt := 0; ; attempt++ {
		t, err := a.d.Registry.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		next, err := write(t)
		if errors.Is(err, registry.ErrConflict) && attempt < 2 {
			continue
		}
		return next, err
	}
}
