package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/silo-saas/silo/registry"
)

func TestRequestIDAndInternalErrors(t *testing.T) {
	f := newFixture(t, Options{})
	// A registry on a table that does not exist: every read fails inside.
	broken := newAPI(t, registry.New(f.db, "no-such-table"), f.db, Options{})
	viewer := bearerH(broken.token(t, "vic", RoleViewer))

	tests := []struct {
		name     string
		incoming string
		wantKept bool
	}{
		{"sane incoming id is kept", "req-123.abc:1_x", true},
		{"no incoming id", "", false},
		{"id with spaces", "a b", false},
		{"id with a newline", "a\nlevel=ERROR", false},
		{"overlong id", strings.Repeat("a", 129), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range viewer {
				h[k] = v
			}
			if tc.incoming != "" {
				h[RequestIDHeader] = tc.incoming
			}
			r := broken.do(t, req{method: "GET", path: "/v1/tenants/acme-corp-abc123", header: h})
			id := r.header.Get(RequestIDHeader)
			switch {
			case tc.wantKept && id != tc.incoming:
				t.Errorf("request id %q, want the incoming %q", id, tc.incoming)
			case !tc.wantKept && (!saneRequestID(id) || id == tc.incoming):
				t.Errorf("request id %q, want a fresh one", id)
			}
			if r.status != 500 || r.errorCode(t) != CodeInternal {
				t.Fatalf("%d %s, want 500 internal", r.status, r.body)
			}
			b := decode[ErrorBody](t, r)
			if want := "internal error (request id " + id + ")"; b.Error.Message != want {
				t.Errorf("message %q, want %q", b.Error.Message, want)
			}
			for _, leak := range []string{"no-such-table", "ResourceNotFound", "dynamodb", "DynamoDB"} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("500 body %s leaks %q", r.body, leak)
				}
			}
		})
	}

	// Every log line of a request carries its id; the cause is in the log.
	var lines, withCause int
	for _, l := range strings.Split(strings.TrimSpace(broken.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines++
		if id, _ := m["request_id"].(string); !saneRequestID(id) {
			t.Errorf("log line without a request id: %s", l)
		}
		if e, _ := m["error"].(string); strings.Contains(e, "no-such-table") || strings.Contains(e, "ResourceNotFound") {
			withCause++
		}
	}
	if lines == 0 || withCause != len(tests) {
		t.Errorf("%d log lines, %d with the cause; want the cause once per request (%d)", lines, withCause, len(tests))
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		name, remote, xff string
		trust             bool
		want              string
	}{
		{"server address", "192.0.2.1:5555", "", false, "192.0.2.1"},
		{"lambda adapter's bare ip", "192.0.2.1", "", false, "192.0.2.1"},
		{"ipv6 is its /64", "[2001:db8::1]:443", "", false, "2001:db8::/64"},
		{"another address of that /64", "[2001:db8::ffff:ffff:ffff:ffff]:443", "", false, "2001:db8::/64"},
		{"the next /64", "[2001:db8:0:1::1]:443", "", false, "2001:db8:0:1::/64"},
		{"lambda adapter's bare ipv6", "2001:db8:1:2:3:4:5:6", "", false, "2001:db8:1:2::/64"},
		{"mapped ipv4 connection", "[::ffff:192.0.2.1]:443", "", false, "192.0.2.1"},
		{"zone dropped", "[fe80::1%eth0]:443", "", false, "fe80::/64"},
		{"zone dropped, another interface", "[fe80::2%eth1]:443", "", false, "fe80::/64"},
		{"untrusted forwarded-for is ignored", "192.0.2.1:1", "198.51.100.7", false, "192.0.2.1"},
		{"trusted first hop", "192.0.2.1:1", " 198.51.100.7 , 10.0.0.1", true, "198.51.100.7"},
		{"mapped ipv4", "192.0.2.1:1", "::ffff:198.51.100.7", true, "198.51.100.7"},
		{"trusted ipv6 first hop is its /64", "192.0.2.1:1", "2001:db8:aa:bb:1:2:3:4, 10.0.0.1", true, "2001:db8:aa:bb::/64"},
		{"trusted bracketed ipv6 with a port", "192.0.2.1:1", "[2001:db8:aa:bb::9]:4711", true, "2001:db8:aa:bb::/64"},
		{"garbage forwarded-for falls back", "192.0.2.1:1", "not-an-ip, 10.0.0.1", true, "192.0.2.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptestRequest(req{method: "POST", path: "/v1/signup", header: map[string]string{}}, tc.remote)
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := clientKey(r, tc.trust); got != tc.want {
				t.Errorf("clientKey = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	l := newLimiter(1, 1, 100)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		l.allow(fmt.Sprintf("client-%d", i), now)
	}
	if n := len(l.buckets); n > 100 {
		t.Errorf("limiter tracks %d clients, want at most 100", n)
	}
}

func TestPanicIsAGeneric500(t *testing.T) {
	f := newFixture(t, Options{})
	f.api.d.Kick = func(string) { panic("kick exploded: secret detail") }
	r := f.do(t, signupReq("panic-1", goodBody))
	if r.status != 500 || r.errorCode(t) != CodeInternal || strings.Contains(string(r.body), "secret") {
		t.Errorf("%d %s, want a generic 500", r.status, r.body)
	}
	if !strings.Contains(f.logs.String(), "kick exploded") {
		t.Error("the panic is not in the log")
	}
	// The tenant was created before the panic: a retry replays it.
	f.api.d.Kick = f.calls.kick
	if r := f.do(t, signupReq("panic-1", goodBody)); r.status != 202 || r.header.Get(ReplayedHeader) != "true" {
		t.Errorf("retry after the 500: %d %s, want a 202 replay", r.status, r.body)
	}
}
