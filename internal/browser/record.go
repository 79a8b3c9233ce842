package browser

import (
	"context"
	"strings"
	"sync"
	"testing"

	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Dialog is a JavaScript dialog (alert, confirm, prompt, beforeunload) that a
// page opened.
type Dialog struct {
	Type    string // "alert", "confirm", "prompt" or "beforeunload"
	Message string
	URL     string // of the frame that opened it
}

// DialogRecorder records the dialogs of one tab and dismisses each. Without a
// handler a headless page stalls at the dialog (and so does the navigation or
// click that caused it), so a test that injects markup should always record.
type DialogRecorder struct {
	mu      sync.Mutex
	dialogs []Dialog
	wg      sync.WaitGroup // dismissals in flight
}

// RecordDialogs starts recording the dialogs of the tab of ctx (from New).
// Call it before the action that may open one. Dialogs are dismissed (the
// "Cancel" answer), so a confirm() never approves anything.
//
// A dialog is recorded before it is dismissed, and the page cannot go on until
// it is dismissed; so once a navigation or click returns, every dialog it
// opened is in Dialogs.
func RecordDialogs(t testing.TB, ctx context.Context) *DialogRecorder {
	t.Helper()
	r := &DialogRecorder{}
	err := chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*page.EventJavascriptDialogOpening)
		if !ok {
			return
		}
		r.mu.Lock()
		r.dialogs = append(r.dialogs, Dialog{Type: string(e.Type), Message: e.Message, URL: e.URL})
		r.mu.Unlock()
		// Listen's func runs on the loop that reads the browser's
		// messages; a command from there would wait for itself.
		r.wg.Go(func() {
			// An error here means the tab or browser is gone (the test
			// ended or timed out); the action waiting on the page reports
			// that better than we could.
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		})
	})
	if err != nil {
		t.Fatalf("browser: recording dialogs: %v", err)
	}
	// Registered after New's cleanup, so it runs before the browser closes.
	t.Cleanup(r.wg.Wait)
	return r
}

// Dialogs returns the dialogs recorded so far, oldest first.
func (r *DialogRecorder) Dialogs() []Dialog {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Dialog(nil), r.dialogs...)
}

// AssertNone fails t (without stopping it) if any dialog was opened: the check
// that injected markup such as <script>alert(1)</script> did not run.
func (r *DialogRecorder) AssertNone(t testing.TB) {
	t.Helper()
	for _, d := range r.Dialogs() {
		t.Errorf("browser: unexpected %s dialog %q from %s", d.Type, d.Message, d.URL)
	}
}

// ConsoleRecorder records the console errors of one tab: console.error and
// failed console.assert calls, uncaught exceptions and rejections, and
// browser log errors (failed resource loads, CSP violations).
type ConsoleRecorder struct {
	mu     sync.Mutex
	errors []string
}

// RecordConsoleErrors starts recording the console errors of the tab of ctx
// (from New). Call it before the action that may log them. It sees the
// messages in order with the browser's replies, so once an action returns,
// every error logged before the action's reply is in Errors.
func RecordConsoleErrors(t testing.TB, ctx context.Context) *ConsoleRecorder {
	t.Helper()
	r := &ConsoleRecorder{}
	// Listen rather than chromedp.Console: Console delivers from another
	// goroutine, so right after an action returns the error may not be
	// recorded yet, and "no errors" would be a race.
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
				return
			}
			msg = "console." + string(e.Type) + ": " + argsText(e.Args)
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg = d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				// The description is the error and its stack; the first
				// line is enough to recognise it.
				first, _, _ := strings.Cut(d.Exception.Description, "\n")
				msg += " " + first
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level != cdplog.EntryLevelError {
				return
			}
			msg = string(e.Entry.Source) + ": " + e.Entry.Text
			if e.Entry.URL != "" {
				msg += " (" + e.Entry.URL + ")"
			}
		default:
			return
		}
		r.mu.Lock()
		r.errors = append(r.errors, msg)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("browser: recording console errors: %v", err)
	}
	return r
}

// Errors returns the console errors recorded so far, oldest first.
func (r *ConsoleRecorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// AssertNone fails t (without stopping it) if any console error was recorded.
func (r *ConsoleRecorder) AssertNone(t testing.TB) {
	t.Helper()
	for _, e := range r.Errors() {
		t.Errorf("browser: console error: %s", e)
	}
}

// argsText renders console arguments roughly as DevTools does: strings as
// they are, other values by their description.
func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		var s string
		if a.Type == runtime.RemoteObjectTypeString && jsonv2.Unmarshal(a.Value, &s) == nil {
			parts = append(parts, s)
			continue
		}
		switch {
		case a.Description != "":
			parts = append(parts, a.Description)
		case a.UnserializableValue != "":
			parts = append(parts, string(a.UnserializableValue))
		default:
			parts = append(parts, string(a.Value))
		}
	}
	return strings.Join(parts, " ")
}

// testLog forwards chromedp's error log to the test until stop, after which
// t.Logf would panic.
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}
