package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/registry"
)

// syncBuffer collects a process's output for the test to read while the
// process writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLocalDeployed runs `silo local --deployed` as a person trying the
// deployed topology would: the control-plane stack in the emulator, its
// Lambda functions' real binaries behind API Gateway front doors. The CLI
// signs a tenant up through the API's front door; the reconciler function
// gets the queued message (and says it does not reconcile yet); the tenant
// reads back through the deployed API; the prober runs on its schedule;
// an operator logs in to the console through its front door; Ctrl-C stops
// everything.
func TestLocalDeployed(t *testing.T) {
	bin := buildSilo(t)
	dir := t.TempDir()
	ready, logs := filepath.Join(dir, "ready.json"), filepath.Join(dir, "logs")
	// Functions are built and the stack synthesized on the first start
	// (cached after): minutes on a loaded machine.
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	// At 30 times real time the prober's one-minute schedule fires every
	// two seconds.
	cmd := exec.Command(bin, "local", "--deployed", "--ready-file", ready, "--speed", "30", "--function-logs", logs)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	defer func() {
		if t.Failed() {
			t.Logf("silo local --deployed printed:\n%s\n%s", stdout.String(), stderr.String())
			for _, fn := range []string{"silo-api", "silo-reconciler", "silo-prober", "silo-console"} {
				b, _ := os.ReadFile(filepath.Join(logs, fn+".log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("log of %s:\n%s", fn, b)
			}
		}
	}()

	info := waitReadyFile(ctx, t, ready)
	if info.StackName != "SiloControlPlane" || info.FunctionLogs != logs || !strings.HasSuffix(info.API, "/v1") ||
		!strings.HasSuffix(info.Console, "/console") || info.AdminToken == "" || info.Issuer == "" || info.AWSEndpoint == "" || info.RegistryTable == "" {
		t.Fatalf("ready file %+v, want the stack, its front doors' stage URLs, the function logs and the tokens", info)
	}

	var signed api.SignupResponse
	runCLI(ctx, t, bin, &signed, "signup", "--api", info.API, "--name", "Hooli", "--email", "ops@hooli.example",
		"--tier", "standard", "--region", "us-east-1", "--key", "e2e-deployed-"+api.NewIdempotencyKey(), "--json")
	if signed.State != registry.StateRequested || signed.TenantID == "" {
		t.Fatalf("silo signup answered %+v", signed)
	}
	logOf := func(fn string) string {
		b, _ := os.ReadFile(filepath.Join(logs, fn+".log"))
		return string(b)
	}
	eventually(ctx, t, 200*time.Millisecond, func() bool {
		l := logOf("silo-reconciler")
		return strings.Contains(l, "harness: invoke sqs") && strings.Contains(l, "handler not implemented yet")
	}, func() string { return "the reconciler never got the signup's message:\n" + logOf("silo-reconciler") })
	var got api.TenantView
	runCLI(ctx, t, bin, &got, "tenants", "get", signed.TenantID, "--api", info.API, "--token", info.AdminToken, "--json")
	if got.ID != signed.TenantID || got.State != registry.StateRequested {
		t.Errorf("silo tenants get answered %+v, want %s REQUESTED", got, signed.TenantID)
	}
	eventually(ctx, t, 200*time.Millisecond, func() bool {
		l := logOf("silo-prober")
		return strings.Contains(l, "harness: invoke schedule") && strings.Contains(l, "succeeded after")
	}, func() string { return "the prober never ran on its schedule:\n" + logOf("silo-prober") })

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(info.Console+"/login", url.Values{"token": {info.AdminToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("console login: %d %v", resp.StatusCode, resp.Cookies())
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, info.Console+"/tenants", nil)
	req.Header.Set("Cookie", resp.Cookies()[0].Name+"="+resp.Cookies()[0].Value)
	page, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != http.StatusOK || !strings.Contains(string(body), signed.TenantID) || !strings.Contains(string(body), "local-admin") {
		t.Errorf("console tenants page: %d, want the tenant and the signed-in admin\n%s", page.StatusCode, body)
	}

	children := childPIDs(cmd.Process.Pid)
	if len(children) < 2 {
		t.Fatalf("silo local --deployed has %d child processes, want the emulator and the functions' environments", len(children))
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("silo local --deployed after Ctrl-C: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("silo local --deployed did not stop after Ctrl-C")
	}
	for _, pid := range children {
		if alive(pid) {
			t.Errorf("child %d still running after silo local --deployed stopped", pid)
		}
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file left behind: %v", err)
	}
	for _, want := range []string{"control-plane stack", "SiloControlPlane", "function logs", info.API, info.Console} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary does not show %q:\n%s", want, stdout.String())
		}
	}
}
