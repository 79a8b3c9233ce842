package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/api"
)

func TestLoginFlow(t *testing.T) {
	f := newFixture(t, fleetTenants(30, time.Now()), nil)
	h := f.c

	// No cookie: to the login form, remembering where the operator was going.
	r := do(t, h, "GET", "/tenants?state=ACTIVE", "", nil, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2Ftenants%3Fstate%3DACTIVE" {
		t.Fatalf("no cookie: %d %q", r.status, r.header.Get("Location"))
	}
	// The auto-refresh script gets a 401, not a login page to swap in.
	if r := do(t, h, "GET", "/", "", nil, map[string]string{partialHeader: "1"}); r.status != http.StatusUnauthorized || r.body != "" {
		t.Fatalf("partial without cookie: %d %q", r.status, r.body)
	}
	r = do(t, h, "GET", "/login?next=%2Ftenants%3Fstate%3DACTIVE", "", nil, nil)
	if r.status != 200 || !strings.Contains(r.body, `name="token"`) || !strings.Contains(r.body, `value="/tenants?state=ACTIVE"`) {
		t.Fatalf("login form: %d\n%s", r.status, r.body)
	}

	// A bad token: the form again, with an error, and no cookie.
	r = do(t, h, "POST", "/login", "", url.Values{"token": {"not-a-token"}, "next": {"/tenants"}}, nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "That token is not valid.") || r.header.Get("Set-Cookie") != "" {
		t.Fatalf("bad token: %d %q\n%s", r.status, r.header.Get("Set-Cookie"), r.body)
	}
	expired := f.token(t, "old", api.RoleAdmin, -time.Minute)
	r = do(t, h, "POST", "/login", "", url.Values{"token": {expired}}, nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "That token has expired.") {
		t.Fatalf("expired token at login: %d\n%s", r.status, r.body)
	}
	if r := do(t, h, "POST", "/login", "", url.Values{"token": {f.viewer}}, map[string]string{"Origin": "https://evil.example"}); r.status != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", r.status)
	}

	// A viewer token: a cookie, and back to where the operator was going.
	r = do(t, h, "POST", "/login", "", url.Values{"token": {f.viewer}, "next": {"/tenants?state=ACTIVE"}}, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/tenants?state=ACTIVE" {
		t.Fatalf("good token: %d %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	ck := (&http.Response{Header: r.header}).Cookies()
	if len(ck) != 1 || ck[0].Name != cookieName || ck[0].Value != f.viewer || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Secure || ck[0].Path != "/" {
		t.Fatalf("cookie: %+v", ck)
	}
	for _, p := range []string{"/", "/tenants?state=ACTIVE", "/tenants/t-00001", "/previews", "/rollouts", "/isolation"} {
		r := do(t, h, "GET", p, ck[0].Value, nil, nil)
		if r.status != 200 || !strings.Contains(r.body, `<span class="subject">vic</span>`) || !strings.Contains(r.body, `>viewer</span>`) {
			t.Errorf("GET %s as viewer: %d\n%s", p, r.status, r.body)
		}
	}

	// Open redirects are refused: next must be a path of the console.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/login", "evil"} {
		r := do(t, h, "POST", "/login", "", url.Values{"token": {f.viewer}, "next": {next}}, nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Errorf("next %q: %d %q", next, r.status, r.header.Get("Location"))
		}
	}

	// An expired cookie: back to login with a message, cookie cleared.
	r = do(t, h, "GET", "/tenants", expired, nil, nil)
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.Contains(loc, "reason=expired") || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("expired cookie: %d %q %q", r.status, loc, r.header.Get("Set-Cookie"))
	}
	if r := do(t, h, "GET", loc, "", nil, nil); r.status != 200 || !strings.Contains(r.body, "Your token has expired") {
		t.Fatalf("login after expiry: %d\n%s", r.status, r.body)
	}

	// Logout clears the cookie.
	r = do(t, h, "POST", "/logout", f.viewer, nil, nil)
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), cookieName+"=;") || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if r := do(t, h, "GET", r.header.Get("Location"), "", nil, nil); r.status != 200 || !strings.Contains(r.body, "You are signed out.") {
		t.Fatalf("after logout: %d", r.status)
	}
}

func TestPrefixAndSecureCookie(t *testing.T) {
	f := newFixture(t, fleetTenants(5, time.Now()), func(_ *fixture, _ *Deps, o *Options) {
		o.Prefix = "/console"
		o.SecureCookie = true
	})
	r := do(t, f.c, "GET", "/console/tenants", "", nil, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/login?next=%2Fconsole%2Ftenants" {
		t.Fatalf("redirect: %d %q", r.status, r.header.Get("Location"))
	}
	r = do(t, f.c, "POST", "/console/login", "", url.Values{"token": {f.viewer}, "next": {"/elsewhere"}}, nil)
	ck := (&http.Response{Header: r.header}).Cookies()
	if r.header.Get("Location") != "/console/" || len(ck) != 1 || !ck[0].Secure || ck[0].Path != "/console/" {
		t.Fatalf("login: %q %+v", r.header.Get("Location"), ck)
	}
	body := f.mustGet(t, "/console/")
	for _, want := range []string{`href="/console/tenants"`, `/console/static/console.css?v=`, `action="/console/logout"`} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	if r := f.get(t, "/console/static/console.js"); r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), "javascript") {
		t.Errorf("static under prefix: %d %q", r.status, r.header.Get("Content-Type"))
	}
}
