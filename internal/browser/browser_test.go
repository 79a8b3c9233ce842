package browser

import (
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// hostile is a tenant name a customer could pick; rendered unescaped it runs.
const hostile = `<script>alert(1)</script>`

var pages = template.Must(template.New("").Parse(`
{{define "form"}}<!doctype html><title>form</title>
<form method="post" action="/greet">
  <label>Tenant <input id="name" name="name"></label>
  <button id="save" type="submit">Save</button>
</form>{{end}}

{{define "greet"}}<!doctype html><title>saved</title>
<p id="greeting">Saved tenant {{.}}</p>{{end}}

{{define "tenant"}}<!doctype html><title>tenant</title>
<h1 id="tenant">{{.}}</h1>{{end}}
`))

// server serves the pages the test drives: html/template escapes the tenant
// name, /alert and /console misbehave on purpose.
func server(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	render := func(w http.ResponseWriter, name string, data any) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pages.ExecuteTemplate(w, name, data); err != nil {
			t.Errorf("render %s: %v", name, err)
		}
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { render(w, "form", nil) })
	mux.HandleFunc("POST /greet", func(w http.ResponseWriter, r *http.Request) {
		render(w, "greet", r.FormValue("name"))
	})
	mux.HandleFunc("GET /tenant", func(w http.ResponseWriter, r *http.Request) { render(w, "tenant", hostile) })
	mux.HandleFunc("GET /alert", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>alert</title><p id="after">loaded</p><script>alert("on purpose")</script>`)
	})
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>console</title><p>console</p>
<script>console.error("boom", 42)</script><script>throw new Error("kaboom")</script>`)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		// An empty icon, so that the 404 the browser would log is not a
		// console error on every page.
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestBrowser drives the pages end to end: it proves chromium, chromedp and
// the recorders work on this machine.
func TestBrowser(t *testing.T) {
	srv := server(t)
	ctx := New(t)
	dialogs := RecordDialogs(t, ctx)
	console := RecordConsoleErrors(t, ctx)

	t.Run("form submit escapes the hostile name", func(t *testing.T) {
		if err := chromedp.Do(ctx,
			chromedp.Navigate(srv.URL+"/"),
			chromedp.SendKeys(chromedp.ID("name"), hostile),
			chromedp.Click(chromedp.ID("save")),
			chromedp.WaitVisible(chromedp.ID("greeting")),
		); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("greeting")))
		if err != nil {
			t.Fatal(err)
		}
		// The markup shows as text: escaped, not parsed.
		if want := "Saved tenant " + hostile; got != want {
			t.Errorf("greeting = %q, want %q", got, want)
		}
		dialogs.AssertNone(t)
		Screenshot(t, ctx, "greet")
	})

	t.Run("escaped tenant page opens no dialog", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/tenant")); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("tenant")))
		if err != nil {
			t.Fatal(err)
		}
		if got != hostile {
			t.Errorf("tenant = %q, want %q", got, hostile)
		}
		dialogs.AssertNone(t)
		console.AssertNone(t)
		Screenshot(t, ctx, "tenant")
	})

	t.Run("alert page is caught and dismissed", func(t *testing.T) {
		// Navigate returns only after the load event, which the alert
		// blocks until the recorder dismisses it.
		if err := chromedp.Do(ctx,
			chromedp.Navigate(srv.URL+"/alert"),
			chromedp.WaitVisible(chromedp.ID("after")),
		); err != nil {
			t.Fatal(err)
		}
		got := dialogs.Dialogs()
		if len(got) != 1 || got[0].Type != "alert" || got[0].Message != "on purpose" {
			t.Errorf("dialogs = %+v, want one alert %q", got, "on purpose")
		}
	})

	t.Run("console errors are recorded", func(t *testing.T) {
		before := len(console.Errors())
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/console")); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(console.Errors()[before:], "\n")
		for _, want := range []string{"console.error: boom 42", "Uncaught Error: kaboom"} {
			if !strings.Contains(got, want) {
				t.Errorf("console errors:\n%s\nwant one containing %q", got, want)
			}
		}
	})
}

// TestNoLeftoverProcesses checks with pgrep that New's cleanup leaves no
// chromium process behind: not the browser, not its zygote, GPU, network or
// renderer children, not the crashpad handlers.
func TestNoLeftoverProcesses(t *testing.T) {
	if _, err := exec.LookPath("pgrep"); err != nil {
		t.Fatalf("pgrep: %v (apt-get install procps)", err)
	}
	var root string
	t.Run("browser", func(t *testing.T) {
		ctx := New(t)
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", chromedp.FromContext(ctx).Browser.Process().Pid))
		if err != nil {
			t.Fatal(err)
		}
		for arg := range strings.SplitSeq(string(cmdline), "\x00") {
			if dir, ok := strings.CutPrefix(arg, "--user-data-dir="); ok {
				root = filepath.Dir(dir)
			}
		}
		if root == "" {
			t.Fatalf("no --user-data-dir on the browser's command line %q", cmdline)
		}
		out := pgrep(t, root)
		var crashpad bool
		for _, p := range out {
			crashpad = crashpad || strings.Contains(p, "crashpad")
		}
		// At least the browser, a zygote and a renderer; if Chromium ever
		// stops starting crashpad that is fine, so it is only logged.
		if len(out) < 3 {
			t.Fatalf("pgrep finds %d processes under %s while the browser runs:\n%s", len(out), root, strings.Join(out, "\n"))
		}
		t.Logf("%d chromium processes while running (crashpad handler among them: %v)", len(out), crashpad)
	})
	// The subtest's cleanup has run: every process must be gone.
	if out := pgrep(t, root); len(out) > 0 {
		t.Errorf("chromium processes left after cleanup:\n%s", strings.Join(out, "\n"))
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("browser directory %s not removed: %v", root, err)
	}
}

// pgrep lists the processes whose command line mentions root, New's
// per-browser directory. Matching it rather than "chromium" keeps other
// packages' browser tests, which go test may run at the same time, out of the
// picture, and it also matches the crashpad handlers (chrome_crashpad_handler).
func pgrep(t *testing.T, root string) []string {
	out, err := exec.Command("pgrep", "-a", "-f", "--", regexp.QuoteMeta(root+"/")).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return nil // no match
		}
		t.Fatalf("pgrep: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestFindOverride(t *testing.T) {
	t.Setenv("SILO_CHROMIUM", filepath.Join(t.TempDir(), "no-such-chromium"))
	_, err := Find()
	if err == nil || !strings.Contains(err.Error(), InstallHint) {
		t.Fatalf("Find() error = %v, want one with the install hint", err)
	}

	t.Setenv("SILO_CHROMIUM", "")
	t.Setenv("PATH", t.TempDir())
	_, err = Find()
	if err == nil || !strings.Contains(err.Error(), InstallHint) {
		t.Fatalf("Find() with empty PATH error = %v, want one with the install hint", err)
	}
}

// fatalTB catches Fatal so that a test can check that New fails rather than
// skips when there is no browser.
type fatalTB struct {
	testing.TB
	fatal, skipped string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) SkipNow() { f.Skip("SkipNow") }

func TestNewWithoutChromiumFails(t *testing.T) {
	t.Setenv("SILO_CHROMIUM", "")
	t.Setenv("PATH", t.TempDir())
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(f)
		t.Error("New returned without a browser")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("New hung without a browser")
	}
	if f.skipped != "" {
		t.Errorf("New skipped (%q); it must fail", f.skipped)
	}
	if !strings.Contains(f.fatal, InstallHint) {
		t.Errorf("New fatal = %q, want the install hint", f.fatal)
	}
}
