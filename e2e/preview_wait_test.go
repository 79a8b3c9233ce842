package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// TestPreviewUpWait runs `silo preview up --wait` (the real binary) against
// a local platform while other ups for the same PR race it, and with a
// build that deploys but fails its health check. Each caller must report
// its own build: the one whose build the registry's last accepted up
// replaced exits 3 naming the winner, the winner exits 0 once its build
// runs and the prober found it up, and a build answering /health with 502
// exits 1 with the probe's class and detail.
//
// The races are made certain, not likely: the proxy holds the stack
// instance operation of the first build until every up of the race has
// been accepted, so no build can finish before the last up lands.
func TestPreviewUpWait(t *testing.T) {
	bin := buildSilo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	p, err := local.Start(ctx, local.Options{Emulator: emu, PoolSize: 1, ProbeEvery: 500 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	artifact := func(name string, files map[string]string) string {
		t.Helper()
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for n, body := range files {
			w, err := zw.Create(n)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte(body))
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".zip")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	build := func(name string) string {
		t.Helper()
		b, err := lambdazip.Pack([]byte("#!/bin/sh\necho build " + name + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".zip")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const repo, pr = "acme/race", "7"
	// up starts `silo preview up --wait` of a build, with env added to
	// its environment.
	up := func(zip string, env []string, extra ...string) *cliProc {
		return startCLI(ctx, t, env, bin, append([]string{"preview", "up", "--repo", repo, "--pr", pr, "--artifact", zip, "--ttl", "1h",
			"--wait", "--interval", "200ms", "--api", p.Info.API, "--token", p.Info.AdminToken}, extra...)...)
	}
	id, err := preview.PreviewID(repo, 7)
	if err != nil {
		t.Fatal(err)
	}
	target := func() string {
		t.Helper()
		tn, err := p.Registry.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return tn.TargetVersion
	}

	// Two first builds at once: the preview is new, so both ups may race to
	// create it; its first deploy is held until both are in.
	held := holdOp(p.Proxy(), "CloudFormation.CreateStackInstances")
	defer held.release()
	a, b := up(build("a"), nil, "--json"), up(build("b"), nil, "--json")
	a.waitStderr(ctx, t, ": build ")
	b.waitStderr(ctx, t, ": build ")
	winner := target()
	held.release()
	checkRace(ctx, t, winner, a, b)
	checkRunning(ctx, t, p, id, winner)

	// A build replaced while it deploys: c's update is in flight (held at
	// the proxy) when d's up is accepted, so d is the last write.
	held = holdOp(p.Proxy(), "CloudFormation.UpdateStackInstances")
	defer held.release()
	c := up(build("c"), nil, "--json")
	select {
	case <-held.seen:
	case <-ctx.Done():
		t.Fatalf("build c's update never reached the stack set:\n%s", c.stderrText())
	}
	d := up(build("d"), nil, "--json")
	d.waitStderr(ctx, t, ": build ")
	winner = target()
	held.release()
	cOut, _ := checkRace(ctx, t, winner, c, d)
	if dOut := d.output(t); cOut.Build == winner || dOut.Build != winner {
		t.Errorf("d's up was accepted last, yet the registry's target is %s (c %s, d %s)", winner, cOut.Build, dOut.Build)
	}
	checkRunning(ctx, t, p, id, winner)

	// The same build twice at once: a duplicate never supersedes its twin.
	held = holdOp(p.Proxy(), "CloudFormation.UpdateStackInstances")
	defer held.release()
	same := build("e")
	e1, e2 := up(same, nil, "--json"), up(same, nil, "--json")
	e1.waitStderr(ctx, t, ": build ")
	e2.waitStderr(ctx, t, ": build ")
	held.release()
	for _, e := range []*cliProc{e1, e2} {
		if code := e.wait(ctx, t); code != 0 {
			t.Errorf("an up of the same build as a concurrent one: exit %d, want 0\n%s", code, e.stderrText())
		}
		if out := e.output(t); out.Outcome != preview.OutcomeHealthy || out.Build != target() || out.SupersededBy != "" {
			t.Errorf("an up of the same build: outcome %s, build %s, superseded by %q", out.Outcome, out.Build, out.SupersededBy)
		}
	}
	healthy := target()
	p.Proxy().SetHook(nil)

	// A build that deploys but whose /health answers 502: a package Lambda
	// cannot start, which API Gateway answers with 502 (the app host does
	// the same locally). up --wait waits for the probe and exits 1 with
	// its class and detail.
	ghOut := filepath.Join(dir, "github_output")
	broken := up(artifact("broken", map[string]string{"main": "not a runtime"}), []string{"GITHUB_OUTPUT=" + ghOut}, "--json")
	if code := broken.wait(ctx, t); code != 1 {
		t.Errorf("up --wait of a build failing its health check: exit %d, want 1\n%s", code, broken.stderrText())
	}
	bad := broken.output(t)
	if bad.Outcome != preview.OutcomeUnhealthy || bad.Running != bad.Build || !bad.HealthFresh || bad.Health == nil ||
		bad.Health.Class != "status" || bad.Health.Detail != "status == 200: status 502" {
		t.Errorf("up --wait --json of the broken build: outcome %s, running %s of build %s, fresh %v, health %+v", bad.Outcome, bad.Running, bad.Build, bad.HealthFresh, bad.Health)
	}
	if msg := broken.stderrText(); !strings.Contains(msg, "build "+short12(bad.Build)+" is deployed at "+bad.URL+" but failed its health check: down, class status (status == 200: status 502)") {
		t.Errorf("the failure does not say the class and detail:\n%s", msg)
	}
	checkGitHubOutput(t, ghOut, "outcome=unhealthy", "build="+bad.Build, "preview_id="+id)

	// The healthy build again: exit 0, and the URL on stdout.
	_ = os.Remove(ghOut)
	again := up(same, []string{"GITHUB_OUTPUT=" + ghOut})
	if code := again.wait(ctx, t); code != 0 {
		t.Fatalf("up --wait of a healthy build: exit %d\n%s", code, again.stderrText())
	}
	url := strings.TrimSpace(again.stdout.String())
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.Contains(url, "\n") {
		t.Errorf("up --wait printed %q, want the URL alone", url)
	}
	checkGitHubOutput(t, ghOut, "outcome=healthy", "build="+healthy, "url="+url)
	// Whether a poll falls between the deploy and the probe is chance; the
	// verdict line is not (the progress lines are in cmd/silo's tests).
	if want := "ready on build " + short12(healthy) + ": up, "; !strings.Contains(again.stderrText(), want) {
		t.Errorf("progress lacks %q:\n%s", want, again.stderrText())
	}
	checkRunning(ctx, t, p, id, healthy)
}

// checkRace waits for two racing ups and checks that the one asking for
// winner (the preview's release after both were accepted) exits 0 on it,
// up, and the other exits 3 naming winner. It returns the loser's and the
// winner's output.
func checkRace(ctx context.Context, t *testing.T, winner string, x, y *cliProc) (loser, won upOutput) {
	t.Helper()
	xc, yc := x.wait(ctx, t), y.wait(ctx, t)
	xo, yo := x.output(t), y.output(t)
	if xo.Build == "" || yo.Build == "" || xo.Build == yo.Build {
		t.Fatalf("two builds reported %q and %q, want two different releases", xo.Build, yo.Build)
	}
	lp, wp, lc, wc := x, y, xc, yc
	loser, won = xo, yo
	switch winner {
	case xo.Build:
		lp, wp, lc, wc = y, x, yc, xc
		loser, won = yo, xo
	case yo.Build:
	default:
		t.Fatalf("the registry's target %s is neither build (%s, %s)", winner, xo.Build, yo.Build)
	}
	if wc != 0 || won.Outcome != preview.OutcomeHealthy || won.Running != winner || won.URL == "" {
		t.Errorf("the winner (build %s): exit %d, outcome %s, running %s, url %q\n%s", winner, wc, won.Outcome, won.Running, won.URL, wp.stderrText())
	}
	if lc != 3 || loser.Outcome != preview.OutcomeSuperseded || loser.SupersededBy != winner {
		t.Errorf("the superseded (build %s): exit %d, outcome %s, superseded by %q, want %s\n%s", loser.Build, lc, loser.Outcome, loser.SupersededBy, winner, lp.stderrText())
	}
	if want := "build " + short12(loser.Build) + " was replaced by build " + short12(winner); !strings.Contains(lp.stderrText(), want) {
		t.Errorf("the superseded caller does not say %q:\n%s", want, lp.stderrText())
	}
	return loser, won
}

// checkRunning checks that the preview runs release, and that its URL
// answers on it.
func checkRunning(ctx context.Context, t *testing.T, p *local.Platform, id, release string) {
	t.Helper()
	tn, err := p.Registry.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if tn.State != registry.StateActive || tn.AppVersion != release || tn.TargetVersion != release {
		t.Fatalf("preview %s is %s on %s (target %s), want ACTIVE on %s", id, tn.State, tn.AppVersion, tn.TargetVersion, release)
	}
	// Its activation asked the prober for a verdict on the new build, and
	// the verdict the waiting caller took is that one.
	if after, ok := tn.ProbeAfter(); !ok || !tn.FreshHealth() || tn.Health.CheckedAt.Before(after) {
		t.Errorf("preview %s: probe_after %v (set %v), health %+v: no fresh verdict on %s", id, after, ok, tn.Health, release)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tn.Endpoint+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Status, Version string }
	_ = json.NewDecoder(resp.Body).Decode(&h)
	if resp.StatusCode != http.StatusOK || h.Version != release {
		t.Errorf("the preview's /health: %d %+v, want 200 on %s", resp.StatusCode, h, release)
	}
}

func checkGitHubOutput(t *testing.T, path string, lines ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if !strings.Contains(string(b), l+"\n") {
			t.Errorf("$GITHUB_OUTPUT lacks %q:\n%s", l, b)
		}
	}
}

func short12(s string) string { return s[:min(12, len(s))] }

// upOutput is what `silo preview up --json` prints.
type upOutput struct {
	preview.Preview
	Outcome      preview.Outcome `json:"outcome"`
	SupersededBy string          `json:"superseded_by"`
}

// heldOp makes the proxy hold every call of one AWS operation until
// release: a step of the platform that the test lets go when it is ready.
type heldOp struct {
	seen      chan struct{} // closed at the first call
	open      chan struct{}
	once, rel sync.Once
}

func holdOp(p *emulator.Proxy, op string) *heldOp {
	h := &heldOp{seen: make(chan struct{}), open: make(chan struct{})}
	p.SetHook(func(o awsx.Op, _ int64) error {
		if o.String() == op {
			h.once.Do(func() { close(h.seen) })
			<-h.open
		}
		return nil
	})
	return h
}

func (h *heldOp) release() { h.rel.Do(func() { close(h.open) }) }

// cliProc is a silo command running in the background.
type cliProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

// startCLI starts the silo binary with env added to its environment.
func startCLI(ctx context.Context, t *testing.T, env []string, bin string, args ...string) *cliProc {
	t.Helper()
	c := &cliProc{cmd: exec.CommandContext(ctx, bin, args...), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	c.cmd.Env = append(os.Environ(), env...)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c
}

// wait waits for the command to end and returns its exit code.
func (c *cliProc) wait(ctx context.Context, t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatalf("%s did not end: %v\n%s", strings.Join(c.cmd.Args[1:4], " "), ctx.Err(), c.stderrText())
	}
	return exitCode(c.err)
}

// output decodes what the ended command printed with --json.
func (c *cliProc) output(t *testing.T) upOutput {
	t.Helper()
	<-c.done
	var o upOutput
	if err := json.Unmarshal(c.stdout.Bytes(), &o); err != nil {
		t.Fatalf("preview up --json printed %q: %v\n%s", c.stdout.String(), err, c.stderrText())
	}
	return o
}

// waitStderr waits until the command's stderr holds s.
func (c *cliProc) waitStderr(ctx context.Context, t *testing.T, s string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(c.stderrText(), s) {
		select {
		case <-c.done:
			t.Fatalf("%s ended (%v) before printing %q:\n%s", strings.Join(c.cmd.Args[1:3], " "), c.err, s, c.stderrText())
		case <-ctx.Done():
			t.Fatalf("never printed %q:\n%s", s, c.stderrText())
		case <-tick.C:
		}
	}
}

func (c *cliProc) stderrText() string { return c.stderr.String() }
