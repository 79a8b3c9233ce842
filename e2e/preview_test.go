package e2e

import (
	"archive/zip"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
)

// checkPreviewCLI runs a PR preview's life through the CLI, as the GitHub
// Actions workflow in docs/ does: up with --wait (the URL on stdout and in
// $GITHUB_OUTPUT, the app answering there), ls, extend, a refused TTL, and
// down.
func checkPreviewCLI(ctx context.Context, t *testing.T, bin string, info local.Info) {
	t.Helper()
	dir := t.TempDir()
	artifact := filepath.Join(dir, "app.zip")
	fh, err := os.Create(artifact)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(fh)
	w, _ := zw.Create("bootstrap")
	_, _ = w.Write([]byte("#!/bin/sh\necho preview build\n"))
	if err := zw.Close(); err != nil || fh.Close() != nil {
		t.Fatal(err)
	}
	auth := []string{"--api", info.API, "--token", info.AdminToken}
	ghOut := filepath.Join(dir, "github_output")
	up := exec.CommandContext(ctx, bin, append([]string{"preview", "up", "--repo", "acme/web", "--pr", "5", "--artifact", artifact, "--ttl", "2h", "--wait", "--json"}, auth...)...)
	up.Env = append(os.Environ(), "GITHUB_OUTPUT="+ghOut)
	var stderr strings.Builder
	up.Stderr = &stderr
	out, err := up.Output()
	if err != nil {
		t.Fatalf("silo preview up --wait: %v\n%s", err, stderr.String())
	}
	var p preview.Preview
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("preview up printed %s: %v", out, err)
	}
	if p.Phase != preview.PhaseReady || p.URL == "" || p.AccountID == "" || p.Running != p.Release {
		t.Fatalf("preview up --wait ended with %+v", p)
	}
	if !strings.Contains(stderr.String(), p.ID+" ready") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
	gh, err := os.ReadFile(ghOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"url=" + p.URL, "account_id=" + p.AccountID, "preview_id=" + p.ID} {
		if !strings.Contains(string(gh), line+"\n") {
			t.Errorf("$GITHUB_OUTPUT lacks %q:\n%s", line, gh)
		}
	}
	resp, err := http.Get(p.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health struct {
		Status, Version string
	}
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || health.Status != "ok" || health.Version != p.Release {
		t.Errorf("preview /health: %d %+v, want ok on build %s", resp.StatusCode, health, p.Release)
	}

	var l preview.Listing
	runCLI(ctx, t, bin, &l, append([]string{"preview", "ls", "--json"}, auth...)...)
	if l.Counts["leased"] != 1 || len(l.Previews) != 1 || l.Previews[0].ID != p.ID || l.Previews[0].URL != p.URL {
		t.Errorf("preview ls = %+v", l)
	}
	var ext preview.Preview
	runCLI(ctx, t, bin, &ext, append([]string{"preview", "extend", "--repo", "acme/web", "--pr", "5", "--by", "1h", "--json"}, auth...)...)
	if ext.ExpiresAt == nil || ext.ExpiresAt.Sub(*p.ExpiresAt) != time.Hour {
		t.Errorf("extend by 1h: %v → %v", p.ExpiresAt, ext.ExpiresAt)
	}
	// A lease past the maximum is refused with the reason; a missing flag
	// is a usage error.
	bad, err := exec.CommandContext(ctx, bin, append([]string{"preview", "up", "--repo", "acme/web", "--pr", "6", "--artifact", artifact, "--ttl", "100h"}, auth...)...).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(bad), "ttl must be from 1m") {
		t.Errorf("up with a 100h TTL: exit %d, %s", code, bad)
	}
	if code := exitCode(exec.CommandContext(ctx, bin, append([]string{"preview", "up", "--pr", "6", "--artifact", artifact}, auth...)...).Run()); code != 2 {
		t.Errorf("up without --repo: exit %d, want 2", code)
	}
	var down preview.Preview
	runCLI(ctx, t, bin, &down, append([]string{"preview", "down", "--repo", "acme/web", "--pr", "5", "--wait", "--json"}, auth...)...)
	if down.Phase != preview.PhaseReleased {
		t.Errorf("preview down --wait ended %s", down.Phase)
	}
	if resp, err := http.Get(p.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("released preview still answers at %s", p.URL)
	}
}
