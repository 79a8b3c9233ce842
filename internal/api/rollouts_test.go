package api

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/registry"
)

// recordingRollouts stands in for the rollout engine (tested against the
// emulator in internal/rollout): these tests are about the HTTP mapping,
// so it records what the API passed and answers as told.
type recordingRollouts struct {
	mu     sync.Mutex
	starts []rollout.StartRequest
	calls  []string
	err    error
}

func (f *recordingRollouts) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *recordingRollouts) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func sampleRollout(id string, state registry.RolloutState) *registry.Rollout {
	return &registry.Rollout{
		ID: id, Release: "rel-1", Plan: "canary:1,100%", State: state, Bake: 90 * time.Second, GateTimeout: 5 * time.Minute,
		Waves: []registry.Wave{{Name: "canary", Tenants: 1, Phase: registry.WavePassed, Gate: &registry.Gate{Pass: true, Healthy: 1, Why: "1 of 1 up"}},
			{Name: "wave-2", Tenants: 3, Phase: registry.WavePending}},
		Notes: []registry.Note{{Text: "planned"}},
	}
}

func (f *recordingRollouts) Start(_ context.Context, req rollout.StartRequest) (*registry.Rollout, error) {
	f.mu.Lock()
	f.starts = append(f.starts, req)
	f.mu.Unlock()
	if err := f.record("start %s", req.Release); err != nil {
		return nil, err
	}
	return sampleRollout("ro-1", registry.RolloutRunning), nil
}

func (f *recordingRollouts) Get(_ context.Context, id string) (*registry.Rollout, []registry.RolloutTenant, error) {
	if err := f.record("get %s", id); err != nil {
		return nil, nil, err
	}
	return sampleRollout(id, registry.RolloutRunning), []registry.RolloutTenant{{RolloutID: id, TenantID: "acme-1", Status: registry.RTHealthy}}, nil
}

func (f *recordingRollouts) List(_ context.Context, limit int) ([]*registry.Rollout, error) {
	if err := f.record("list %d", limit); err != nil {
		return nil, err
	}
	return []*registry.Rollout{sampleRollout("ro-2", registry.RolloutRunning), sampleRollout("ro-1", registry.RolloutCompleted)}, nil
}

func (f *recordingRollouts) Pause(_ context.Context, id, actor, reason string) (*registry.Rollout, error) {
	if err := f.record("pause %s %s %q", id, actor, reason); err != nil {
		return nil, err
	}
	return sampleRollout(id, registry.RolloutPaused), nil
}

func (f *recordingRollouts) Resume(_ context.Context, id, actor string) (*registry.Rollout, error) {
	if err := f.record("resume %s %s", id, actor); err != nil {
		return nil, err
	}
	return sampleRollout(id, registry.RolloutRunning), nil
}

func (f *recordingRollouts) Abort(_ context.Context, id, actor, reason string, rollback bool) (*registry.Rollout, error) {
	if err := f.record("abort %s %s %q rollback=%t", id, actor, reason, rollback); err != nil {
		return nil, err
	}
	return sampleRollout(id, registry.RolloutRunning), nil
}

func (f *recordingRollouts) Pin(_ context.Context, id, release, actor string) (*registry.Tenant, error) {
	if err := f.record("pin %s %q %s", id, release, actor); err != nil {
		return nil, err
	}
	if release == "" {
		release = "rel-0"
	}
	return &registry.Tenant{Spec: registry.Spec{ID: id}, State: registry.StateActive, Attributes: map[string]string{rollout.AttrPinned: release}}, nil
}

func (f *recordingRollouts) Unpin(_ context.Context, id, actor string) (*registry.Tenant, error) {
	if err := f.record("unpin %s %s", id, actor); err != nil {
		return nil, err
	}
	return &registry.Tenant{Spec: registry.Spec{ID: id}, State: registry.StateActive}, nil
}

// recordingReleases stands in for preview.StackSetReleases.
type recordingReleases struct {
	mu      sync.Mutex
	sources []string
}

func (r *recordingReleases) Publish(_ context.Context, code []byte, source string) (registry.Release, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources = append(r.sources, source)
	return registry.Release{Version: fmt.Sprintf("v-%d", len(code)), CodeBucket: "b", CodeKey: "k", Source: source}, nil
}

// zipOf builds a zip of the named files.
func zipOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "contents of %s", n)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (r resp) errorFields(t *testing.T) []string {
	t.Helper()
	var b ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	var out []string
	for _, f := range b.Error.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestRolloutRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	eng := &recordingRollouts{}
	rel := &recordingReleases{}
	f.api.d.Rollouts, f.api.d.Releases = eng, rel
	viewer, operator := f.token(t, "v", RoleViewer), f.token(t, "ci", RoleOperator)
	as := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}
	b64 := base64.StdEncoding.EncodeToString
	// A package without a bootstrap is still a release (its handler is
	// the template's business).
	goodZip := `{"artifact_zip":"` + b64(zipOf(t, "index.js")) + `"}`
	start := `{"release":"rel-1","plan":"canary:1,100%","bake":"90s","gate_timeout":"2m","max_failures":1}`

	for _, tc := range []struct {
		name   string
		r      req
		status int
		code   string
		fields []string
	}{
		{"start without a token", req{method: "POST", path: "/v1/rollouts", body: start}, 401, CodeUnauthorized, nil},
		{"start as a viewer", req{method: "POST", path: "/v1/rollouts", body: start, header: as(viewer)}, 403, CodeForbidden, nil},
		{"pause as a viewer", req{method: "POST", path: "/v1/rollouts/ro-1/pause", header: as(viewer)}, 403, CodeForbidden, nil},
		{"abort as a viewer", req{method: "POST", path: "/v1/rollouts/ro-1/abort", header: as(viewer)}, 403, CodeForbidden, nil},
		{"publish as a viewer", req{method: "POST", path: "/v1/releases", body: goodZip, header: as(viewer)}, 403, CodeForbidden, nil},
		{"pin as a viewer", req{method: "POST", path: "/v1/tenants/acme-1/pin", header: as(viewer)}, 403, CodeForbidden, nil},
		{"list without a token", req{method: "GET", path: "/v1/rollouts"}, 401, CodeUnauthorized, nil},
		{"bad durations", req{method: "POST", path: "/v1/rollouts", body: `{"release":"r","plan":"100%","bake":"soon","gate_timeout":"-1m"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"bake", "gate_timeout"}},
		{"unknown field", req{method: "POST", path: "/v1/rollouts", body: `{"release":"r","plan":"100%","waves":3}`, header: as(operator)}, 400, CodeInvalidJSON, []string{"waves"}},
		{"bad limit", req{method: "GET", path: "/v1/rollouts?limit=0", header: as(viewer)}, 400, CodeInvalidRequest, nil},
		{"bad rollout id", req{method: "GET", path: "/v1/rollouts/NOT_AN_ID", header: as(viewer)}, 404, CodeNotFound, nil},
		{"long abort reason", req{method: "POST", path: "/v1/rollouts/ro-1/abort", body: `{"reason":"` + strings.Repeat("x", 1001) + `"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"reason"}},
		{"not a zip", req{method: "POST", path: "/v1/releases", body: `{"artifact_zip":"` + b64([]byte("PK\x03\x04 not really")) + `"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"artifact_zip"}},
		{"an empty zip", req{method: "POST", path: "/v1/releases", body: `{"artifact_zip":"` + b64(zipOf(t)) + `"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"artifact_zip"}},
		{"no zip", req{method: "POST", path: "/v1/releases", body: `{}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"artifact_zip"}},
		{"a zip over 4 MiB", req{method: "POST", path: "/v1/releases", body: `{"artifact_zip":"` + b64(make([]byte, MaxInlineArtifact+1)) + `"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"artifact_zip"}},
		{"unpin with a release", req{method: "POST", path: "/v1/tenants/acme-1/unpin", body: `{"release":"x"}`, header: as(operator)}, 400, CodeInvalidRequest, []string{"release"}},
		{"pin a bad tenant id", req{method: "POST", path: "/v1/tenants/NO/pin", header: as(operator)}, 404, CodeNotFound, nil},
		{"wrong method", req{method: "DELETE", path: "/v1/rollouts/ro-1", header: as(operator)}, 405, CodeMethodNotAllowed, nil},
		{"other actions still need a reason", req{method: "POST", path: "/v1/tenants/acme-1/suspend", body: `{}`, header: as(operator)}, 422, CodeValidation, []string{"reason"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.r)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.errorCode(t) != tc.code {
				t.Errorf("code %s, want %s: %s", r.errorCode(t), tc.code, r.body)
			}
			if diff := cmp.Diff(tc.fields, r.errorFields(t)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
	if got := eng.Calls(); len(got) != 0 {
		t.Fatalf("refused requests reached the engine: %q", got)
	}
	if len(rel.sources) != 0 {
		t.Fatalf("refused requests reached the releases: %q", rel.sources)
	}

	t.Run("start", func(t *testing.T) {
		r := f.do(t, req{method: "POST", path: "/v1/rollouts", body: start, header: as(operator)})
		if r.status != http.StatusCreated || r.header.Get("Location") != "/v1/rollouts/ro-1" {
			t.Fatalf("%d %v %s", r.status, r.header, r.body)
		}
		if !strings.Contains(string(r.body), `"bake":"1m30s"`) || !strings.Contains(string(r.body), `"gate_timeout":"5m0s"`) {
			t.Errorf("durations are not written as durations: %s", r.body)
		}
		tol := 2
		r = f.do(t, req{method: "POST", path: "/v1/rollouts", header: as(operator),
			body: `{"release":" rel-2 ","plan":"100%","failure_tolerance":2,"max_concurrency":5,"canary_tag":"beta=yes","canary_tier":"basic","enterprise_last":false}`})
		if r.status != http.StatusCreated {
			t.Fatalf("%d %s", r.status, r.body)
		}
		want := []rollout.StartRequest{
			{Release: "rel-1", Plan: "canary:1,100%", Bake: 90 * time.Second, GateTimeout: 2 * time.Minute, MaxFailures: 1,
				Selection: rollout.Selection{EnterpriseLast: true}, Actor: "operator:ci"},
			{Release: "rel-2", Plan: "100%", MaxConcurrency: 5, FailureTolerance: &tol,
				Selection: rollout.Selection{CanaryTag: "beta=yes", CanaryTier: registry.TierBasic}, Actor: "operator:ci"},
		}
		if diff := cmp.Diff(want, eng.starts); diff != "" {
			t.Errorf("the engine got (-want +got):\n%s", diff)
		}
	})

	t.Run("commands", func(t *testing.T) {
		eng.calls = nil
		for _, r := range []req{
			{method: "POST", path: "/v1/rollouts/ro-1/pause", body: `{"reason":" looking at errors "}`, header: as(operator)},
			{method: "POST", path: "/v1/rollouts/ro-1/pause", header: as(operator)},
			{method: "POST", path: "/v1/rollouts/ro-1/resume", header: as(operator)},
			{method: "POST", path: "/v1/rollouts/ro-1/abort", body: `{"rollback":true,"reason":"500s"}`, header: as(operator)},
			{method: "POST", path: "/v1/rollouts/ro-1/abort", header: as(operator)},
			{method: "GET", path: "/v1/rollouts/ro-1", header: as(viewer)},
			{method: "GET", path: "/v1/rollouts", header: as(viewer)},
			{method: "GET", path: "/v1/rollouts?limit=3", header: as(viewer)},
			{method: "POST", path: "/v1/tenants/acme-1/pin", body: `{"release":"rel-0"}`, header: as(operator)},
			{method: "POST", path: "/v1/tenants/acme-1/pin", header: as(operator)},
			{method: "POST", path: "/v1/tenants/acme-1/unpin", header: as(operator)},
		} {
			if got := f.do(t, r); got.status != http.StatusOK {
				t.Errorf("%s %s: %d %s", r.method, r.path, got.status, got.body)
			}
		}
		want := []string{
			`pause ro-1 operator:ci "looking at errors"`,
			`pause ro-1 operator:ci ""`,
			`resume ro-1 operator:ci`,
			`abort ro-1 operator:ci "500s" rollback=true`,
			`abort ro-1 operator:ci "" rollback=false`,
			`get ro-1`,
			fmt.Sprintf("list %d", DefaultRolloutList),
			`list 3`,
			`pin acme-1 "rel-0" operator:ci`,
			`pin acme-1 "" operator:ci`,
			`unpin acme-1 operator:ci`,
		}
		if diff := cmp.Diff(want, eng.Calls()); diff != "" {
			t.Errorf("the engine got (-want +got):\n%s", diff)
		}
	})

	t.Run("publish", func(t *testing.T) {
		r := f.do(t, req{method: "POST", path: "/v1/releases", body: goodZip, header: as(operator)})
		if r.status != http.StatusCreated {
			t.Fatalf("%d %s", r.status, r.body)
		}
		got := decode[ReleaseResponse](t, r)
		if got.Release.Version == "" || got.Release.Source != "uploaded by operator:ci" {
			t.Errorf("answer %+v", got)
		}
		r = f.do(t, req{method: "POST", path: "/v1/releases", header: as(operator),
			body: `{"artifact_zip":"` + b64(zipOf(t, "bootstrap", "lib/a.so")) + `","source":"ci acme/web@1a2b3c"}`})
		if r.status != http.StatusCreated || rel.sources[1] != "ci acme/web@1a2b3c" {
			t.Errorf("%d %s; sources %q", r.status, r.body, rel.sources)
		}
	})

	// The engine's errors map onto statuses.
	for _, tc := range []struct {
		name   string
		err    error
		r      req
		status int
		code   string
		field  string
		say    string
	}{
		{"another rollout", fmt.Errorf("rollout ro-0 is under way (pause, abort or wait for it): %w", registry.ErrRolloutActive),
			req{method: "POST", path: "/v1/rollouts", body: start}, 409, CodeConflict, "", "ro-0 is under way"},
		{"a bad plan", &registry.FieldError{Field: "plan", Problem: "must end with a 100% wave"},
			req{method: "POST", path: "/v1/rollouts", body: start}, 400, CodeInvalidRequest, "plan", "100% wave"},
		{"an unknown release", &registry.FieldError{Field: "release", Problem: `"nope" is not a published release`},
			req{method: "POST", path: "/v1/rollouts", body: start}, 400, CodeInvalidRequest, "release", "not a published release"},
		{"pause a paused one", fmt.Errorf("rollout ro-1 is paused, not running: %w", registry.ErrInvalidTransition),
			req{method: "POST", path: "/v1/rollouts/ro-1/pause"}, 409, CodeInvalidTransition, "", "is paused, not running"},
		{"abort an ended one", fmt.Errorf("rollout ro-1 is completed: %w", registry.ErrInvalidTransition),
			req{method: "POST", path: "/v1/rollouts/ro-1/abort"}, 409, CodeInvalidTransition, "", "is completed"},
		{"no such rollout", fmt.Errorf("rollout ro-9: %w", registry.ErrNotFound),
			req{method: "GET", path: "/v1/rollouts/ro-9"}, 404, CodeNotFound, "", "no such rollout"},
		{"pin no such tenant", fmt.Errorf("tenant %q: %w", "ghost", registry.ErrNotFound),
			req{method: "POST", path: "/v1/tenants/ghost/pin"}, 404, CodeNotFound, "", "no such tenant"},
		{"pin a preview", fmt.Errorf("tenant pr1-web (ACTIVE, kind preview) cannot be pinned: %w", registry.ErrInvalidTransition),
			req{method: "POST", path: "/v1/tenants/pr1-web/pin"}, 409, CodeInvalidTransition, "", "cannot be pinned"},
		{"an internal failure", fmt.Errorf("read the active rollout: dial tcp: secret-host refused"),
			req{method: "POST", path: "/v1/rollouts", body: start}, 500, CodeInternal, "", "request id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng.err = tc.err
			defer func() { eng.err = nil }()
			tc.r.header = as(operator)
			r := f.do(t, tc.r)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if !strings.Contains(string(r.body), tc.say) || strings.Contains(string(r.body), "secret-host") {
				t.Errorf("the answer should say %q (and no internals): %s", tc.say, r.body)
			}
			if tc.field != "" && !strings.Contains(strings.Join(r.errorFields(t), ","), tc.field) {
				t.Errorf("no field %s in %s", tc.field, r.body)
			}
		})
	}
}

func TestRolloutsNotWired(t *testing.T) {
	f := newFixture(t, Options{})
	operator := f.token(t, "ci", RoleOperator)
	for _, r := range []req{
		{method: "GET", path: "/v1/rollouts"},
		{method: "POST", path: "/v1/rollouts", body: `{}`},
		{method: "GET", path: "/v1/rollouts/ro-1"},
		{method: "POST", path: "/v1/rollouts/ro-1/abort"},
		{method: "POST", path: "/v1/tenants/acme-1/pin"},
		{method: "POST", path: "/v1/tenants/acme-1/unpin"},
		{method: "POST", path: "/v1/releases", body: `{}`},
	} {
		r.header = map[string]string{"Authorization": "Bearer " + operator}
		got := f.do(t, r)
		if got.status != http.StatusNotFound || !strings.Contains(string(got.body), "not enabled on this API") {
			t.Errorf("%s %s: %d %s", r.method, r.path, got.status, got.body)
		}
	}
}

// TestRolloutClient runs the client's methods against the API, so that
// what one sends is what the other reads (durations included).
func TestRolloutClient(t *testing.T) {
	f := newFixture(t, Options{})
	eng := &recordingRollouts{}
	f.api.d.Rollouts, f.api.d.Releases = eng, &recordingReleases{}
	srv := httptest.NewServer(f.api)
	defer srv.Close()
	c, err := NewClient(srv.URL, f.token(t, "ci", RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	rel, err := c.PublishRelease(ctx, zipOf(t, "index.js"), "")
	if err != nil || rel.Version == "" {
		t.Fatalf("publish: %+v %v", rel, err)
	}
	ro, err := c.StartRollout(ctx, RolloutStartRequest{Release: "rel-1", Plan: "canary:1,100%"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleRollout("ro-1", registry.RolloutRunning), ro); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}
	got, tenants, err := c.Rollout(ctx, "ro-1")
	if err != nil || got.Bake != 90*time.Second || len(tenants) != 1 || tenants[0].Status != registry.RTHealthy {
		t.Errorf("get: %+v %+v %v", got, tenants, err)
	}
	list, err := c.Rollouts(ctx, 0)
	if err != nil || len(list) != 2 || list[1].State != registry.RolloutCompleted || list[0].GateTimeout != 5*time.Minute {
		t.Errorf("list: %+v %v", list, err)
	}
	if ro, err := c.PauseRollout(ctx, "ro-1", "why"); err != nil || ro.State != registry.RolloutPaused {
		t.Errorf("pause: %+v %v", ro, err)
	}
	if _, err := c.ResumeRollout(ctx, "ro-1"); err != nil {
		t.Errorf("resume: %v", err)
	}
	if _, err := c.AbortRollout(ctx, "ro-1", true, "bad"); err != nil {
		t.Errorf("abort: %v", err)
	}
	if tv, err := c.Pin(ctx, "acme-1", "rel-0"); err != nil || tv.PinnedRelease != "rel-0" {
		t.Errorf("pin: %+v %v", tv, err)
	}
	if tv, err := c.Unpin(ctx, "acme-1"); err != nil || tv.PinnedRelease != "" {
		t.Errorf("unpin: %+v %v", tv, err)
	}
	eng.err = fmt.Errorf("rollout ro-0 is under way: %w", registry.ErrRolloutActive)
	_, err = c.StartRollout(ctx, RolloutStartRequest{Release: "rel-1", Plan: "100%"})
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusConflict {
		t.Errorf("a refused start: %v", err)
	}
}

// plannerRollouts is an engine whose Start takes its time, reporting
// whether its context ended before it finished.
type plannerRollouts struct {
	recordingRollouts
	started chan struct{}
	result  chan error
}

func (p *plannerRollouts) Start(ctx context.Context, req rollout.StartRequest) (*registry.Rollout, error) {
	close(p.started)
	t := time.NewTimer(300 * time.Millisecond) // planning: writing the rollout's tenants
	defer t.Stop()
	select {
	case <-ctx.Done():
		p.result <- ctx.Err()
		return nil, ctx.Err()
	case <-t.C:
		p.result <- nil
		return sampleRollout("ro-1", registry.RolloutRunning), nil
	}
}

// TestRolloutStartOutlivesItsClient: a client that gives up on POST
// /v1/rollouts (its timeout, a dropped connection) does not cut the
// planning short. Before, the soak's client timed out under load and left
// a half-written plan that blocked every rollout for minutes.
func TestRolloutStartOutlivesItsClient(t *testing.T) {
	f := newFixture(t, Options{})
	eng := &plannerRollouts{started: make(chan struct{}), result: make(chan error, 1)}
	f.api.d.Rollouts = eng
	srv := httptest.NewServer(f.api)
	defer srv.Close()
	c, err := NewClient(srv.URL, f.token(t, "ci", RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	ctx, giveUp := context.WithCancel(t.Context())
	go func() {
		<-eng.started
		giveUp()
	}()
	if _, err := c.StartRollout(ctx, RolloutStartRequest{Release: "rel-1", Plan: "100%"}); err == nil {
		t.Fatal("the client gave up, yet got an answer")
	}
	if err := <-eng.result; err != nil {
		t.Errorf("planning ended with %v when the client gave up; want it finished", err)
	}
}
