package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/silo-saas/silo/internal/api"
)

// cookieName holds the operator's token. The cookie is the token itself,
// verified on every request, so the console keeps no sessions: expiry and
// revocation are the token's (a Lambda has no memory between requests).
const cookieName = "silo_console"

// maxTokenLen bounds what a login form or cookie may carry.
const maxTokenLen = 8 << 10

// partialHeader asks for the main content only (the auto-refresh script).
const partialHeader = "X-Console-Partial"

// errNoSession means the request carries no token.
var errNoSession = errors.New("no session")

// authenticate verifies the session cookie.
func (c *Console) authenticate(r *http.Request) (api.Principal, error) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return api.Principal{}, errNoSession
	}
	if len(ck.Value) > maxTokenLen {
		return api.Principal{}, errors.New("token too long")
	}
	p, err := c.d.Verifier.Verify(r.Context(), ck.Value)
	if err != nil {
		return api.Principal{}, err
	}
	if !p.Role.Allows(api.RoleViewer) {
		return api.Principal{}, errors.New("role may not read the console")
	}
	return p, nil
}

// page wraps a page handler with authentication and rendering. A request
// without a valid session goes to the login form (the auto-refresh script
// gets a 401 instead, and reloads the page, which then redirects).
func (c *Console) page(fn func(w http.ResponseWriter, r *http.Request, v *view) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		partial := r.Header.Get(partialHeader) == "1"
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Vary", partialHeader+", Cookie")
		p, err := c.authenticate(r)
		if err != nil {
			reason := ""
			switch {
			case errors.Is(err, api.ErrTokenExpired):
				reason = "expired"
			case errors.Is(err, errNoSession):
			default:
				reason = "invalid"
				c.log.InfoContext(r.Context(), "console token refused", "error", err)
			}
			if reason != "" {
				c.clearCookie(w)
			}
			if partial {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			q := url.Values{"next": {r.URL.RequestURI()}}
			if reason != "" {
				q.Set("reason", reason)
			}
			http.Redirect(w, r, c.o.Prefix+"/login?"+q.Encode(), http.StatusSeeOther)
			return
		}
		v := c.newView(r, &p)
		v.Partial = partial
		if err := fn(w, r, v); err != nil {
			c.renderError(w, r, v, err)
			return
		}
		c.render(w, r, http.StatusOK, v)
	})
}

// loginReasons are the messages a redirect to the login form may ask for.
var loginReasons = map[string]string{
	"expired": "Your token has expired. Paste a new one to continue.",
	"invalid": "Your token is no longer valid. Paste a new one to continue.",
	"out":     "You are signed out.",
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, nil)
	q := r.URL.Query()
	var problems []string
	for k, vals := range q {
		switch {
		case k != "next" && k != "reason":
			problems = append(problems, "unknown parameter "+quote(k))
		case len(vals) > 1:
			problems = append(problems, "parameter "+quote(k)+" given more than once")
		}
	}
	if msg, ok := loginReasons[q.Get("reason")]; ok {
		v.Notice = msg
	} else if q.Get("reason") != "" {
		problems = append(problems, "unknown reason "+quote(q.Get("reason")))
	}
	if len(problems) > 0 {
		c.renderError(w, r, v, errBadRequest(problems...))
		return
	}
	c.renderLogin(w, r, v, http.StatusOK, c.safeNext(q.Get("next")))
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, v *view, status int, next string) {
	w.Header().Set("Cache-Control", "no-store")
	v.Title = "Sign in"
	v.Page = "login"
	v.Data = struct{ Next string }{next}
	c.render(w, r, status, v)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, nil)
	// SameSite=Strict keeps the cookie from cross-site requests; this
	// refuses cross-site logins too (an attacker signing you in as them).
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		c.renderError(w, r, v, &httpError{status: http.StatusForbidden, msg: "Sign in from the console's own page."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxTokenLen)
	if err := r.ParseForm(); err != nil {
		c.renderError(w, r, v, errBadRequest("the form could not be read"))
		return
	}
	next := c.safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	tok = strings.TrimPrefix(tok, "Bearer ")
	if tok == "" {
		v.Error = "Paste an operator token."
		c.renderLogin(w, r, v, http.StatusBadRequest, next)
		return
	}
	p, err := c.d.Verifier.Verify(r.Context(), tok)
	switch {
	case errors.Is(err, api.ErrTokenExpired):
		v.Error = "That token has expired."
	case err != nil:
		c.log.InfoContext(r.Context(), "console login refused", "error", err)
		v.Error = "That token is not valid."
	case !p.Role.Allows(api.RoleViewer):
		v.Error = "That token's role may not read the console."
	}
	if v.Error != "" {
		c.renderLogin(w, r, v, http.StatusUnauthorized, next)
		return
	}
	c.log.InfoContext(r.Context(), "console login", "subject", p.Subject, "role", string(p.Role))
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: tok, Path: c.cookiePath(),
		HttpOnly: true, Secure: c.o.SecureCookie, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c.clearCookie(w)
	http.Redirect(w, r, c.o.Prefix+"/login?reason=out", http.StatusSeeOther)
}

func (c *Console) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: c.cookiePath(), MaxAge: -1,
		HttpOnly: true, Secure: c.o.SecureCookie, SameSite: http.SameSiteStrictMode,
	})
}

func (c *Console) cookiePath() string {
	if c.o.Prefix == "" {
		return "/"
	}
	return c.o.Prefix + "/"
}

// safeNext returns where to go after login: next if it is a path inside
// the console, else the overview. Anything that could leave the site
// (//host, /\host, a scheme, a backslash browsers read as a slash) is refused.
func (c *Console) safeNext(next string) string {
	home := c.o.Prefix + "/"
	if next == "" || len(next) > 2048 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return home
	}
	if c.o.Prefix != "" && u.Path != c.o.Prefix && !strings.HasPrefix(u.Path, c.o.Prefix+"/") {
		return home
	}
	if strings.HasPrefix(u.Path, c.o.Prefix+"/login") || strings.HasPrefix(u.Path, c.o.Prefix+"/logout") {
		return home
	}
	return u.RequestURI()
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}
