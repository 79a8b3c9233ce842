package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

// buildSilo compiles this command into a temporary directory.
func buildSilo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "silo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build silo: %v\n%s", err, out)
	}
	return bin
}

// commandPaths lists every command of the tree, as its arguments.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	out := [][]string{prefix}
	for _, sub := range c.Commands() {
		out = append(out, commandPaths(sub, append(append([]string(nil), prefix...), sub.Name()))...)
	}
	return out
}

// runSilo runs the binary with env added to this process's environment and
// returns everything it printed and its exit code.
func runSilo(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), code
}

// TestHelpShowsNoSecret: with SILO_TOKEN (and SILO_API) set, no command's
// --help prints their values (cobra prints a flag's default, and the
// token used to be one); the help says where the default comes from.
func TestHelpShowsNoSecret(t *testing.T) {
	bin := buildSilo(t)
	const token = "sst1_do-not-print-Zq8vX2kLm4Pw"
	const addr = "http://api-do-not-print.example:9"
	env := []string{"SILO_TOKEN=" + token, "SILO_API=" + addr}
	paths := commandPaths(newRootCmd(), nil)
	if len(paths) < 20 {
		t.Fatalf("only %d commands found", len(paths))
	}
	withToken := 0
	for _, path := range paths {
		name := strings.Join(append([]string{"silo"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			out, code := runSilo(t, bin, env, append(path, "--help")...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			for _, secret := range []string{token, addr} {
				if strings.Contains(out, secret) {
					t.Errorf("--help prints %q:\n%s", secret, out)
				}
			}
			if strings.Contains(out, "--token") {
				withToken++
				if !strings.Contains(out, "(default $SILO_TOKEN)") {
					t.Errorf("--help does not say where --token's default comes from:\n%s", out)
				}
			}
		})
	}
	if withToken == 0 {
		t.Error("no command's help shows --token")
	}
}

// TestBadTokenIsNotEchoed: a refused token, from SILO_TOKEN or --token,
// even one that cannot be sent in a header, is not in what silo prints.
func TestBadTokenIsNotEchoed(t *testing.T) {
	bin := buildSilo(t)
	iss, err := issuer.New("https://issuer.test", issuer.Options{Audience: api.Audience})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.NewJWTVerifier(api.JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL()})
	if err != nil {
		t.Fatal(err)
	}
	// Tokens are refused before the registry is read, so it need not exist.
	store := registry.New(dynamodb.New(dynamodb.Options{Region: "us-east-1"}), "unused")
	h, err := api.New(api.Deps{
		Registry: store, Kick: func(string) {}, Verifier: v, Log: slog.New(slog.DiscardHandler),
		Retry: func(_ context.Context, _, _, _ string) (*registry.Tenant, error) { return nil, errors.New("unused") },
	}, api.Options{StatusSecret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	const token = "eyJhbGciOiJSUzI1NiJ9.do-not-echo.Xk29fQ"
	tests := []struct {
		name   string
		env    []string
		args   []string
		secret string
	}{
		{"from SILO_TOKEN", []string{"SILO_TOKEN=" + token}, []string{"tenants", "ls", "--state", "ACTIVE", "--api", srv.URL}, token},
		{"from --token", nil, []string{"tenants", "get", "acme-1", "--api", srv.URL, "--token", token}, token},
		{"status token form", []string{"SILO_TOKEN=sst1_do-not-echo-9fQx"}, []string{"rollout", "ls", "--api", srv.URL}, "sst1_do-not-echo-9fQx"},
		{"not sendable in a header", []string{"SILO_TOKEN=" + token + "\nX-Evil: 1"}, []string{"preview", "ls", "--api", srv.URL}, token},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runSilo(t, bin, tc.env, tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
			if strings.Contains(out, tc.secret) || strings.Contains(out, "do-not-echo") {
				t.Errorf("the token is echoed:\n%s", out)
			}
		})
	}

	// A weak idempotency key is a usage error, caught before any call.
	out, code := runSilo(t, bin, nil, "signup", "--api", srv.URL, "--name", "Acme", "--email", "ops@acme.example", "--key", "order-1")
	if code != 2 || !strings.Contains(out, "--key must be at least 20 characters") {
		t.Errorf("signup --key order-1: exit %d, want 2 saying what a key needs:\n%s", code, out)
	}
}
