package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// Client talks to the silo API over HTTP: the CLI uses it, against local
// mode and against AWS alike.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the API at base (for example
// http://127.0.0.1:8080) that sends token as its bearer token, if set.
func NewClient(base, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api address %q is not an http(s) URL", base)
	}
	return &Client{base: u.String(), token: token, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Error is an error answer of the API.
type Error struct {
	Status int
	ErrorDetail
	RequestID string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	for _, f := range e.Fields {
		msg += fmt.Sprintf("; %s: %s", f.Field, f.Problem)
	}
	return msg
}

// Signup signs a new tenant up under an idempotency key.
func (c *Client) Signup(ctx context.Context, req SignupRequest, key string) (*SignupResponse, error) {
	var out SignupResponse
	err := c.do(ctx, http.MethodPost, "/v1/signup", req, map[string]string{IdempotencyKeyHeader: key}, &out)
	return &out, err
}

// Tenant reads one tenant (with an operator token or its status token).
func (c *Client) Tenant(ctx context.Context, id string) (*TenantView, error) {
	var out TenantView
	err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id), nil, nil, &out)
	return &out, err
}

// Tenants lists a page of tenants in a state.
func (c *Client) Tenants(ctx context.Context, state string, limit int, cursor string) (*TenantList, error) {
	q := url.Values{"state": {state}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out TenantList
	err := c.do(ctx, http.MethodGet, "/v1/tenants?"+q.Encode(), nil, nil, &out)
	return &out, err
}

// Events reads a tenant's audit history.
func (c *Client) Events(ctx context.Context, id string) (*EventList, error) {
	var out EventList
	err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id)+"/events", nil, nil, &out)
	return &out, err
}

// Resolve finds a serving tenant's endpoint by its id (public: no token
// is needed, and any the client has is ignored by the API).
func (c *Client) Resolve(ctx context.Context, id string) (*ResolveView, error) {
	var out ResolveView
	err := c.do(ctx, http.MethodGet, "/v1/resolve?"+url.Values{"tenant": {id}}.Encode(), nil, nil, &out)
	return &out, err
}

// ResolveUser finds the endpoint of the tenant an end user's token (of
// the tenant application) names; token is sent instead of the client's.
func (c *Client) ResolveUser(ctx context.Context, token string) (*ResolveView, error) {
	var out ResolveView
	err := c.do(ctx, http.MethodGet, "/v1/resolve", nil, map[string]string{"Authorization": "Bearer " + token}, &out)
	return &out, err
}

// Action runs an operator action (suspend, resume, retry, redeploy,
// decommission) with a reason.
func (c *Client) Action(ctx context.Context, id, action, reason string) (*TenantView, error) {
	var out TenantView
	err := c.do(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/"+url.PathEscape(action), ActionRequest{Reason: reason}, nil, &out)
	return &out, err
}

func (c *Client) do(ctx context.Context, method, path string, body any, headers map[string]string, out any) error {
	return c.send(ctx, c.hc, method, path, body, headers, out)
}

// send is do with another http.Client (one with a longer timeout).
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body any, headers map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get(RequestIDHeader)}
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			e.ErrorDetail = eb.Error
		} else {
			e.Code, e.Message = "http_error", strings.TrimSpace(string(b))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// PreviewUp opens or updates a PR's preview with a build.
func (c *Client) PreviewUp(ctx context.Context, req PreviewUpRequest) (*preview.Preview, error) {
	var out preview.Preview
	err := c.do(ctx, http.MethodPost, "/v1/previews", req, nil, &out)
	return &out, err
}

// Preview reads one preview.
func (c *Client) Preview(ctx context.Context, id string) (*preview.Preview, error) {
	var out preview.Preview
	err := c.do(ctx, http.MethodGet, "/v1/previews/"+url.PathEscape(id), nil, nil, &out)
	return &out, err
}

// PreviewDown releases a preview.
func (c *Client) PreviewDown(ctx context.Context, id, reason string) (*preview.Preview, error) {
	var out preview.Preview
	err := c.do(ctx, http.MethodDelete, "/v1/previews/"+url.PathEscape(id), PreviewDownRequest{Reason: reason}, nil, &out)
	return &out, err
}

// PreviewExtend lengthens a preview's lease.
func (c *Client) PreviewExtend(ctx context.Context, id string, by time.Duration) (*preview.Preview, error) {
	var out preview.Preview
	err := c.do(ctx, http.MethodPost, "/v1/previews/"+url.PathEscape(id)+"/extend", PreviewExtendRequest{By: by.String()}, nil, &out)
	return &out, err
}

// Previews lists the pool and its previews.
func (c *Client) Previews(ctx context.Context) (*preview.Listing, error) {
	var out preview.Listing
	err := c.do(ctx, http.MethodGet, "/v1/previews", nil, nil, &out)
	return &out, err
}

// PublishRelease stores a build as a release.
func (c *Client) PublishRelease(ctx context.Context, code []byte, source string) (*registry.Release, error) {
	var out ReleaseResponse
	err := c.do(ctx, http.MethodPost, "/v1/releases", ReleasePublishRequest{ArtifactZip: code, Source: source}, nil, &out)
	return &out.Release, err
}

// StartRollout plans a rollout; the engine carries it out.
func (c *Client) StartRollout(ctx context.Context, req RolloutStartRequest) (*registry.Rollout, error) {
	return c.rolloutDo(ctx, http.MethodPost, "/v1/rollouts", req)
}

// Rollouts lists the latest rollouts, newest first (limit 0: the API's
// default).
func (c *Client) Rollouts(ctx context.Context, limit int) ([]*registry.Rollout, error) {
	path := "/v1/rollouts"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out RolloutList
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	rs := make([]*registry.Rollout, 0, len(out.Rollouts))
	for _, v := range out.Rollouts {
		r, err := v.record()
		if err != nil {
			return nil, fmt.Errorf("GET %s: decode answer: %w", path, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Rollout reads a rollout and its tenants.
func (c *Client) Rollout(ctx context.Context, id string) (*registry.Rollout, []registry.RolloutTenant, error) {
	path := "/v1/rollouts/" + url.PathEscape(id)
	var out RolloutDetail
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, nil, err
	}
	r, err := out.Rollout.record()
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return r, out.Tenants, nil
}

// PauseRollout stops a rollout before its next wave.
func (c *Client) PauseRollout(ctx context.Context, id, reason string) (*registry.Rollout, error) {
	return c.rolloutDo(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/pause", RolloutPauseRequest{Reason: reason})
}

// ResumeRollout continues a paused rollout.
func (c *Client) ResumeRollout(ctx context.Context, id string) (*registry.Rollout, error) {
	return c.rolloutDo(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/resume", struct{}{})
}

// AbortRollout stops a rollout for good, rolling back when asked.
func (c *Client) AbortRollout(ctx context.Context, id string, rollback bool, reason string) (*registry.Rollout, error) {
	return c.rolloutDo(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/abort", RolloutAbortRequest{Rollback: rollback, Reason: reason})
}

func (c *Client) rolloutDo(ctx context.Context, method, path string, body any) (*registry.Rollout, error) {
	var out RolloutView
	if err := c.do(ctx, method, path, body, nil, &out); err != nil {
		return nil, err
	}
	r, err := out.record()
	if err != nil {
		return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return r, nil
}

// Pin pins a tenant to a release (the one it runs when release is "").
func (c *Client) Pin(ctx context.Context, id, release string) (*TenantView, error) {
	var out TenantView
	err := c.do(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/pin", PinRequest{Release: release}, nil, &out)
	return &out, err
}

// Unpin lets rollouts reach a tenant again.
func (c *Client) Unpin(ctx context.Context, id string) (*TenantView, error) {
	var out TenantView
	err := c.do(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/unpin", struct{}{}, nil, &out)
	return &out, err
}

// AuditTimeout bounds one AuditIsolation call: a run probes every tenant
// it covers, which takes far longer than the client's other calls.
const AuditTimeout = 15 * time.Minute

// AuditIsolation runs the isolation audit over the tenants named (every
// active one when none) and answers the run. A run that finds violations
// is not an error: read the reports' statuses.
func (c *Client) AuditIsolation(ctx context.Context, tenants []string) (*audit.Fleet, error) {
	hc := *c.hc
	hc.Timeout = AuditTimeout
	var out audit.Fleet
	if err := c.send(ctx, &hc, http.MethodPost, "/v1/audit/isolation", AuditRequest{Tenants: tenants}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// IsolationReport reads a tenant's latest isolation report; a 404 *Error
// when it has none.
func (c *Client) IsolationReport(ctx context.Context, id string) (*audit.Report, error) {
	var out audit.Report
	if err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(id)+"/isolation", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
