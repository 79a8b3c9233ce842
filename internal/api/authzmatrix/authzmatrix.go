// Package authzmatrix holds the API to the authorization matrix of
// docs/security.md: it parses the table (route × caller, allow or deny)
// and sends every route as every caller to an API, wherever it runs: an
// http.Handler in-process (internal/api's TestAuthorizationMatrix) or a
// base URL (the API Lambda behind its API Gateway front door, under the
// deployed-mode harness). It is test support: only tests import it.
//
// It does not import internal/api (whose own tests use it); what it needs
// to know of the API's answers, it reads from their JSON.
package authzmatrix

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The callers of the matrix, as its header names them.
const (
	Anonymous = "anonymous"
	EndUser   = "end-user token"
	Status    = "status token"
	Viewer    = "viewer"
	Operator  = "operator"
	Admin     = "admin"
)

// Callers are every caller, in the matrix's order.
var Callers = []string{Anonymous, EndUser, Status, Viewer, Operator, Admin}

// Row is one route of the matrix: "POST /v1/tenants/{id}/suspend", and
// whether each caller is allowed.
type Row struct {
	Endpoint string
	Allowed  map[string]bool
}

// Parse reads the table under "## Authorization matrix": its header names
// the callers, each row a route and an allow/deny per caller.
func Parse(doc []byte) ([]Row, error) {
	sc := bufio.NewScanner(bytes.NewReader(doc))
	in, header := false, []string(nil)
	var rows []Row
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			if in && header != nil {
				return rows, nil
			}
			in = line == "## Authorization matrix"
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			if header != nil {
				return rows, nil // the table ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		switch {
		case header == nil:
			header = cells
			if header[0] != "Route" {
				return nil, fmt.Errorf("line %d: the matrix's first column must be Route, got %q", n, header[0])
			}
			for _, c := range header[1:] {
				if !slices.Contains(Callers, c) {
					return nil, fmt.Errorf("line %d: unknown caller column %q (callers: %q)", n, c, Callers)
				}
			}
			for _, c := range Callers {
				if !slices.Contains(header[1:], c) {
					return nil, fmt.Errorf("line %d: no column for caller %q", n, c)
				}
			}
			continue
		case strings.Trim(cells[0], "-: ") == "":
			continue // the separator row
		}
		if len(cells) != len(header) {
			return nil, fmt.Errorf("line %d: %d cells, the header has %d", n, len(cells), len(header))
		}
		method, path, ok := strings.Cut(cells[0], " ")
		if !ok || method != strings.ToUpper(method) || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("line %d: route %q is not \"METHOD /path\"", n, cells[0])
		}
		if seen[cells[0]] {
			return nil, fmt.Errorf("line %d: route %s twice", n, cells[0])
		}
		seen[cells[0]] = true
		row := Row{Endpoint: cells[0], Allowed: map[string]bool{}}
		for i, c := range cells[1:] {
			switch c {
			case "allow":
				row.Allowed[header[i+1]] = true
			case "deny":
				row.Allowed[header[i+1]] = false
			default:
				return nil, fmt.Errorf("line %d: cell %q of %s is neither allow nor deny", n, c, header[i+1])
			}
		}
		rows = append(rows, row)
	}
	if header == nil {
		return nil, fmt.Errorf("no table under \"## Authorization matrix\"")
	}
	return rows, sc.Err()
}

// Request is one request of the matrix; Response the API's answer.
type Request struct {
	Method, Path, Body string
	Header             map[string]string
}

type Response struct {
	Status int
	Body   []byte
}

// Extra is what a route needs besides its path and a credential to get
// past its input checks: a body, a query (without "?"; {id} is filled as
// in the path).
type Extra struct {
	Body, Query string
}

// SignupBody is a valid signup.
const SignupBody = `{"name":"Acme Corp","email":"Ops@Acme.example","tier":"standard","region":"us-east-1"}`

// Extras are the bodies and queries of the routes that need one. A new
// route that needs one adds an entry; one that does not needs none (an
// input error still shows the handler was reached).
func Extras() map[string]Extra {
	zip := base64.StdEncoding.EncodeToString(BootstrapZip())
	reason := Extra{Body: `{"reason":"authorization matrix"}`}
	return map[string]Extra{
		"POST /v1/signup":                    {Body: SignupBody},
		"GET /v1/tenants":                    {Query: "state=requested"},
		"GET /v1/resolve":                    {Query: "tenant={id}"},
		"POST /v1/tenants/{id}/suspend":      reason,
		"POST /v1/tenants/{id}/resume":       reason,
		"POST /v1/tenants/{id}/retry":        reason,
		"POST /v1/tenants/{id}/redeploy":     reason,
		"POST /v1/tenants/{id}/decommission": reason,
		"POST /v1/previews":                  {Body: `{"repo":"acme/web","pr":1,"artifact_zip":"` + zip + `","ttl":"2h"}`},
		"POST /v1/previews/{id}/extend":      {Body: `{"by":"1h"}`},
		"POST /v1/releases":                  {Body: `{"artifact_zip":"` + zip + `"}`},
		"POST /v1/rollouts":                  {Body: `{"release":"rel-1","plan":"canary:1,100%"}`},
	}
}

// BootstrapZip is a code package holding an executable named bootstrap,
// as previews and releases take.
func BootstrapZip() []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, _ := zw.CreateHeader(h)
	_, _ = w.Write([]byte("#!/bin/sh\n"))
	_ = zw.Close()
	return buf.Bytes()
}

// The ids PathFor fills in for a preview's and a rollout's {id}.
const (
	PreviewID = "pr1-web-abcdef"
	RolloutID = "ro-1"
)

// PathFor fills a pattern's parameters: a preview's or a rollout's {id}
// with PreviewID or RolloutID, any other with the tenant's id.
func PathFor(pattern, tenant string) string {
	id := tenant
	switch {
	case strings.HasPrefix(pattern, "/v1/previews/"):
		id = PreviewID
	case strings.HasPrefix(pattern, "/v1/rollouts/"):
		id = RolloutID
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(pattern, '{')
		end := strings.IndexByte(pattern, '}')
		if open < 0 || end < open {
			b.WriteString(pattern)
			return b.String()
		}
		b.WriteString(pattern[:open])
		b.WriteString(id)
		pattern = pattern[end+1:]
	}
}

// Deviation is what an API answers a route instead of the matrix, where
// the way it is deployed says so.
type Deviation int

const (
	// NotWired: the API is built without the route's service, so every
	// caller gets its 404 ("... are not enabled on this API"), not the
	// routing 404.
	NotWired Deviation = iota + 1
	// NotConfigured: the callers the matrix allows get 501
	// not_configured (the service exists but does not run here); those it
	// denies are denied.
	NotConfigured
)

// Target is an API to hold to the matrix.
type Target struct {
	// Do sends one request to the API.
	Do func(t *testing.T, r Request) Response
	// Tokens are the callers' bearer tokens (Anonymous has none); the
	// status token is Tenant's.
	Tokens map[string]string
	// Tenant is the tenant the routes name; Other another tenant, whose
	// status Tenant's status token must not open.
	Tenant, Other string
	// IdempotencyKey returns a key for each signup the matrix sends.
	IdempotencyKey func() string
	// RoutingMiss is the error code and message of the API's routing 404
	// (no route matched), told apart from a handler's 404.
	RoutingMiss [2]string
	// Deviations are the routes where this API answers otherwise, and
	// how; each must answer exactly so (a route that starts answering as
	// the matrix says fails until its deviation is removed).
	Deviations map[string]Deviation
}

// Check sends every route of rows as every caller to target: a deny must
// answer 401 or 403 (401 when anonymous), an allow must reach the route's
// handler (not 401, 403, 405, the routing 404 or a 5xx; a handler's 404
// of a missing thing or a 409 of a refused transition count as reached).
// Then it checks that Tenant's status token does not open Other.
func Check(t *testing.T, rows []Row, target Target) {
	t.Helper()
	extras := Extras()
	for _, row := range rows {
		method, pattern, _ := strings.Cut(row.Endpoint, " ")
		x := extras[row.Endpoint]
		path := PathFor(pattern, target.Tenant)
		if x.Query != "" {
			path += "?" + strings.ReplaceAll(x.Query, "{id}", target.Tenant)
		}
		for _, caller := range Callers {
			header := map[string]string{"Content-Type": "application/json", "Idempotency-Key": target.IdempotencyKey()}
			if tok := target.Tokens[caller]; tok != "" && caller != Anonymous {
				header["Authorization"] = "Bearer " + tok
			}
			r := target.Do(t, Request{Method: method, Path: path, Body: x.Body, Header: header})
			what := fmt.Sprintf("%s %s as %s", method, path, caller)
			switch target.Deviations[row.Endpoint] {
			case NotWired:
				checkNotWired(t, what, r, target.RoutingMiss)
			case NotConfigured:
				if row.Allowed[caller] {
					checkNotConfigured(t, what, r)
				} else {
					checkDenied(t, what, r, caller == Anonymous)
				}
			default:
				if row.Allowed[caller] {
					checkReached(t, what, r, target.RoutingMiss)
				} else {
					checkDenied(t, what, r, caller == Anonymous)
				}
			}
		}
	}
	r := target.Do(t, Request{Method: "GET", Path: "/v1/tenants/" + target.Other, Header: map[string]string{"Authorization": "Bearer " + target.Tokens[Status]}})
	checkDenied(t, "GET another tenant's status with a status token", r, false)
}

// errorBody is the API's error answer: {"error": {"code", "message"}}.
type errorBody struct {
	Error struct{ Code, Message string } `json:"error"`
}

func decodeError(r Response) (errorBody, bool) {
	var b errorBody
	return b, json.Unmarshal(r.Body, &b) == nil && b.Error.Code != ""
}

func isRoutingMiss(r Response, miss [2]string) bool {
	b, ok := decodeError(r)
	return ok && r.Status == http.StatusNotFound && b.Error.Code == miss[0] && b.Error.Message == miss[1]
}

// checkReached fails unless r is an answer of the route's handler.
func checkReached(t *testing.T, what string, r Response, miss [2]string) {
	t.Helper()
	switch {
	case r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden || r.Status == http.StatusMethodNotAllowed:
		t.Errorf("%s: %d %s, but the matrix allows it", what, r.Status, r.Body)
	case r.Status >= 500:
		t.Errorf("%s: %d %s: an allowed call must reach its handler and not fail", what, r.Status, r.Body)
	case isRoutingMiss(r, miss):
		t.Errorf("%s: the routing 404 (%s): no route serves it", what, r.Body)
	}
}

// checkDenied fails unless r refuses the caller: 401 or 403, and 401 when
// anonymous.
func checkDenied(t *testing.T, what string, r Response, anonymous bool) {
	t.Helper()
	switch {
	case anonymous && r.Status != http.StatusUnauthorized:
		t.Errorf("%s: %d %s, want 401 (the matrix denies it)", what, r.Status, r.Body)
	case r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden:
		t.Errorf("%s: %d %s, want 401 or 403 (the matrix denies it)", what, r.Status, r.Body)
	}
}

// checkNotWired fails unless r is the route's own 404 of a service the
// API was built without.
func checkNotWired(t *testing.T, what string, r Response, miss [2]string) {
	t.Helper()
	b, ok := decodeError(r)
	if r.Status != http.StatusNotFound || !ok || isRoutingMiss(r, miss) || !strings.Contains(b.Error.Message, "not enabled") {
		t.Errorf("%s: %d %s, want the 404 of a route this API does not wire (listed as such: remove it from the deviations once it is wired)", what, r.Status, r.Body)
	}
}

// checkNotConfigured fails unless r is 501 not_configured.
func checkNotConfigured(t *testing.T, what string, r Response) {
	t.Helper()
	b, ok := decodeError(r)
	if r.Status != http.StatusNotImplemented || !ok || b.Error.Code != "not_configured" {
		t.Errorf("%s: %d %s, want 501 not_configured", what, r.Status, r.Body)
	}
}

// HTTP returns a Target.Do that sends requests to base (an API's base URL,
// to which the matrix's paths are appended) with client.
func HTTP(base string, client *http.Client) func(t *testing.T, r Request) Response {
	return func(t *testing.T, r Request) Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), r.Method, base+r.Path, strings.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range r.Header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Method, r.Path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Method, r.Path, err)
		}
		return Response{Status: resp.StatusCode, Body: b}
	}
}
