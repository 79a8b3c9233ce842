package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/probe"
)

// TestSimFleetProcess runs `silo sim fleet` as a process: its endpoints
// answer as configured, a behaviour changes through the control endpoint
// while it runs, and Ctrl-C stops it.
func TestSimFleetProcess(t *testing.T) {
	bin := buildSilo(t)
	targetsFile := filepath.Join(t.TempDir(), "targets.json")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A control port picked here, so nothing has to be read from the
	// process's output while it runs.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	controlAddr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "sim", "fleet", "--endpoints", "20", "--down", "10", "--latency-min", "1ms", "--latency-max", "5ms",
		"--targets-file", targetsFile, "--control-addr", controlAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var targets []probe.Target
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(targetsFile); err == nil && json.Unmarshal(b, &targets) == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no targets file")
		case <-tick.C:
		}
	}
	if len(targets) != 20 {
		t.Fatalf("%d targets, want 20", len(targets))
	}
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	down := 0
	for _, tg := range targets {
		if status(tg.URL) == http.StatusServiceUnavailable {
			down++
		}
	}
	if down != 2 {
		t.Errorf("%d endpoints down, want 10%% of 20", down)
	}
	// Change one up endpoint to down through the control endpoint.
	control := "http://" + controlAddr + "/behaviour"
	last := targets[len(targets)-1]
	if got := status(last.URL); got != http.StatusOK {
		t.Fatalf("last endpoint answers %d before the change", got)
	}
	resp, err := http.Post(control+"?id="+last.TenantID+"&mode=down", "", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("control: %v %v", resp, err)
	}
	if got := status(last.URL); got != http.StatusServiceUnavailable {
		t.Errorf("after the change: %d, want 503", got)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after Ctrl-C: %v", err)
	}
}
