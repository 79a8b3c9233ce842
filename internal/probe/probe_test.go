package probe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/sim"
	"github.com/silo-saas/silo/registry"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fast keeps the simulated fleet's healthy answers far below the slow
// threshold, so only the behaviours under test fail.
var fast = sim.Uniform(0, time.Millisecond)

const (
	timeout   = 600 * time.Millisecond
	threshold = 100 * time.Millisecond
	slow      = 250 * time.Millisecond // over threshold, under timeout
)

func testOptions() probe.Options {
	return probe.Options{Concurrency: 8, Timeout: timeout, SlowThreshold: threshold, ConfirmDelay: 10 * time.Millisecond}
}

func TestTargets(t *testing.T) {
	tenant := func(id string, s registry.State, ep string) *registry.Tenant {
		return &registry.Tenant{Spec: registry.Spec{ID: id}, State: s, Endpoint: ep}
	}
	tests := []struct {
		name    string
		tenants []*registry.Tenant
		want    []probe.Target
	}{
		{"none", nil, nil},
		{"active and updating with endpoints", []*registry.Tenant{
			tenant("a", registry.StateActive, "https://a.example"),
			tenant("b", registry.StateUpdating, "https://b.example/"),
		}, []probe.Target{{TenantID: "a", URL: "https://a.example/health"}, {TenantID: "b", URL: "https://b.example/health"}}},
		{"last health carried", []*registry.Tenant{
			withHealth(tenant("h", registry.StateActive, "https://h.example"), registry.HealthDown, 5000),
			withHealth(tenant("i", registry.StateActive, "https://i.example"), registry.HealthUp, 40),
		}, []probe.Target{
			{TenantID: "h", URL: "https://h.example/health", Known: true, Suspect: true, Cost: 5 * time.Second},
			{TenantID: "i", URL: "https://i.example/health", Known: true, Cost: 40 * time.Millisecond},
		}},
		{"other states skipped", []*registry.Tenant{
			tenant("c", registry.StateSuspended, "https://c.example"),
			tenant("d", registry.StateDeploying, "https://d.example"),
			tenant("e", registry.StateClosed, "https://e.example"),
			tenant("f", registry.StateFailed, "https://f.example"),
		}, nil},
		{"no endpoint skipped", []*registry.Tenant{tenant("g", registry.StateActive, ""), nil}, nil},
		{"awaited by a rollout until a fresh verdict", []*registry.Tenant{
			awaiting(withHealth(tenant("j", registry.StateActive, "https://j.example"), registry.HealthUp, 40), time.Minute),
			awaiting(withHealth(tenant("k", registry.StateActive, "https://k.example"), registry.HealthUp, 40), -time.Minute),
			awaiting(tenant("l", registry.StateActive, "https://l.example"), -time.Minute),
		}, []probe.Target{
			{TenantID: "j", URL: "https://j.example/health", Known: true, Cost: 40 * time.Millisecond, Awaited: true},
			{TenantID: "k", URL: "https://k.example/health", Known: true, Cost: 40 * time.Millisecond},
			{TenantID: "l", URL: "https://l.example/health", Awaited: true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, probe.Targets(tc.tenants)); d != "" {
				t.Errorf("targets (-want +got):\n%s", d)
			}
		})
	}
}

func withHealth(t *registry.Tenant, s registry.HealthStatus, ms int64) *registry.Tenant {
	t.Health = &registry.Health{Status: s, LatencyMS: ms, CheckedAt: time.Unix(1_800_000_000, 0)}
	return t
}

// awaiting asks for a verdict taken at the tenant's last check moved by d:
// d > 0 awaits a new one, d < 0 is answered by the last check.
func awaiting(t *registry.Tenant, d time.Duration) *registry.Tenant {
	at := time.Unix(1_800_000_000, 0).Add(d)
	t.Attributes = map[string]string{registry.AttrProbeAfter: at.Format(time.RFC3339Nano)}
	return t
}

// TestSweepBehaviours runs the engine against every simulated behaviour.
func TestSweepBehaviours(t *testing.T) {
	tests := []struct {
		name string
		b    sim.Behaviour
		want probe.Result // TenantID, URL, Latency, Checked, Conditions ignored
	}{
		{"up", sim.Behaviour{Mode: sim.Up}, probe.Result{Up: true, Status: 200}},
		{"down", sim.Behaviour{Mode: sim.Down}, probe.Result{Class: probe.ClassStatus, Status: 503, Confirmed: true}},
		{"slow", sim.Behaviour{Mode: sim.Slow}, probe.Result{Class: probe.ClassSlow, Status: 200, Confirmed: true}},
		{"hanging", sim.Behaviour{Mode: sim.Hang}, probe.Result{Class: probe.ClassTimeout, Confirmed: true}},
		{"bad body", sim.Behaviour{Mode: sim.BadBody}, probe.Result{Class: probe.ClassBody, Status: 200, Confirmed: true}},
		// The confirming retry suppresses a one-off blip...
		{"flapping one in two", sim.Behaviour{Mode: sim.Flap, Every: 2}, probe.Result{Up: true, Status: 200}},
		// ...but not a failure that repeats.
		{"flapping always", sim.Behaviour{Mode: sim.Flap, Every: 1}, probe.Result{Class: probe.ClassStatus, Status: 503, Confirmed: true}},
	}
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints:   len(tests),
		Latency:     fast,
		SlowLatency: slow,
		Behaviour:   func(i int) sim.Behaviour { return tests[i].b },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := probe.New(testOptions(), discard())
	defer p.Close()
	// Suspects (not up at their last check) take the hedged confirmation
	// path; the verdicts must be the same.
	for _, suspect := range []bool{false, true} {
		targets := f.Targets()
		for i := range targets {
			targets[i].Suspect, targets[i].Known = suspect, suspect
		}
		results := p.Sweep(t.Context(), targets)
		if len(results) != len(tests) {
			t.Fatalf("got %d results, want %d", len(results), len(tests))
		}
		for i, tc := range tests {
			t.Run(fmt.Sprintf("%s/suspect=%v", tc.name, suspect), func(t *testing.T) {
				got := results[i]
				if got.TenantID != targets[i].TenantID || got.URL != targets[i].URL {
					t.Errorf("result %d is for %s %s, want %s %s", i, got.TenantID, got.URL, targets[i].TenantID, targets[i].URL)
				}
				if d := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(probe.Result{}, "TenantID", "URL", "Latency", "Checked", "Conditions")); d != "" {
					t.Errorf("result (-want +got):\n%s", d)
				}
				if got.Checked.IsZero() {
					t.Error("Checked not set")
				}
				if got.Class == probe.ClassTimeout && got.Latency < timeout {
					t.Errorf("timed out after %v, want at least the timeout %v", got.Latency, timeout)
				}
			})
		}
	}
}

// TestHedgedSuspect: a hanging endpoint that was already down costs one
// timeout (the confirming attempt runs beside the first), one that was up
// costs two (the retry follows the first failure), and the sweep starts
// suspects first whatever their place in the list.
func TestHedgedSuspect(t *testing.T) {
	f, err := sim.Start(t.Context(), sim.Options{Endpoints: 2, Latency: fast,
		Behaviour: func(i int) sim.Behaviour { return sim.Behaviour{Mode: sim.Hang} }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := probe.New(probe.Options{Concurrency: 1, Timeout: timeout, ConfirmDelay: 10 * time.Millisecond}, discard())
	defer p.Close()
	targets := f.Targets()
	targets[1].Suspect, targets[1].Known = true, true

	start := time.Now()
	res := p.Sweep(t.Context(), targets[1:])
	if took := time.Since(start); took >= 2*timeout || !res[0].Confirmed || res[0].Class != probe.ClassTimeout {
		t.Errorf("suspect hang: %v, %+v; want one timeout (%v) and confirmed", took, res[0], timeout)
	}
	if n := f.Requests(targets[1].TenantID); n != 2 {
		t.Errorf("suspect got %d requests, want 2", n)
	}
	start = time.Now()
	res = p.Sweep(t.Context(), targets[:1])
	if took := time.Since(start); took < 2*timeout || !res[0].Confirmed {
		t.Errorf("hang that was up: %v, %+v; want two timeouts", took, res[0])
	}
	// Concurrency 1: the suspect, listed second, is probed first.
	f2, err := sim.Start(t.Context(), sim.Options{Endpoints: 2, Latency: fast})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	targets = f2.Targets()
	targets[1].Suspect, targets[1].Known = true, true
	res = p.Sweep(t.Context(), targets)
	if !res[1].Checked.Before(res[0].Checked) {
		t.Errorf("suspect checked at %v, after the other target at %v", res[1].Checked, res[0].Checked)
	}
}

// TestConditions: every condition of an answered probe is recorded, so a
// 503 with a bad body shows both.
func TestConditions(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"status":"degraded"}`)
	}))
	defer srv.Close()
	p := probe.New(testOptions(), discard())
	defer p.Close()
	got := p.Sweep(t.Context(), []probe.Target{{TenantID: "x", URL: srv.URL + "/health"}})[0]
	want := []probe.Condition{
		{Name: probe.CondReachable, OK: true},
		{Name: probe.CondStatus, OK: false},
		{Name: probe.CondBody, OK: false},
		{Name: probe.CondLatency, OK: true},
	}
	if d := cmp.Diff(want, got.Conditions, cmpopts.IgnoreFields(probe.Condition{}, "Detail")); d != "" {
		t.Errorf("conditions (-want +got):\n%s", d)
	}
	if got.Class != probe.ClassStatus {
		t.Errorf("class = %q, want %q (the first failing condition)", got.Class, probe.ClassStatus)
	}
}

// closedPortURL is an address nothing listens on: it was listening a moment
// ago and was closed.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/health"
}

// TestFailureClasses probes one endpoint per class end to end.
func TestFailureClasses(t *testing.T) {
	modes := map[string]sim.Behaviour{
		"timeout": {Mode: sim.Hang},
		"status":  {Mode: sim.Down},
		"body":    {Mode: sim.BadBody},
		"slow":    {Mode: sim.Slow},
	}
	order := []string{"timeout", "status", "body", "slow"}
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints: len(order), Latency: fast, SlowLatency: slow,
		Behaviour: func(i int) sim.Behaviour { return modes[order[i]] },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The default client does not trust httptest's certificate.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer tlsSrv.Close()

	simURL := map[string]string{}
	for i, tg := range f.Targets() {
		simURL[order[i]] = tg.URL
	}
	tests := []struct {
		name, url, want string
	}{
		{"dns", "http://nonexistent.invalid/health", probe.ClassDNS},
		{"connect", closedPortURL(t), probe.ClassConnect},
		{"tls", tlsSrv.URL + "/health", probe.ClassTLS},
		{"timeout", simURL["timeout"], probe.ClassTimeout},
		{"status", simURL["status"], probe.ClassStatus},
		{"body", simURL["body"], probe.ClassBody},
		{"slow", simURL["slow"], probe.ClassSlow},
	}
	var targets []probe.Target
	for _, tc := range tests {
		targets = append(targets, probe.Target{TenantID: tc.name, URL: tc.url})
	}
	p := probe.New(testOptions(), discard())
	defer p.Close()
	results := p.Sweep(t.Context(), targets)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := results[i]
			if got.Up || got.Class != tc.want || !got.Confirmed {
				t.Errorf("got up=%v class=%q confirmed=%v (%+v), want down, class %q, confirmed",
					got.Up, got.Class, got.Confirmed, got.Conditions, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Get", URL: "http://x/health", Err: err} }
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"dns", wrap(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}), probe.ClassDNS},
		{"dns timeout is dns", wrap(&net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}), probe.ClassDNS},
		{"refused", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), probe.ClassConnect},
		{"reset", wrap(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), probe.ClassConnect},
		{"unknown authority", wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), probe.ClassTLS},
		{"bare x509", wrap(x509.UnknownAuthorityError{}), probe.ClassTLS},
		{"hostname", wrap(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}), probe.ClassTLS},
		{"record header", wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), probe.ClassTLS},
		{"handshake", wrap(errors.New("remote error: tls: handshake failure")), probe.ClassTLS},
		{"deadline", wrap(context.DeadlineExceeded), probe.ClassTimeout},
		{"handshake cut by deadline", wrap(fmt.Errorf("tls: handshake: %w", context.DeadlineExceeded)), probe.ClassTimeout},
		{"dial timeout", wrap(&net.OpError{Op: "dial", Err: timeoutErr{}}), probe.ClassTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := probe.Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestShard(t *testing.T) {
	var targets []probe.Target
	for i := range 500 {
		targets = append(targets, probe.Target{TenantID: fmt.Sprintf("tenant-%d", i)})
	}
	for n := 1; n <= 7; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			seen := map[string]int{}
			for i := range n {
				shard := probe.Shard(targets, i, n)
				if d := cmp.Diff(shard, probe.Shard(targets, i, n)); d != "" {
					t.Fatalf("shard %d not stable:\n%s", i, d)
				}
				for _, tg := range shard {
					seen[tg.TenantID]++
				}
			}
			if len(seen) != len(targets) {
				t.Errorf("%d targets covered, want %d", len(seen), len(targets))
			}
			for id, c := range seen {
				if c != 1 {
					t.Errorf("%s in %d shards, want 1", id, c)
				}
			}
		})
	}
	for _, bad := range [][2]int{{0, 0}, {-1, 3}, {3, 3}} {
		if got := probe.Shard(targets, bad[0], bad[1]); got != nil {
			t.Errorf("Shard(i=%d, n=%d) = %d targets, want nil", bad[0], bad[1], len(got))
		}
	}
}

// TestSweepLargeFleet: 1,000 endpoints with realistic latencies, 100 at a
// time, all answered. No timing assertion: this checks the engine holds up.
func TestSweepLargeFleet(t *testing.T) {
	f, err := sim.Start(t.Context(), sim.Options{Endpoints: 1000, Listeners: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := probe.New(probe.Options{Concurrency: 100, Timeout: 5 * time.Second, SlowThreshold: 2 * time.Second}, discard())
	defer p.Close()
	results := p.Sweep(t.Context(), f.Targets())
	if len(results) != 1000 {
		t.Fatalf("got %d results, want 1000", len(results))
	}
	for _, r := range results {
		if !r.Up {
			t.Errorf("%s down: class %q, %+v", r.TenantID, r.Class, r.Conditions)
		}
	}
}

// TestSweepDeadline: when the sweep's context ends (a Lambda's deadline)
// the sweep returns what it finished and marks the rest not probed, even
// though hanging endpoints would hold it for the whole probe timeout.
func TestSweepDeadline(t *testing.T) {
	const healthy, hanging = 20, 30
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints: healthy + hanging, Latency: fast,
		Behaviour: func(i int) sim.Behaviour {
			if i < healthy {
				return sim.Behaviour{Mode: sim.Up}
			}
			return sim.Behaviour{Mode: sim.Hang}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A probe timeout far beyond the deadline: only the deadline can end
	// the sweep.
	p := probe.New(probe.Options{Concurrency: 5, Timeout: time.Hour}, discard())
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	results := p.Sweep(ctx, f.Targets())
	if ctx.Err() == nil {
		t.Fatal("sweep returned before its deadline, with hanging endpoints")
	}
	if len(results) != healthy+hanging {
		t.Fatalf("got %d results, want %d", len(results), healthy+hanging)
	}
	for i, r := range results {
		switch {
		case i < healthy && !r.Up:
			t.Errorf("healthy %s: class %q, want up", r.TenantID, r.Class)
		case i >= healthy && (r.Up || r.Class != probe.ClassNotProbed || r.Confirmed):
			t.Errorf("hanging %s: up=%v class=%q confirmed=%v, want not probed", r.TenantID, r.Up, r.Class, r.Confirmed)
		}
	}
}

// TestSweepStartsAwaitedFirst: a sweep that cannot finish before its
// deadline still probes the targets a rollout's gate awaits, even when
// they are the cheapest and come last; before, the costliest started
// first, and with a fleet larger than a sweep the same awaited targets
// were never probed and the gate waited forever.
func TestSweepStartsAwaitedFirst(t *testing.T) {
	const hanging, awaited = 30, 5
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints: hanging + awaited, Latency: fast,
		Behaviour: func(i int) sim.Behaviour {
			if i < hanging {
				return sim.Behaviour{Mode: sim.Hang}
			}
			return sim.Behaviour{Mode: sim.Up}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets := f.Targets()
	for i := range targets {
		// Every target known and up at its last check; the hanging ones
		// were costly, so without the awaited mark they start first and
		// hold every slot until the deadline.
		targets[i].Known, targets[i].Cost = true, time.Second
		if i >= hanging {
			targets[i].Cost, targets[i].Awaited = time.Millisecond, true
		}
	}
	p := probe.New(probe.Options{Concurrency: 5, Timeout: time.Hour}, discard())
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	results := p.Sweep(ctx, targets)
	for _, r := range results[hanging:] {
		if !r.Up {
			t.Errorf("awaited %s: class %q, want up (probed first)", r.TenantID, r.Class)
		}
	}
}

// BenchmarkSweep1000 sweeps 1,000 simulated endpoints answering at once,
// so it measures the engine (and loopback), not simulated latency.
func BenchmarkSweep1000(b *testing.B) {
	f, err := sim.Start(b.Context(), sim.Options{Endpoints: 1000, Listeners: 4, Latency: sim.Uniform(0, 0)})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	p := probe.New(probe.Options{Concurrency: 100, Timeout: 5 * time.Second}, discard())
	defer p.Close()
	targets := f.Targets()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		p.Sweep(b.Context(), targets)
	}
	b.ReportMetric(float64(b.N*len(targets))/time.Since(start).Seconds(), "probes/s")
}
