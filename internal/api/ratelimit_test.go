package api

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/registry"
)

// TestIPv6ClientsShareTheirSlash64: through the handler, every address of
// one IPv6 /64 draws on one signup bucket (a client picking a fresh
// address per request gains nothing), another /64 has its own, and an
// IPv4 client is as before.
func TestIPv6ClientsShareTheirSlash64(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// No registry call is made: requests without a key are refused after
	// the rate limit took its token.
	store := registry.New(dynamodb.New(dynamodb.Options{Region: "us-east-1"}), "unused")
	f := newAPI(t, store, nil, Options{SignupRate: rate.Every(time.Hour), SignupBurst: 3})
	f.api.d.Now = func() time.Time { return now }
	from := func(remote string) int {
		return f.serve(httptestRequest(req{method: "POST", path: "/v1/signup", body: goodBody, header: map[string]string{}}, remote)).status
	}
	// Three requests from three addresses of 2001:db8:1:2::/64 spend its
	// burst; a fourth address of it is refused.
	for i := range 3 {
		if s := from(fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)); s != http.StatusBadRequest {
			t.Fatalf("request %d of the /64: %d, want the missing key's 400", i, s)
		}
	}
	if s := from("[2001:db8:1:2:ffff:ffff:ffff:fffe]:443"); s != http.StatusTooManyRequests {
		t.Errorf("a fresh address of a spent /64: %d, want 429", s)
	}
	if s := from("[2001:db8:1:3::1]:443"); s != http.StatusBadRequest {
		t.Errorf("the next /64: %d, want 400 (its own bucket)", s)
	}
	// IPv4: one address, one bucket, mapped or not.
	for i := range 3 {
		remote := "192.0.2.7:1"
		if i == 1 {
			remote = "[::ffff:192.0.2.7]:2"
		}
		if s := from(remote); s != http.StatusBadRequest {
			t.Fatalf("ipv4 request %d: %d, want 400", i, s)
		}
	}
	if s := from("192.0.2.7:3"); s != http.StatusTooManyRequests {
		t.Errorf("fourth from 192.0.2.7: %d, want 429", s)
	}
	if s := from("192.0.2.8:1"); s != http.StatusBadRequest {
		t.Errorf("192.0.2.8: %d, want 400 (its own bucket)", s)
	}

	// The resolve limit keys clients the same way.
	g := newFixture(t, Options{ResolveRate: rate.Every(time.Hour), ResolveBurst: 2})
	g.api.d.Now = func() time.Time { return now }
	resolve := func(remote string) int {
		return g.serve(httptestRequest(req{method: "GET", path: "/v1/resolve?tenant=ghost-co-x1y2z3"}, remote)).status
	}
	for i, remote := range []string{"[2001:db8:9::1]:1", "[2001:db8:9::2%eth0]:1"} {
		if s := resolve(remote); s != http.StatusNotFound {
			t.Fatalf("resolve %d: %d, want 404", i, s)
		}
	}
	if s := resolve("[2001:db8:9:0:abcd::3]:1"); s != http.StatusTooManyRequests {
		t.Errorf("a third address of the /64 resolving: %d, want 429", s)
	}
}
