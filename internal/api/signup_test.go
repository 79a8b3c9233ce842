package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/registry"
)

func TestSignupRefusesBadInput(t *testing.T) {
	f := newFixture(t, Options{})
	// One tenant exists, so a conflicting replay has something to conflict with.
	f.signup(t, "key-1", "Acme Corp")
	before := f.snapshot(t)
	kicks := len(f.calls.Kicks())

	json := map[string]string{IdempotencyKeyHeader: testKey("key-2"), "Content-Type": "application/json"}
	withKey := func(k string) map[string]string {
		return map[string]string{IdempotencyKeyHeader: k, "Content-Type": "application/json"}
	}
	tests := []struct {
		name       string
		r          req
		wantStatus int
		wantCode   string
		wantFields []string
	}{
		{"no idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody}, 400, CodeIdempotencyKeyMissing, nil},
		{"bad idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody, header: withKey("a key with spaces")}, 400, CodeInvalidRequest, []string{IdempotencyKeyHeader}},
		{"too long idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody, header: withKey(strings.Repeat("k", 129))}, 400, CodeInvalidRequest, []string{IdempotencyKeyHeader}},
		{"short idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody, header: withKey("order-1")}, 400, CodeInvalidRequest, []string{IdempotencyKeyHeader}},
		{"one-character idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody, header: withKey(strings.Repeat("a", 32))}, 400, CodeInvalidRequest, []string{IdempotencyKeyHeader}},
		{"counting idempotency key", req{method: "POST", path: "/v1/signup", body: goodBody, header: withKey("12345678901234567890")}, 400, CodeInvalidRequest, []string{IdempotencyKeyHeader}},
		{"empty body", req{method: "POST", path: "/v1/signup", header: json}, 400, CodeInvalidJSON, nil},
		{"malformed json", req{method: "POST", path: "/v1/signup", body: `{"name":`, header: json}, 400, CodeInvalidJSON, nil},
		{"not an object", req{method: "POST", path: "/v1/signup", body: `["x"]`, header: json}, 400, CodeInvalidJSON, nil},
		{"unknown field", req{method: "POST", path: "/v1/signup", body: `{"name":"A","email":"a@b.example","tier":"basic","region":"us-east-1","kind":"preview"}`, header: json}, 400, CodeInvalidJSON, []string{"kind"}},
		{"wrong type", req{method: "POST", path: "/v1/signup", body: `{"name":7,"email":"a@b.example","tier":"basic","region":"us-east-1"}`, header: json}, 400, CodeInvalidJSON, []string{"name"}},
		{"null body", req{method: "POST", path: "/v1/signup", body: `null`, header: json}, 400, CodeInvalidJSON, nil},
		{"name twice, in another case", req{method: "POST", path: "/v1/signup", body: `{"name":"A","email":"a@b.example","tier":"basic","region":"us-east-1","Name":"B"}`, header: json}, 400, CodeInvalidJSON, []string{"Name"}},
		{"invalid UTF-8", req{method: "POST", path: "/v1/signup", body: "{\"name\":\"A\xff\",\"email\":\"a@b.example\",\"tier\":\"basic\",\"region\":\"us-east-1\"}", header: json}, 400, CodeInvalidJSON, []string{"name"}},
		{"trailing data", req{method: "POST", path: "/v1/signup", body: goodBody + `{}`, header: json}, 400, CodeInvalidJSON, nil},
		{"body over 64 KiB", req{method: "POST", path: "/v1/signup", body: `{"name":"` + strings.Repeat("a", 64<<10) + `"}`, header: json}, 413, CodeBodyTooLarge, nil},
		{"not json content type", req{method: "POST", path: "/v1/signup", body: goodBody, header: map[string]string{IdempotencyKeyHeader: testKey("key-2"), "Content-Type": "text/plain"}}, 415, CodeUnsupportedMedia, nil},
		{"bad email", req{method: "POST", path: "/v1/signup", body: strings.Replace(goodBody, "Ops@Acme.example", "not-an-email", 1), header: json}, 422, CodeValidation, []string{"email"}},
		{"bad tier", req{method: "POST", path: "/v1/signup", body: strings.Replace(goodBody, "standard", "gold", 1), header: json}, 422, CodeValidation, []string{"tier"}},
		{"bad region", req{method: "POST", path: "/v1/signup", body: strings.Replace(goodBody, "us-east-1", "mars-1", 1), header: json}, 422, CodeValidation, []string{"region"}},
		{"everything missing", req{method: "POST", path: "/v1/signup", body: `{}`, header: json}, 422, CodeValidation, []string{"name", "email", "tier", "region"}},
		{"same key, other body", req{method: "POST", path: "/v1/signup", body: strings.Replace(goodBody, "standard", "basic", 1), header: withKey(testKey("key-1"))}, 409, CodeIdempotencyConflict, nil},
		{"wrong method", req{method: "GET", path: "/v1/signup"}, 405, CodeMethodNotAllowed, nil},
		{"unknown route", req{method: "GET", path: "/v2/signup"}, 404, CodeNotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.r)
			if r.status != tc.wantStatus {
				t.Errorf("status %d, want %d (body %s)", r.status, tc.wantStatus, r.body)
			}
			b := decode[ErrorBody](t, r)
			if b.Error.Code != tc.wantCode {
				t.Errorf("code %q, want %q", b.Error.Code, tc.wantCode)
			}
			if b.Error.Message == "" {
				t.Error("empty error message")
			}
			var fields []string
			for _, p := range b.Error.Fields {
				fields = append(fields, p.Field)
				if !strings.Contains(b.Error.Message, p.Field) {
					t.Errorf("message %q does not name field %s", b.Error.Message, p.Field)
				}
			}
			if diff := cmp.Diff(tc.wantFields, fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if r.header.Get(RequestIDHeader) == "" {
				t.Error("no request id header")
			}
		})
	}
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("refused requests changed the registry (-before +after):\n%s", diff)
	}
	if got := len(f.calls.Kicks()); got != kicks {
		t.Errorf("refused requests kicked %d tenants", got-kicks)
	}
}

func TestSignupReplaysSameAnswer(t *testing.T) {
	f := newFixture(t, Options{BaseURL: "https://api.silo.example/"})
	first := f.do(t, signupReq("replay-1", goodBody))
	if first.status != http.StatusAccepted {
		t.Fatalf("signup: %d %s", first.status, first.body)
	}
	got := decode[SignupResponse](t, first)
	if !regexp.MustCompile(`^acme-corp-[a-z0-9]{6}$`).MatchString(got.TenantID) {
		t.Errorf("tenant id %q is not the name's slug and a suffix", got.TenantID)
	}
	want := SignupResponse{TenantID: got.TenantID, State: registry.StateRequested,
		StatusURL: "https://api.silo.example/v1/tenants/" + got.TenantID, StatusToken: got.StatusToken}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	if first.header.Get(ReplayedHeader) != "" {
		t.Error("first answer marked as a replay")
	}

	// Same key, same request (spelled differently: the registry normalizes
	// the email) → the same answer.
	again := f.do(t, signupReq("replay-1", strings.Replace(goodBody, "Ops@Acme.example", " ops@acme.example", 1)))
	if again.status != http.StatusAccepted || string(again.body) != string(first.body) {
		t.Errorf("replay: %d %s, want 202 %s", again.status, again.body, first.body)
	}
	if again.header.Get(ReplayedHeader) != "true" {
		t.Error("replay not marked as one")
	}
	if diff := cmp.Diff([]string{got.TenantID}, f.calls.Kicks()); diff != "" {
		t.Errorf("kicks (-want +got):\n%s", diff)
	}

	// The status token reads the tenant.
	st := f.do(t, req{method: "GET", path: "/v1/tenants/" + got.TenantID, header: map[string]string{"Authorization": "Bearer " + got.StatusToken}})
	if st.status != http.StatusOK {
		t.Fatalf("status: %d %s", st.status, st.body)
	}
	v := decode[TenantView](t, st)
	if v.ID != got.TenantID || v.State != registry.StateRequested || v.Name != "Acme Corp" {
		t.Errorf("status view %+v", v)
	}
	if v.LastEvent == nil || v.LastEvent.Actor != "signup" {
		t.Errorf("last event %+v, want the signup's", v.LastEvent)
	}
}

func TestConcurrentSignupsOneKey(t *testing.T) {
	f := newFixture(t, Options{})
	const n = 200
	answers := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = f.do(t, signupReq("one-key", goodBody)) })
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusAccepted || string(a.body) != string(answers[0].body) {
			t.Errorf("answer %d: %d %s, want 202 %s", i, a.status, a.body, answers[0].body)
		}
	}
	page, err := f.store.List(t.Context(), registry.StateRequested, registry.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Tenants) != 1 {
		t.Errorf("%d tenants, want 1", len(page.Tenants))
	}
	if k := f.calls.Kicks(); len(k) != 1 {
		t.Errorf("kicks %v, want one", k)
	}
}

func TestSignupRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	// No registry call is made: requests without a key are refused after
	// the rate limit took its token.
	store := registry.New(dynamodb.New(dynamodb.Options{Region: "us-east-1"}), "unused")
	for _, trust := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote address", true: "forwarded for"}[trust], func(t *testing.T) {
			f := newAPI(t, store, nil, Options{SignupRate: rate.Every(2 * time.Second), SignupBurst: 2, TrustForwardedFor: trust})
			f.api.d.Now = clock
			from := func(remote, xff string) resp {
				r := req{method: "POST", path: "/v1/signup", body: goodBody, header: map[string]string{}}
				if xff != "" {
					r.header["X-Forwarded-For"] = xff
				}
				hr := httptestRequest(r, remote)
				return f.serve(hr)
			}
			for i := range 2 {
				if r := from("192.0.2.1:1", "198.51.100.7, 10.0.0.1"); r.status != http.StatusBadRequest {
					t.Fatalf("request %d: %d %s, want the missing key's 400", i, r.status, r.body)
				}
			}
			// The same client: refused, with a Retry-After.
			r := from("192.0.2.1:2", "198.51.100.7, 10.0.0.2")
			if r.status != http.StatusTooManyRequests || r.errorCode(t) != CodeRateLimited || r.header.Get("Retry-After") != "2" {
				t.Errorf("third request: %d %s Retry-After %q, want 429 rate_limited 2", r.status, r.body, r.header.Get("Retry-After"))
			}
			// Another client. With a trusted X-Forwarded-For, the same
			// proxy address with another first hop is another client; without
			// it, another connection address is.
			var other resp
			if trust {
				other = from("192.0.2.1:3", "203.0.113.9")
			} else {
				other = from("192.0.2.2:1", "198.51.100.7")
			}
			if other.status != http.StatusBadRequest {
				t.Errorf("another client: %d %s, want 400", other.status, other.body)
			}
			// Time refills the bucket.
			now = now.Add(2 * time.Second)
			if r := from("192.0.2.1:4", "198.51.100.7"); r.status != http.StatusBadRequest {
				t.Errorf("after the wait: %d %s, want 400", r.status, r.body)
			}
		})
	}
}

func TestEmailDomain(t *testing.T) {
	tests := []struct{ email, want string }{
		{"a@x.evil.example", "evil.example"},
		{"b@y.evil.example", "evil.example"},
		{" C@Evil.Example. ", "evil.example"},
		{"ops@acme.co.uk", "acme.co.uk"},
		{"ops@eu.acme.co.uk", "acme.co.uk"},
		{"ops@co.uk", "co.uk"}, // a public suffix itself: its own budget
		{"a@b@c.example", "c.example"},
		{"not-an-email", "not-an-email"},
	}
	for _, tc := range tests {
		if got := emailDomain(tc.email); got != tc.want {
			t.Errorf("emailDomain(%q) = %q, want %q", tc.email, got, tc.want)
		}
	}
}

// TestSignupDomainLimit: one registrable domain has one signup budget
// across all clients; other domains have their own; a replay or a refused
// body gives its token back.
func TestSignupDomainLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newFixture(t, Options{DomainSignupRate: rate.Every(time.Hour), DomainSignupBurst: 2})
	f.api.d.Now = func() time.Time { return now }
	client := 0
	// Every request comes from another client, so the per-client limit
	// (infinite here anyway) has no say.
	send := func(key, email, tier string) resp {
		client++
		body := strings.NewReplacer("Ops@Acme.example", email, "standard", tier).Replace(goodBody)
		return f.serve(httptestRequest(signupReq(key, body), fmt.Sprintf("198.51.100.%d:1", client)))
	}
	expect := func(what string, r resp, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
		}
	}

	expect("first of evil.example", send("k-1", "a@x.evil.example", "standard"), http.StatusAccepted)
	// Replays of it, from other clients, answer from the registry and
	// give their token back: however many, the budget still holds one.
	for i := range 5 {
		r := send("k-1", "a@x.evil.example", "standard")
		expect(fmt.Sprintf("replay %d", i), r, http.StatusAccepted)
		if r.header.Get(ReplayedHeader) != "true" {
			t.Fatalf("replay %d not marked as one", i)
		}
	}
	// Bodies the registry refuses give theirs back too.
	for i := range 3 {
		expect(fmt.Sprintf("refused %d", i), send(fmt.Sprintf("bad-%d", i), "z@evil.example", "gold"), http.StatusUnprocessableEntity)
	}
	expect("idempotency conflict", send("k-1", "a@x.evil.example", "basic"), http.StatusConflict)
	expect("second of evil.example, another subdomain", send("k-2", "b@y.evil.example", "standard"), http.StatusAccepted)

	// The budget is spent: a third address of the domain is refused, from
	// yet another client, with a JSON error and a Retry-After.
	r := send("k-3", "c@evil.example", "standard")
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != CodeRateLimited || r.header.Get("Retry-After") != "3600" {
		t.Errorf("third of evil.example: %d %s Retry-After %q, want 429 rate_limited 3600", r.status, r.body, r.header.Get("Retry-After"))
	}
	if msg := decode[ErrorBody](t, r).Error.Message; !strings.Contains(msg, "domain") {
		t.Errorf("429 message %q does not say the domain is the limit", msg)
	}
	// Another domain has its own budget.
	expect("another domain", send("k-4", "ops@good.example", "standard"), http.StatusAccepted)
	// Time refills it.
	now = now.Add(time.Hour)
	expect("evil.example an hour later", send("k-5", "d@evil.example", "standard"), http.StatusAccepted)
	if n := len(f.calls.Kicks()); n != 4 {
		t.Errorf("%d tenants kicked, want 4", n)
	}
}
