// Package browser is test support for driving a real, headless Chromium with
// chromedp: tests that render silo's HTML in a browser, click through it, and
// check what a user would see (escaped tenant names, no stray alert(), no
// console errors), with screenshots kept as CI artifacts.
//
// It is meant for _test.go files of any package:
//
//	ctx := browser.New(t)
//	dialogs := browser.RecordDialogs(t, ctx)
//	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
//		t.Fatal(err)
//	}
//	dialogs.AssertNone(t)
//	browser.Screenshot(t, ctx, "home")
//
// A missing Chromium fails the test instead of skipping it: a skipped browser
// test looks green in CI while it checks nothing.
package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// InstallHint tells how to get a browser; every "not found" error carries it.
const InstallHint = "install Debian's chromium (apt-get install chromium) or run .ci/run"

// Timeout bounds one browser session of New. It is a backstop for a hung page,
// not a performance budget: a normal test needs a few seconds.
const Timeout = 2 * time.Minute

// Window and viewport size of the headless browser, fixed so that
// screenshots and layout dependent assertions do not change with the machine.
const (
	WindowWidth  = 1400
	WindowHeight = 900
)

// candidates are the names Chromium goes by on PATH: Debian, Ubuntu/Fedora,
// and Google's build.
var candidates = []string{"chromium", "chromium-browser", "google-chrome"}

// Find returns the path of the Chromium binary to use: $SILO_CHROMIUM if set
// (a path or a name on PATH), else the first of chromium, chromium-browser and
// google-chrome on PATH. The error carries InstallHint.
func Find() (string, error) {
	if v := os.Getenv("SILO_CHROMIUM"); v != "" {
		// An explicit choice that does not work is an error, not a reason to
		// quietly use another browser.
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("SILO_CHROMIUM=%q: %w; %s", v, err, InstallHint)
		}
		return p, nil
	}
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium on PATH (looked for %s): %s",
		strings.Join(candidates, ", "), InstallHint)
}

// allocatorOptions are the flags for CI: root in a container with no display,
// no GPU and a small /dev/shm.
func allocatorOptions(execPath string) []chromedp.ExecAllocatorOption {
	// chromedp's defaults (Puppeteer's list) already hold most of what CI
	// needs; the ones the tests rely on are repeated here so that they do not
	// depend on chromedp's defaults staying the same.
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		// The setuid/namespace sandbox cannot start as root, nor in most
		// containers. The pages are our own test servers, so the sandbox
		// protects nothing here.
		chromedp.NoSandbox,
		// No GPU in CI; software rendering is also what makes screenshots
		// reproducible.
		chromedp.DisableGPU,
		// Containers give /dev/shm 64 MB by default; Chromium then crashes
		// on large pages. Use /tmp instead.
		chromedp.Flag("disable-dev-shm-usage", true),
		// No update checks, safe-browsing lists or metrics: CI may have no
		// internet, and a test must only talk to its own server.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(WindowWidth, WindowHeight),
	)
}

// New starts a headless Chromium for t and returns a chromedp context with an
// open tab; pass it to chromedp.Do and chromedp.Run. Each call starts its own
// browser with its own temporary profile, so tests may run in parallel.
//
// The session ends after Timeout, or earlier when the test binary's -timeout
// would otherwise fire first, so that the browser is stopped by this package's
// cleanup rather than orphaned by the test binary's panic.
//
// t.Cleanup closes the browser, waits for it to exit, and kills any of its
// processes that outlive it. A missing Chromium is t.Fatal with InstallHint,
// never t.Skip.
func New(t testing.TB) context.Context {
	t.Helper()
	path, err := Find()
	if err != nil {
		t.Fatal(err)
	}

	// Everything the browser writes goes under one directory per browser,
	// which also names all its processes (see leftovers): the profile, and
	// XDG_CONFIG_HOME because Chromium puts its crash database (and starts
	// the crashpad handlers with it) under $XDG_CONFIG_HOME/chromium whatever
	// --user-data-dir says, which would otherwise be the shared ~/.config.
	// t.TempDir removes it after the cleanup below.
	root := t.TempDir()
	opts := append(allocatorOptions(path),
		chromedp.UserDataDir(filepath.Join(root, "profile")),
		chromedp.Env("XDG_CONFIG_HOME="+filepath.Join(root, "config")),
	)

	timeout := Timeout
	if d, ok := deadline(t); ok {
		// Leave room for the cleanup before the test binary panics.
		if left := time.Until(d) - 10*time.Second; left < timeout {
			timeout = max(left, time.Second)
		}
	}
	// Not t.Context(): it is canceled before cleanups run, which would kill
	// the browser instead of closing it.
	base, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	// chromedp logs protocol errors with the log package by default; send them
	// to the test's output, but never after the test ended (t.Logf panics
	// then).
	logs := &testLog{t: t}
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logs.logf))

	t.Cleanup(func() {
		// Close the browser gracefully first, so that it shuts down its own
		// children; a context that already ran out makes this fail, and the
		// cancels below kill it instead.
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && base.Err() == nil {
			t.Logf("browser: closing chromium: %v", err)
		}
		cancel()
		cancelCtx()
		cancelAlloc() // waits for the main process to exit
		cancelTimeout()
		logs.stop()
		// Children (zygote, GPU, renderers) and the daemonized crashpad
		// handlers are not the main process's to wait for; after a
		// graceful close they exit on their own within a moment, after a
		// kill they may not.
		if killed := killLeftovers(root); len(killed) > 0 {
			t.Logf("browser: killed chromium processes that outlived the browser: %v", killed)
		}
		if pids := leftovers(root); len(pids) > 0 {
			t.Errorf("browser: chromium processes left after cleanup: %v", pids)
		}
	})

	// Start the browser and open the tab now, so that a broken install fails
	// here with a clear message rather than in the test's first action.
	start := time.Now()
	// Chromium's --headless is the "new" headless mode since 132: a real
	// browser window with its toolbar, so --window-size=1400,900 leaves the
	// page a viewport of about 1400x757. Pin the viewport itself, so that
	// layout and screenshots see exactly WindowWidth x WindowHeight.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(WindowWidth, WindowHeight)); err != nil {
		t.Fatalf("browser: starting %s: %v", path, err)
	}
	t.Logf("browser: %s started in %v", path, time.Since(start).Round(time.Millisecond))
	return ctx
}

// deadline is t.Deadline for the TB types that have it (*testing.T; not B/F).
func deadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

// Screenshot saves a full-page PNG of the tab of ctx as
// <artifacts>/<test name>-<name>.png and logs the path. The artifacts
// directory is $SILO_ARTIFACTS if set, else artifacts/ at the repository root
// (ignored by git; CI uploads it).
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 means PNG
	if err != nil {
		t.Fatalf("browser: screenshot %q: %v", name, err)
	}
	dir, err := ArtifactsDir()
	if err != nil {
		t.Fatalf("browser: screenshot %q: %v", name, err)
	}
	path := filepath.Join(dir, fileName(t.Name()+"-"+name)+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatalf("browser: screenshot %q: %v", name, err)
	}
	t.Logf("browser: screenshot %s", path)
	return path
}

// ArtifactsDir returns (and creates) the directory for test artifacts:
// $SILO_ARTIFACTS if set, else <repo root>/artifacts.
func ArtifactsDir() (string, error) {
	dir := os.Getenv("SILO_ARTIFACTS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// repoRoot walks up from the working directory (the package directory under
// go test) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; set SILO_ARTIFACTS")
		}
		dir = parent
	}
}

// fileName turns a test name ("TestX/sub case") into a safe file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// leftovers lists the live processes whose command line mentions root, the
// per-browser directory of New: every Chromium process gets --user-data-dir
// under it, and the crashpad handlers --database under it. Zombies have an
// empty command line, so they do not count: they are dead, and whoever
// inherited them (PID 1) reaps them.
func leftovers(root string) []int {
	want := []byte(root + string(filepath.Separator))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil // not Linux: nothing to check
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killLeftovers waits up to two seconds for the processes of root to exit,
// then kills the rest, and returns the ones it killed. A process can fork
// while its parent dies, so it looks until it finds none a few times in a row.
func killLeftovers(root string) []int {
	const pause = 20 * time.Millisecond
	grace := time.Now().Add(2 * time.Second)
	deadline := grace.Add(3 * time.Second)
	var killed []int
	tick := time.NewTicker(pause)
	defer tick.Stop()
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); <-tick.C {
		pids := leftovers(root)
		if len(pids) == 0 {
			quiet++
			continue
		}
		quiet = 0
		if time.Now().Before(grace) {
			continue
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
	}
	return killed
}
