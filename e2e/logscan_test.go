package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/logscan"
	"github.com/silo-saas/silo/registry"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoSecrets runs `silo local --log-level debug` through a
// lifecycle that hands secrets around (the admin token used, a forged
// token refused by the API and by a tenant's app, a signup whose status
// token reads its status until ACTIVE, an operator action, a login to the console with each token) and scans
// everything it logged: no token, key or credential may appear, and the
// request lines must (so an empty capture cannot pass).
//
// stdout is not scanned: printing the admin token and the emulator's
// credentials there, for the person who ran the command, is its job.
func TestLogsHoldNoSecrets(t *testing.T) {
	bin := buildSilo(t)
	ready := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "local", "--log-level", "debug", "--ready-file", ready, "--probe-every", "500ms", "--pool-size", "0")
	cmd.Stderr = logs
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	info := waitReadyFile(ctx, t, ready)

	call := func(method, url, token, body string, header map[string]string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// The admin token lists tenants.
	if code, b := call("GET", info.API+"/v1/tenants?state=active", info.AdminToken, "", nil); code != http.StatusOK {
		t.Fatalf("list with the admin token: %d %s", code, b)
	}
	// A token forged with another key, claiming the same issuer and admin,
	// is refused.
	forger, err := issuer.New(info.Issuer, issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forger.Mint("", "mallory", time.Hour, map[string]any{api.RoleClaim: string(api.RoleAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	if code, b := call("GET", info.API+"/v1/tenants?state=active", forged, "", nil); code != http.StatusUnauthorized {
		t.Fatalf("list with a forged token: %d %s, want 401", code, b)
	}

	// A signup; its status token reads the status until the tenant is up.
	code, b := call("POST", info.API+"/v1/signup", "",
		`{"name":"Leak Check","email":"ops@leakcheck.example","tier":"basic","region":"us-east-1"}`,
		map[string]string{api.IdempotencyKeyHeader: api.NewIdempotencyKey()})
	if code != http.StatusAccepted {
		t.Fatalf("signup: %d %s", code, b)
	}
	var signed api.SignupResponse
	if err := json.Unmarshal(b, &signed); err != nil {
		t.Fatal(err)
	}
	var view api.TenantView
	eventually(ctx, t, 250*time.Millisecond, func() bool {
		code, b := call("GET", signed.StatusURL, signed.StatusToken, "", nil)
		if code != http.StatusOK {
			t.Fatalf("status with the status token: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &view); err != nil {
			t.Fatal(err)
		}
		return view.State == registry.StateActive && view.Endpoint != ""
	}, func() string { return fmt.Sprintf("tenant %s never became ACTIVE: %+v", signed.TenantID, view) })
	// The tenant's app refuses the forged token too.
	if code, b := call("GET", view.Endpoint+"/items", forged, "", nil); code != http.StatusUnauthorized {
		t.Errorf("tenant app with a forged token: %d %s, want 401", code, b)
	}
	// An operator action, with the admin token.
	if code, b := call("POST", info.API+"/v1/tenants/"+signed.TenantID+"/suspend", info.AdminToken, `{"reason":"log scan"}`, nil); code != http.StatusOK {
		t.Errorf("suspend: %d %s", code, b)
	}

	// The console's login takes the forged token no more than the API,
	// and the admin token.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		token string
		want  int
	}{{forged, http.StatusUnauthorized}, {info.AdminToken, http.StatusSeeOther}} {
		resp, err := noRedirect.PostForm(info.Console+"/login", url.Values{"token": {tc.token}, "next": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("console login: %d, want %d", resp.StatusCode, tc.want)
		}
	}

	// Stop it, so every line is written.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("silo local after Ctrl-C: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("silo local did not stop after Ctrl-C")
	}

	out := logs.String()
	known := []string{info.AdminToken, info.ViewerToken, forged, signed.StatusToken, info.SecretAccessKey}
	for _, f := range logscan.Scan(out, known) {
		t.Errorf("secret in the logs of silo local: %s", f)
	}
	// What the run must have logged: a scan of nothing finds nothing.
	for _, want := range []string{
		`level=DEBUG `,
		`msg=request .*method=GET path=/v1/tenants status=200`,
		`msg=request .*method=GET path=/v1/tenants status=401`,
		`msg="token refused"`,
		`msg=request .*method=POST path=/v1/signup status=202`,
		`msg="tenant signed up" .*tenant=` + signed.TenantID,
		`msg=request .*method=GET path=/v1/tenants/` + signed.TenantID + ` status=200`,
		`msg="operator action" .*action=suspend .*actor=operator:local-admin`,
		`msg="console login refused"`,
		`msg="console login" .*subject=local-admin`,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(out) {
			t.Errorf("the logs lack a line matching %q", want)
		}
	}
	if t.Failed() {
		// Not the lines themselves: they may hold the secrets found.
		t.Logf("%d lines logged", strings.Count(out, "\n"))
	}
}
