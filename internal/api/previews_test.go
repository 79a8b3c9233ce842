package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// recordingPreviews stands in for the preview manager (tested against the
// emulator in internal/preview and e2e): these tests are about the HTTP
// mapping, so it records what the API passed and answers as told.
type recordingPreviews struct {
	mu   sync.Mutex
	ups  []preview.UpRequest
	err  error
	last string
}

func (r *recordingPreviews) Up(_ context.Context, req preview.UpRequest) (*preview.Preview, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ups = append(r.ups, req)
	if r.err != nil {
		return nil, r.err
	}
	return &preview.Preview{ID: "pr1-web-abcdef", Repo: req.Repo, PR: req.PR, Phase: preview.PhaseWaiting, QueuePosition: 1}, nil
}

func (r *recordingPreviews) Down(_ context.Context, id, actor, reason string) (*preview.Preview, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = fmt.Sprintf("down %s %s %q", id, actor, reason)
	if r.err != nil {
		return nil, r.err
	}
	return &preview.Preview{ID: id, Phase: preview.PhaseReleasing}, nil
}

func (r *recordingPreviews) Extend(_ context.Context, id string, d time.Duration, actor string) (*preview.Preview, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = fmt.Sprintf("extend %s %s %s", id, d, actor)
	return &preview.Preview{ID: id, Phase: preview.PhaseReady}, r.err
}

func (r *recordingPreviews) Get(_ context.Context, id string) (*preview.Preview, error) {
	if r.err != nil {
		return nil, r.err
	}
	return &preview.Preview{ID: id, Phase: preview.PhaseReady}, nil
}

func (r *recordingPreviews) List(context.Context) (*preview.Listing, error) {
	return &preview.Listing{Target: 2, Counts: map[string]int{"available": 2}}, nil
}

func TestPreviewRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	rec := &recordingPreviews{}
	f.api.d.Previews = rec
	viewer, operator := f.token(t, "v", RoleViewer), f.token(t, "ci", RoleOperator)
	bearer := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}
	zip := base64.StdEncoding.EncodeToString([]byte("PK\x03\x04 a zip"))
	up := `{"repo":"acme/web","pr":1,"artifact_zip":"` + zip + `","ttl":"2h","wait":"5m"}`

	for _, tc := range []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"up without a token", req{method: "POST", path: "/v1/previews", body: up}, 401, CodeUnauthorized},
		{"up as a viewer", req{method: "POST", path: "/v1/previews", body: up, header: bearer(viewer)}, 403, CodeForbidden},
		{"list as a viewer", req{method: "GET", path: "/v1/previews", header: bearer(viewer)}, 200, ""},
		{"get as a viewer", req{method: "GET", path: "/v1/previews/pr1-web-abcdef", header: bearer(viewer)}, 200, ""},
		{"down as a viewer", req{method: "DELETE", path: "/v1/previews/pr1-web-abcdef", header: bearer(viewer)}, 403, CodeForbidden},
		{"bad ttl", req{method: "POST", path: "/v1/previews", body: `{"repo":"acme/web","pr":1,"artifact_zip":"` + zip + `","ttl":"soon"}`, header: bearer(operator)}, 400, CodeInvalidRequest},
		{"unknown field", req{method: "POST", path: "/v1/previews", body: `{"repo":"acme/web","pr":1,"branch":"x"}`, header: bearer(operator)}, 400, CodeInvalidJSON},
		{"bad id", req{method: "GET", path: "/v1/previews/NOT_AN_ID", header: bearer(viewer)}, 404, CodeNotFound},
		{"extend without by", req{method: "POST", path: "/v1/previews/pr1-web-abcdef/extend", body: `{}`, header: bearer(operator)}, 400, CodeInvalidRequest},
		{"wrong method", req{method: "PUT", path: "/v1/previews", header: bearer(operator)}, 405, CodeMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.r)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" && r.errorCode(t) != tc.code {
				t.Errorf("code %s, want %s: %s", r.errorCode(t), tc.code, r.body)
			}
		})
	}
	if len(rec.ups) != 0 {
		t.Fatalf("refused requests reached the service: %+v", rec.ups)
	}

	r := f.do(t, req{method: "POST", path: "/v1/previews", body: up, header: bearer(operator)})
	if r.status != http.StatusAccepted || r.header.Get("Location") != "/v1/previews/pr1-web-abcdef" {
		t.Fatalf("up: %d %v %s", r.status, r.header, r.body)
	}
	got := rec.ups[0]
	if got.Repo != "acme/web" || got.PR != 1 || string(got.Artifact) != "PK\x03\x04 a zip" || got.TTL != 2*time.Hour || got.Wait != 5*time.Minute || got.Actor != "operator:ci" {
		t.Errorf("the service got %+v", got)
	}

	r = f.do(t, req{method: "DELETE", path: "/v1/previews/pr1-web-abcdef", body: `{"reason":"PR closed"}`, header: bearer(operator)})
	if r.status != http.StatusAccepted || rec.last != `down pr1-web-abcdef operator:ci "PR closed"` {
		t.Errorf("down: %d %s; service saw %s", r.status, r.body, rec.last)
	}
	r = f.do(t, req{method: "POST", path: "/v1/previews/pr1-web-abcdef/extend", body: `{"by":"12h"}`, header: bearer(operator)})
	if r.status != http.StatusOK || rec.last != "extend pr1-web-abcdef 12h0m0s operator:ci" {
		t.Errorf("extend: %d %s; service saw %s", r.status, r.body, rec.last)
	}

	// The service's errors map onto statuses.
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("preview x is being released: %w", preview.ErrBusy), 409, CodeConflict},
		{fmt.Errorf("tenant %q: %w", "x", registry.ErrNotFound), 404, CodeNotFound},
		{&registry.FieldError{Field: "artifact", Problem: "is not a zip file"}, 400, CodeInvalidRequest},
	} {
		rec.err = tc.err
		r := f.do(t, req{method: "POST", path: "/v1/previews", body: up, header: bearer(operator)})
		if r.status != tc.status || r.errorCode(t) != tc.code {
			t.Errorf("%v: %d %s", tc.err, r.status, r.body)
		}
		if tc.status == 409 && !strings.Contains(string(r.body), "being released") {
			t.Errorf("409 lost the reason: %s", r.body)
		}
	}
}
