package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/registry"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// view is what every page template gets: the layout's data and the page's.
type view struct {
	Title  string
	Page   string // template set to render
	Nav    string // highlighted nav entry
	Prefix string
	// Principal is the signed-in operator; nil on the login page.
	Principal *api.Principal
	// Partial renders the main content only, for the auto-refresh script.
	Partial      bool
	AutoRefresh  int // seconds
	AssetVersion string
	Notice       string
	Error        string
	// SnapshotAt is when the fleet data shown was read; zero if none.
	SnapshotAt time.Time
	Now        time.Time
	Data       any
}

func (c *Console) newView(r *http.Request, p *api.Principal) *view {
	return &view{Prefix: c.o.Prefix, Principal: p, AutoRefresh: int(c.o.AutoRefresh / time.Second),
		AssetVersion: c.assetVersion, Now: c.o.Now()}
}

// pages are the template sets: each is the layout plus one page file.
var pages = []string{"overview", "tenants", "tenant", "previews", "rollouts", "isolation", "login", "error"}

func (c *Console) parseTemplates() error {
	c.tmpl = map[string]*template.Template{}
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return fmt.Errorf("console: parse %s template: %w", p, err)
		}
		c.tmpl[p] = t
	}
	return nil
}

// render writes v as a whole page, or only its content for a partial
// request. It renders into a buffer first, so a template failure becomes a
// clean error page rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, v *view) {
	t := c.tmpl[v.Page]
	var buf bytes.Buffer
	name := "layout.html"
	if v.Partial {
		name = "content"
	}
	if err := t.ExecuteTemplate(&buf, name, v); err != nil {
		id := requestID()
		c.log.ErrorContext(r.Context(), "render console page", "page", v.Page, "error", err, "request_id", id)
		if v.Page == "error" {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		c.renderError(w, r, v, &httpError{status: http.StatusInternalServerError, id: id})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows err as a page. Anything other than an *httpError is
// internal: logged with an id, and shown as that id only.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, v *view, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, id: requestID()}
		c.log.ErrorContext(r.Context(), "console page failed", "path", r.URL.Path, "error", err, "request_id", he.id)
	}
	if he.status >= 500 && he.msg == "" {
		he.msg = "Something went wrong on our side. It has been logged."
	}
	if v == nil {
		v = c.newView(r, nil)
	}
	v.Page = "error"
	v.Title = http.StatusText(he.status)
	v.Data = he
	if he.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	c.render(w, r, he.status, v)
}

// Status is an error page's status code (for the template).
func (e *httpError) Status() int { return e.status }

// Message is what the operator is told.
func (e *httpError) Message() string { return e.msg }

// Problems lists the bad inputs of a 400.
func (e *httpError) Problems() []string { return e.problems }

// ID is the log correlation id of a 5xx.
func (e *httpError) ID() string { return e.id }

var funcs = template.FuncMap{
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago":  ago,
	"left": left,
	"span": span,
	// elapsed is how long from t to now, without "ago": "In state 12m".
	"elapsed": func(now, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return span(max(now.Sub(t), 0))
	},
	"short": shortBuild,
	"pct": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return fmt.Sprintf("%.2f%%", *f*100)
	},
	"num": func(n int) string { return groupDigits(strconv.Itoa(n)) },
	// webURL returns the endpoint for a link only when it is http(s): a
	// tenant-supplied javascript: URL must never become a link.
	"webURL": func(s string) string {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ""
		}
		return u.String()
	},
	"health": func(h *registry.Health) string {
		if h == nil || h.Status == registry.HealthUnknown {
			return "unknown"
		}
		return string(h.Status)
	},
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
}

// ago says how long before now t was, for an operator: "3h 12m ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	if d < 0 {
		// Clocks differ between hosts; a time slightly ahead is "now".
		return "just now"
	}
	return span(d) + " ago"
}

// left says how long from now until t: "3h 12m", or "expired" once past.
func left(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired"
	}
	return span(d)
}

// span is a duration for an operator, to two units at most: "45s",
// "12m", "3h 12m", "4d 2h".
func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func groupDigits(s string) string {
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	b.WriteString(s[:pre])
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// money formats an amount of a currency: "$1,234.56", or "12.00 EUR".
func money(amount float64, unit string) string {
	cents := int64(math.Round(amount * 100))
	neg := cents < 0
	if neg {
		cents = -cents
	}
	s := groupDigits(strconv.FormatInt(cents/100, 10)) + fmt.Sprintf(".%02d", cents%100)
	if unit == "USD" || unit == "" {
		s = "$" + s
	} else {
		s += " " + unit
	}
	if neg {
		s = "-" + s
	}
	return s
}

// assetVersion hashes the embedded assets.
func assetVersion() string {
	h := sha256.New()
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		h.Write([]byte(p))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// serveStatic serves an embedded asset. With the current version in ?v= it
// may be cached for good (a new build changes the URL); without, briefly.
func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := staticFS.ReadFile(path.Join("static", path.Clean("/" + name)[1:]))
	if err != nil || name == "" {
		c.renderError(w, r, nil, errNotFound("There is no such file."))
		return
	}
	if r.URL.Query().Get("v") == c.assetVersion {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	sum := sha256.Sum256(b)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
