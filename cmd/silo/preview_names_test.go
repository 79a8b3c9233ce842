package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/preview"
)

// previewsAPI answers GET and DELETE of /v1/previews/{id} from phases
// (id → phase) and records every request as "METHOD id".
type previewsAPI struct {
	mu     sync.Mutex
	phases map[string]preview.Phase
	calls  []string
}

func (s *previewsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := strings.TrimPrefix(r.URL.Path, "/v1/previews/")
	s.calls = append(s.calls, r.Method+" "+id)
	w.Header().Set("Content-Type", "application/json")
	phase, ok := s.phases[id]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: "no such preview"}})
		return
	}
	if r.Method == http.MethodDelete {
		phase = preview.PhaseReleasing
		w.WriteHeader(http.StatusAccepted)
	}
	_ = json.NewEncoder(w).Encode(preview.Preview{ID: id, Phase: phase})
}

// TestPreviewDownFindsLegacyID: for a PR whose preview id from before the
// id budget differs from today's, down acts on the old id while a preview
// lives under it, and on today's otherwise.
func TestPreviewDownFindsLegacyID(t *testing.T) {
	const long, short = "acme/a-very-long-repository-name", "acme/web"
	legacy := preview.LegacyPreviewID(long, 12345)
	id, err := preview.PreviewID(long, 12345)
	if err != nil || legacy == "" {
		t.Fatalf("ids %q, %q, %v", legacy, id, err)
	}
	shortID, _ := preview.PreviewID(short, 12345)
	tests := []struct {
		name   string
		repo   string
		phases map[string]preview.Phase
		want   []string
	}{
		{"legacy preview lives", long, map[string]preview.Phase{legacy: preview.PhaseReady}, []string{"GET " + legacy, "DELETE " + legacy}},
		{"legacy preview released", long, map[string]preview.Phase{legacy: preview.PhaseReleased, id: preview.PhaseReady}, []string{"GET " + legacy, "DELETE " + id}},
		{"no legacy preview", long, map[string]preview.Phase{id: preview.PhaseReady}, []string{"GET " + legacy, "DELETE " + id}},
		{"no legacy id", short, map[string]preview.Phase{shortID: preview.PhaseReady}, []string{"DELETE " + shortID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &previewsAPI{phases: tc.phases}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			out, stderr, err := run(t, srv.URL, "preview", "down", "--repo", tc.repo, "--pr", "12345")
			if err != nil {
				t.Fatalf("preview down: %v\n%s", err, stderr)
			}
			if diff := cmp.Diff(tc.want, fake.calls); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if want := tc.want[len(tc.want)-1][len("DELETE "):]; !strings.Contains(out, want) {
				t.Errorf("output %q does not name %s", out, want)
			}
		})
	}
}
