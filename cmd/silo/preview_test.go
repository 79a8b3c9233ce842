package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// previewScript is an API that answers POST /v1/previews with up, and each
// GET /v1/previews/{id} with the next of steps (the last one from then on).
type previewScript struct {
	mu    sync.Mutex
	up    *preview.Preview
	steps []*preview.Preview
	next  int
}

func (s *previewScript) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/previews":
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(s.up)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/previews/"+s.up.ID:
		_ = json.NewEncoder(w).Encode(s.steps[min(s.next, len(s.steps)-1)])
		s.next++
	default:
		http.NotFound(w, r)
	}
}

// TestPreviewUpFollowsItsBuild: up --wait follows the build its own up
// asked for, whatever later ups do to the preview's release, and waits for
// a probe taken after that build became active.
func TestPreviewUpFollowsItsBuild(t *testing.T) {
	const id, mine, other, old = "pr7-web-abcdef", "mine0123456789abcdef", "other123456789abcdef", "old00123456789abcdef"
	probed := time.Date(2030, 1, 1, 12, 0, 5, 0, time.Local)
	pv := func(phase preview.Phase, release, running string, h *registry.Health, fresh bool) *preview.Preview {
		p := &preview.Preview{ID: id, Repo: "acme/web", PR: 7, Phase: phase, Release: release, Running: running,
			AccountID: "123456789012", Health: h, HealthFresh: fresh, RequestedBy: "operator:ci"}
		if phase == preview.PhaseReady || phase == preview.PhaseUpdating {
			p.URL = "http://127.0.0.1:9999"
		}
		return p
	}
	upOld := &registry.Health{Status: registry.HealthUp, LatencyMS: 9, CheckedAt: probed.Add(-time.Hour)}
	upNew := &registry.Health{Status: registry.HealthUp, LatencyMS: 12, CheckedAt: probed}
	down502 := &registry.Health{Status: registry.HealthDown, Class: "status", Detail: "status == 200: status 502", CheckedAt: probed}
	answer := pv(preview.PhaseUpdating, mine, old, upOld, true)
	answer.Build = mine

	for _, tc := range []struct {
		name       string
		steps      []*preview.Preview
		args       []string
		wantErr    string
		superseded bool
		stderr     []string
		outcome    preview.Outcome
	}{
		{
			name: "healthy on the first probe after it became active",
			steps: []*preview.Preview{
				pv(preview.PhaseUpdating, mine, old, upOld, true),
				pv(preview.PhaseReady, mine, mine, upOld, false), // the verdict is the old build's
				pv(preview.PhaseReady, mine, mine, upNew, true),
			},
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef ready on build mine01234567: waiting for its first health probe",
				"pr7-web-abcdef ready on build mine01234567: up, 12ms",
			},
			outcome: preview.OutcomeHealthy,
		},
		{
			name: "another build is deployed first, then this one",
			steps: []*preview.Preview{
				pv(preview.PhaseReady, mine, old, upOld, true),
				pv(preview.PhaseReady, mine, mine, upNew, true),
			},
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef running build old001234567; build mine01234567 follows",
				"pr7-web-abcdef ready on build mine01234567: up, 12ms",
			},
			outcome: preview.OutcomeHealthy,
		},
		{
			name: "replaced by a later up",
			steps: []*preview.Preview{
				pv(preview.PhaseUpdating, mine, old, upOld, true),
				pv(preview.PhaseUpdating, other, old, upOld, true),
			},
			wantErr:    "preview pr7-web-abcdef: build mine01234567 was replaced by build other1234567 (a later up for acme/web#7, asked for by operator:ci); the preview deploys that one",
			superseded: true,
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef deploys build other1234567 instead",
			},
			outcome: preview.OutcomeSuperseded,
		},
		{
			name: "replaced after it ran for a moment",
			steps: []*preview.Preview{
				pv(preview.PhaseReady, other, mine, upOld, false),
			},
			wantErr:    "preview pr7-web-abcdef: build mine01234567 was replaced by build other1234567 (a later up for acme/web#7, asked for by operator:ci); the preview deploys that one",
			superseded: true,
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef deploys build other1234567 instead",
			},
			outcome: preview.OutcomeSuperseded,
		},
		{
			name: "unhealthy",
			steps: []*preview.Preview{
				pv(preview.PhaseReady, mine, mine, down502, true),
			},
			wantErr: "preview pr7-web-abcdef: build mine01234567 is deployed at http://127.0.0.1:9999 but failed its health check: down, class status (status == 200: status 502), probed at 12:00:05",
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef ready on build mine01234567: down, class status (status == 200: status 502)",
			},
			outcome: preview.OutcomeUnhealthy,
		},
		{
			name: "failed",
			steps: []*preview.Preview{
				func() *preview.Preview {
					p := pv(preview.PhaseFailed, mine, old, nil, false)
					p.Reason = "update to mine: stack instance failed: Resource handler returned message"
					return p
				}(),
			},
			wantErr: "preview pr7-web-abcdef failed on build mine01234567: update to mine: stack instance failed: Resource handler returned message",
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef failed",
			},
			outcome: preview.OutcomeFailed,
		},
		{
			name: "released while waiting",
			steps: []*preview.Preview{
				pv(preview.PhaseReleasing, mine, old, nil, false),
			},
			wantErr: "preview pr7-web-abcdef was released while waiting for build mine01234567",
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef releasing",
			},
			outcome: preview.OutcomeReleased,
		},
		{
			name: "no probe before the timeout",
			steps: []*preview.Preview{
				pv(preview.PhaseReady, mine, mine, upOld, false),
			},
			args:    []string{"--timeout", "300ms"},
			wantErr: "gave up after 300ms waiting for build mine01234567 of preview pr7-web-abcdef (last seen: ready on build mine01234567: waiting for its first health probe); the preview goes on: silo preview ls",
			stderr: []string{
				"preview pr7-web-abcdef: build mine01234567",
				"pr7-web-abcdef updating from build old001234567 to build mine01234567",
				"pr7-web-abcdef ready on build mine01234567: waiting for its first health probe",
			},
			outcome: preview.OutcomePending,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&previewScript{up: answer, steps: tc.steps})
			defer srv.Close()
			dir := t.TempDir()
			zip := filepath.Join(dir, "app.zip")
			b, err := lambdazip.Pack([]byte("app"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(zip, b, 0o644); err != nil {
				t.Fatal(err)
			}
			ghOut := filepath.Join(dir, "github_output")
			t.Setenv("GITHUB_OUTPUT", ghOut)
			args := append([]string{"preview", "up", "--repo", "acme/web", "--pr", "7", "--artifact", zip, "--wait", "--json", "--interval", "10ms"}, tc.args...)
			stdout, stderr, err := run(t, srv.URL, args...)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, stderr)
			}
			var se supersededError
			if errors.As(err, &se) != tc.superseded {
				t.Errorf("error %v: superseded (exit 3) is %v, want %v", err, !tc.superseded, tc.superseded)
			}
			if diff := cmp.Diff(tc.stderr, lines(stderr)); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			// --json prints the facts whatever the exit code.
			var got struct {
				preview.Preview
				Outcome      preview.Outcome `json:"outcome"`
				SupersededBy string          `json:"superseded_by"`
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("--json printed %q: %v", stdout, err)
			}
			wantBy := ""
			if tc.superseded {
				wantBy = other
			}
			if got.Build != mine || got.Outcome != tc.outcome || got.SupersededBy != wantBy {
				t.Errorf("--json: build %s, outcome %s, superseded by %q; want %s, %s, %q", got.Build, got.Outcome, got.SupersededBy, mine, tc.outcome, wantBy)
			}
			gh, err := os.ReadFile(ghOut)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range []string{"preview_id=" + id, "build=" + mine, "outcome=" + string(tc.outcome)} {
				if !strings.Contains(string(gh), line+"\n") {
					t.Errorf("$GITHUB_OUTPUT lacks %q:\n%s", line, gh)
				}
			}
		})
	}
}

// TestPreviewUpPrintsTheURL: without --json, a healthy build's up --wait
// prints the URL alone on stdout.
func TestPreviewUpPrintsTheURL(t *testing.T) {
	p := &preview.Preview{ID: "pr7-web-abcdef", Repo: "acme/web", PR: 7, Phase: preview.PhaseReady, Release: "rel-1", Running: "rel-1",
		Build: "rel-1", URL: "http://127.0.0.1:9999", Health: &registry.Health{Status: registry.HealthUp}, HealthFresh: true}
	srv := httptest.NewServer(&previewScript{up: p, steps: []*preview.Preview{p}})
	defer srv.Close()
	zip := filepath.Join(t.TempDir(), "app.zip")
	b, err := lambdazip.Pack([]byte("app"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zip, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GITHUB_OUTPUT", "")
	stdout, stderr, err := run(t, srv.URL, "preview", "up", "--repo", "acme/web", "--pr", "7", "--artifact", zip, "--wait")
	if err != nil || stdout != "http://127.0.0.1:9999\n" {
		t.Errorf("up --wait: %v, printed %q\n%s", err, stdout, stderr)
	}
}
