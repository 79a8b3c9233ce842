package e2e

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// TestStuckTenantThroughTheCLI is what an operator sees of a stuck tenant
// with the silo binary against the real API: `tenants ls` shows how long
// it has been in its state and its deadline, `tenants get` the error it is
// stuck on; once past its deadline it is listed FAILED with the reason,
// and `tenants decommission --wait` takes it to CLOSED.
func TestStuckTenantThroughTheCLI(t *testing.T) {
	bin := buildSilo(t)
	d := short(func(s *vending.StateDeadlines) { s.Preparing = 8 * time.Second })
	c, u := wireDeadlines(t, d)
	iss, err := issuer.New("https://issuer.e2e", issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.NewJWTVerifier(api.JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Deps{Registry: c.Registry, Kick: u.Kick, Retry: c.Reconciler.Retry, Verifier: v, Log: slog.New(slog.DiscardHandler)},
		api.Options{StatusSecret: []byte("0123456789abcdef0123456789abcdef"), Deadlines: c.Vending.Deadlines})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	admin, err := iss.Mint("", "ann", time.Hour, map[string]any{api.RoleClaim: string(api.RoleAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	auth := []string{"--api", srv.URL, "--token", admin}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	silo := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append(args, auth...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("silo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	emu.Proxy.Configure(emulator.Faults{NewAccountUnusable: time.Minute})
	signup(t, c, "stuck-cli")
	u.Kick("stuck-cli")
	waitFor(t, c, "stuck-cli", 30*time.Second, "PREPARING with its last error", func(tn *registry.Tenant) bool {
		return tn.State == registry.StatePreparing && tn.LastError != ""
	})
	table := silo("tenants", "ls", "--state", "preparing")
	t.Logf("silo tenants ls --state preparing:\n%s", table)
	if !strings.Contains(table, "IN STATE") || !strings.Contains(table, "DEADLINE") {
		t.Errorf("tenants ls has no IN STATE and DEADLINE columns:\n%s", table)
	}
	row := lineWith(table, "stuck-cli")
	if !strings.Contains(row, "PREPARING") || !strings.Contains(row, " 8s ") {
		t.Errorf("tenants ls row %q does not show PREPARING with its 8s deadline", row)
	}
	got := silo("tenants", "get", "stuck-cli")
	t.Logf("silo tenants get stuck-cli:\n%s", got)
	if !strings.Contains(lineWith(got, "last error"), "AccessDenied") || !strings.Contains(lineWith(got, "deadline"), "8s") {
		t.Errorf("tenants get does not show the error it is stuck on and its deadline:\n%s", got)
	}

	waitState(t, c, "stuck-cli", registry.StateFailed, time.Minute)
	var failed api.TenantList
	runCLI(ctx, t, bin, &failed, append([]string{"tenants", "ls", "--state", "failed", "--json"}, auth...)...)
	if len(failed.Tenants) != 1 || failed.Tenants[0].FailedFrom != registry.StatePreparing ||
		!strings.Contains(failed.Tenants[0].Reason, "no progress in PREPARING for") || failed.Tenants[0].InState == "" {
		t.Fatalf("tenants ls --state failed --json: %+v", failed.Tenants)
	}

	emu.Proxy.Configure(emulator.Faults{})
	out := silo("tenants", "decommission", "stuck-cli", "--reason", "stuck in PREPARING", "--wait")
	if !strings.Contains(lineWith(out, "state"), "CLOSED") {
		t.Errorf("decommission --wait ends with:\n%s", out)
	}
	noOrphans(t, c)
}

// lineWith returns the first line of s that contains sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
