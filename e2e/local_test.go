package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/tenantapp"
	"github.com/silo-saas/silo/registry"
)

// buildSilo compiles the CLI once per test binary.
func buildSilo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "silo")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/silo")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build silo: %v\n%s", err, out)
	}
	return bin
}

// TestLocalPlatformLifecycle runs `silo local` as a person would: waits for
// its ready file, uses the credentials in it against the emulator, then
// presses Ctrl-C and checks that nothing is left running.
func TestLocalPlatformLifecycle(t *testing.T) {
	bin := buildSilo(t)
	ready := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	cmd := exec.Command(bin, "local", "--ready-file", ready, "--probe-every", "500ms", "--pool-size", "1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var printed strings.Builder
	lines := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
		}
		close(lines)
	}()

	info := waitReadyFile(ctx, t, ready)
	if info.AWSEndpoint == "" || info.AccessKeyID == "" || info.SecretAccessKey == "" || info.Region == "" {
		t.Fatalf("ready file lacks connection details: %+v", info)
	}
	cfg, err := awsx.Load(ctx, awsx.Options{Endpoint: info.AWSEndpoint, Region: info.Region, AccessKeyID: info.AccessKeyID, SecretAccessKey: info.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), info.RegistryTable)
	queue := subscribe(t, cfg)
	if info.API == "" || info.AdminToken == "" {
		t.Fatalf("ready file lacks the API or the admin token: %+v", info)
	}
	if info.Issuer == "" {
		t.Error("ready file lacks the issuer URL")
	} else if resp, err := http.Get(info.Issuer + "/.well-known/jwks.json"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("issuer's JWKS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// A person with the CLI: sign up through the public API and wait.
	var signed api.TenantView
	runCLI(ctx, t, bin, &signed, "signup", "--api", info.API, "--name", "Hooli", "--email", "ops@hooli.example",
		"--tier", "standard", "--region", "us-east-1", "--key", "e2e-hooli-"+api.NewIdempotencyKey(), "--wait", "--json")
	if signed.State != registry.StateActive || signed.AccountID == "" || signed.Endpoint == "" {
		t.Fatalf("silo signup --wait ended with %+v", signed)
	}
	tn, err := reg.Get(ctx, signed.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkHealthy(ctx, t, tn)
	// The in-process prober finds the new tenant up: its health is on the
	// tenant, in its audit trail and on the bus.
	eventually(ctx, t, 200*time.Millisecond, func() bool {
		if tn, err = reg.Get(ctx, signed.ID); err != nil {
			t.Fatal(err)
		}
		return tn.Health != nil && tn.Health.Status == registry.HealthUp
	}, func() string { return fmt.Sprintf("tenant %s never recorded up: %+v", tn.ID, tn.Health) })
	if evs, err := reg.Events(ctx, tn.ID); err != nil || evs[len(evs)-1].Type != probe.EventHealthChanged || evs[len(evs)-1].Actor != probe.Actor {
		t.Errorf("audit trail after the first probe: %+v %v", evs, err)
	}
	for e := range slices.Values(drain(ctx, t, cfg, queue, 3)) {
		if e.DetailType == probe.EventHealthChanged {
			if e.Detail.TenantID != tn.ID || e.Detail.Health == nil || e.Detail.Health.Status != registry.HealthUp {
				t.Errorf("health event on the bus: %+v", e.Detail)
			}
			break
		}
	}
	checkConsole(ctx, t, info, tn)
	checkResolve(ctx, t, bin, info, cfg, tn)
	// An operator lists, suspends with a reason, and reads the audit trail.
	var list api.TenantList
	runCLI(ctx, t, bin, &list, "tenants", "ls", "--api", info.API, "--token", info.AdminToken, "--state", "active", "--json")
	if len(list.Tenants) != 1 || list.Tenants[0].ID != signed.ID {
		t.Errorf("tenants ls = %+v", list)
	}
	checkIsolationAudit(ctx, t, bin, info, cfg, tn)
	var suspended api.TenantView
	runCLI(ctx, t, bin, &suspended, "tenants", "suspend", signed.ID, "--reason", "e2e check", "--api", info.API, "--token", info.AdminToken, "--json")
	if suspended.State != registry.StateSuspended {
		t.Errorf("after suspend: %s", suspended.State)
	}
	// A suspended tenant no longer resolves: the one 404 of every id that
	// does not serve.
	if out, err := exec.CommandContext(ctx, bin, "tenants", "resolve", signed.ID, "--api", info.API).CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), "404") {
		t.Errorf("resolve a suspended tenant: exit %d, %s", exitCode(err), out)
	}
	var events api.EventList
	runCLI(ctx, t, bin, &events, "tenants", "events", signed.ID, "--api", info.API, "--token", info.AdminToken, "--json")
	if last := events.Events[len(events.Events)-1]; last.Actor != "operator:local-admin" || last.Reason != "e2e check" {
		t.Errorf("last audit event %+v, want the operator and the reason", last)
	}
	// Without a token the operator API refuses, with exit code 1.
	out, err := exec.CommandContext(ctx, bin, "tenants", "ls", "--api", info.API).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "401") {
		t.Errorf("tenants ls without a token: exit %d, %s", code, out)
	}
	// A usage error exits 2.
	if code := exitCode(exec.CommandContext(ctx, bin, "tenants", "get").Run()); code != 2 {
		t.Errorf("tenants get without an id: exit %d, want 2", code)
	}
	checkPreviewCLI(ctx, t, bin, info)
	ous, err := organizations.NewFromConfig(cfg).ListOrganizationalUnitsForParent(ctx, &organizations.ListOrganizationalUnitsForParentInput{ParentId: &[]string{info.OUs["Tenants"]}[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(ous.OrganizationalUnits) != 2 {
		t.Errorf("Tenants OU has %d children, want Production and Preview", len(ous.OrganizationalUnits))
	}

	children := childPIDs(cmd.Process.Pid)
	if len(children) == 0 {
		t.Fatal("silo local has no emulator child process")
	}
	// Ctrl-C: a clean exit, the emulator gone, the ready file removed.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { <-lines; done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("silo local after Ctrl-C: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("silo local did not stop after Ctrl-C")
	}
	for _, pid := range children {
		if alive(pid) {
			t.Errorf("child %d still running after silo local stopped", pid)
		}
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file left behind: %v", err)
	}
	for _, want := range []string{"AWS endpoint", info.AWSEndpoint, "registry table", "token issuer", info.Issuer, info.API, "SILO_TOKEN=", "tenant DNS names", info.HostedZoneID} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("summary does not show %q:\n%s", want, printed.String())
		}
	}
}

// checkResolve finds the tenant as a front end would: by id without a
// token, its DNS name an A record to the loopback address in the local
// hosted zone; and an operator token is not an end user's.
func checkResolve(ctx context.Context, t *testing.T, bin string, info local.Info, cfg aws.Config, tn *registry.Tenant) {
	t.Helper()
	var got api.ResolveView
	runCLI(ctx, t, bin, &got, "tenants", "resolve", tn.ID, "--api", info.API, "--json")
	if info.TenantDomain != local.TenantDomain || info.HostedZoneID == "" {
		t.Errorf("ready file: tenant domain %q, zone %q", info.TenantDomain, info.HostedZoneID)
	}
	want := api.ResolveView{ID: tn.ID, Endpoint: tn.Endpoint, DNSName: tn.ID + "." + local.TenantDomain, Region: tn.Region, State: registry.StateActive}
	if got != want {
		t.Errorf("tenants resolve = %+v, want %+v", got, want)
	}
	r53 := route53.NewFromConfig(cfg)
	zones, err := r53.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String(local.TenantDomain)})
	if err != nil || len(zones.HostedZones) != 1 {
		t.Fatalf("hosted zone %s: %+v %v", local.TenantDomain, zones, err)
	}
	records, err := r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: zones.HostedZones[0].Id})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rr := range records.ResourceRecordSets {
		if aws.ToString(rr.Name) == want.DNSName+"." {
			found = rr.Type == "A" && len(rr.ResourceRecords) == 1 && aws.ToString(rr.ResourceRecords[0].Value) == "127.0.0.1"
		}
	}
	if !found {
		t.Errorf("no A record %s -> 127.0.0.1 in %+v", want.DNSName, records.ResourceRecordSets)
	}
	out, err := exec.CommandContext(ctx, bin, "tenants", "resolve", "--user-token", info.AdminToken, "--api", info.API).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "401") {
		t.Errorf("resolve with an operator token: exit %d, %s", code, out)
	}
}

// checkHealthy asks a tenant's endpoint for its health, as the prober does.
func checkHealthy(ctx context.Context, t *testing.T, tn *registry.Tenant) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tn.Endpoint+"/health", nil)
	if err != nil {
		t.Errorf("tenant %s: endpoint %q: %v", tn.ID, tn.Endpoint, err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("tenant %s: health: %v", tn.ID, err)
		return
	}
	defer resp.Body.Close()
	var h tenantapp.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK || h.Status != "ok" || h.Tenant != tn.ID {
		t.Errorf("tenant %s: health %d %+v (%v), want 200 ok", tn.ID, resp.StatusCode, h, err)
	}
}

func waitReadyFile(ctx context.Context, t *testing.T, path string) local.Info {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			var info local.Info
			if err := json.Unmarshal(b, &info); err != nil {
				t.Fatalf("ready file is not JSON: %v\n%s", err, b)
			}
			return info
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no ready file at %s: %v", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// childPIDs lists the direct children of pid (Linux /proc).
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(field); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// runCLI runs the silo binary and decodes its JSON output into out.
func runCLI(ctx context.Context, t *testing.T, bin string, out any, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("silo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("silo %s printed no JSON: %v\n%s", strings.Join(args, " "), err, b)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestDemoExitMode runs make demo's command in exit mode, end to end: three
// signups through the public API, each endpoint used, isolation checked
// (another tenant's token refused, and the isolation audit passed).
func TestDemoExitMode(t *testing.T) {
	bin := buildSilo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "local", "--demo", "--exit").Output()
	if err != nil {
		t.Fatalf("silo local --demo --exit: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "demo summary") {
		t.Fatalf("no summary:\n%s", text)
	}
	var ids []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, " ACTIVE ") && strings.HasSuffix(strings.TrimSpace(line), " ok") &&
			strings.Contains(line, "200 ok") && strings.Contains(line, "write 201, read 200") && strings.Contains(line, "token: 403") {
			ids = append(ids, strings.Fields(line)[0])
		}
	}
	if len(ids) != 3 {
		t.Errorf("%d healthy, isolated tenants in the summary, want 3:\n%s", len(ids), text)
	}
	// The isolation audit ran over them and every check passed.
	if !regexp.MustCompile(`(?m)^isolation audit \(silo audit isolation, .*\):\nTENANT +VERDICT +CHECKS PASSED$`).MatchString(text) {
		t.Errorf("the summary lacks the isolation audit's table:\n%s", text)
	}
	for _, id := range ids {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + ` +pass +7/7$`).MatchString(text) {
			t.Errorf("tenant %s did not pass all 7 isolation checks in the summary:\n%s", id, text)
		}
	}
	if !regexp.MustCompile(`(?m)^console: http://127\.0\.0\.1:\d+ `).MatchString(text) {
		t.Errorf("the demo does not end with the console's URL:\n%s", text)
	}
}

// checkConsole logs in to the console of a running silo local with the
// admin token and finds the tenant, up, on the overview and its own page.
func checkConsole(ctx context.Context, t *testing.T, info local.Info, tn *registry.Tenant) {
	t.Helper()
	get := loginConsole(ctx, t, info, info.AdminToken)
	// The console's snapshot refreshes every few seconds: wait for the
	// tenant to be counted up.
	var code int
	var body string
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	eventually(wctx, t, 500*time.Millisecond, func() bool {
		code, body = get("/")
		return code == http.StatusOK && regexp.MustCompile(`data-health="up">1<`).MatchString(body)
	}, func() string { return fmt.Sprintf("console overview never showed the tenant up: %d\n%s", code, body) })
	code, body = get("/tenants/" + tn.ID)
	if code != http.StatusOK || !strings.Contains(body, tn.AccountID) || !strings.Contains(body, "Tenants/Production") {
		t.Errorf("console tenant page: %d, want its account and OU\n%s", code, body)
	}
}

// loginConsole finds the console of a running silo local showing its login
// page, logs in with token, and returns a GET of a console path as that
// operator: its status code and body.
func loginConsole(ctx context.Context, t *testing.T, info local.Info, token string) func(path string) (int, string) {
	t.Helper()
	if info.Console == "" {
		t.Fatal("ready file lacks the console URL")
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, info.Console+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("console %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Signed out, the console shows its login page.
	if code, body := get("/"); code != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("console before login: %d\n%s", code, body)
	}
	resp, err := hc.PostForm(info.Console+"/login", url.Values{"token": {token}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("console login: %d", resp.StatusCode)
	}
	return get
}

// eventually checks cond every interval until it holds, failing the test
// with why() when ctx ends first.
func eventually(ctx context.Context, t *testing.T, interval time.Duration, cond func() bool, why func() string) {
	t.Helper()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal(why())
		case <-tick.C:
		}
	}
}
