package authzmatrix

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const header = "| Route | anonymous | end-user token | status token | viewer | operator | admin |\n|---|---|---|---|---|---|---|\n"

// TestParse: the table under its heading becomes rows; a table that is
// not one the test can trust is refused, saying where.
func TestParse(t *testing.T) {
	doc := "# Security\n\n## Authorization matrix\n\nWho may call.\n\n" + header +
		"| `POST /v1/signup` | allow | allow | allow | allow | allow | allow |\n" +
		"| `GET /v1/tenants/{id}` | deny | deny | allow | allow | allow | allow |\n\nAfter the table.\n\n## Next\n| `GET /x` | deny |\n"
	rows, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	all := func(v bool) map[string]bool {
		m := map[string]bool{}
		for _, c := range Callers {
			m[c] = v
		}
		return m
	}
	status := all(true)
	status[Anonymous], status[EndUser] = false, false
	want := []Row{{Endpoint: "POST /v1/signup", Allowed: all(true)}, {Endpoint: "GET /v1/tenants/{id}", Allowed: status}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	for _, c := range []struct{ name, doc, want string }{
		{"no table", "## Authorization matrix\n\nnothing\n", "no table"},
		{"unknown caller", "## Authorization matrix\n| Route | anonymous | robot |\n", "unknown caller"},
		{"missing caller", "## Authorization matrix\n| Route | anonymous |\n", "no column"},
		{"bad cell", "## Authorization matrix\n" + header + "| `GET /a` | maybe | deny | deny | deny | deny | deny |\n", "neither allow nor deny"},
		{"twice", "## Authorization matrix\n" + header + "| `GET /a` | deny | deny | deny | deny | deny | deny |\n| `GET /a` | deny | deny | deny | deny | deny | deny |\n", "twice"},
		{"not a route", "## Authorization matrix\n" + header + "| `/a` | deny | deny | deny | deny | deny | deny |\n", "not \"METHOD /path\""},
		{"short row", "## Authorization matrix\n" + header + "| `GET /a` | deny |\n", "cells"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Parse([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestPathFor(t *testing.T) {
	for pattern, want := range map[string]string{
		"/v1/tenants/{id}/suspend": "/v1/tenants/acme/suspend",
		"/v1/previews/{id}/extend": "/v1/previews/" + PreviewID + "/extend",
		"/v1/rollouts/{id}":        "/v1/rollouts/" + RolloutID,
		"/v1/signup":               "/v1/signup",
	} {
		if got := PathFor(pattern, "acme"); got != want {
			t.Errorf("PathFor(%s) = %s, want %s", pattern, got, want)
		}
	}
}
