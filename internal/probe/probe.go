// Package probe checks tenant health endpoints across the fleet: bounded
// concurrency over one shared transport, a per-probe timeout, a confirming
// retry before a failure counts, and a class that says why an endpoint is
// down. It is the engine behind the fleet health Lambda, which shards the
// fleet (Shard) so that several invocations share it, and which writes to
// the registry only what changed.
package probe

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Failure classes. An operator reads them to know where to look: dns and
// connect point at the network or a deleted stack, tls at a certificate,
// timeout and slow at the application's load, status and body at the
// application itself.
const (
	ClassDNS     = "dns"
	ClassConnect = "connect"
	ClassTLS     = "tls"
	ClassTimeout = "timeout"
	ClassStatus  = "status"
	ClassBody    = "body"
	ClassSlow    = "slow"
	// ClassNotProbed marks a target the sweep did not finish before its
	// context ended: no verdict, so the caller must not record it as down.
	ClassNotProbed = "not_probed"
)

// Condition names, as recorded in Result.Conditions.
const (
	CondReachable = "reachable"
	CondStatus    = "status == 200"
	CondBody      = `body.status == "ok"`
	CondLatency   = "latency < threshold"
)

// maxBody bounds what a probe reads: a health body is small, and a tenant
// that streams megabytes must not stall the sweep.
const maxBody = 64 << 10

// Target is one endpoint to probe.
type Target struct {
	TenantID string
	URL      string
	// Suspect marks a target that was not up at its last check: its
	// confirming retry is hedged (started while the first attempt may still
	// be waiting), so a hanging endpoint costs one timeout, not two.
	Suspect bool `json:",omitempty"`
	// Known is false for a target never checked before.
	Known bool `json:",omitempty"`
	// Cost is how long its last check took; a sweep starts the costliest
	// first (longest-processing-time order), so a slow or hanging endpoint
	// does not start last and hold the sweep past its bound.
	Cost time.Duration `json:",omitempty"`
	// Awaited marks a target whose verdict a rollout's gate is waiting for
	// (registry.AttrProbeAfter set, no fresh verdict yet). A sweep starts
	// those first: a fleet that outgrows the sweep's interval leaves its
	// last targets unprobed, and a gate waiting on them would wait forever.
	Awaited bool `json:",omitempty"`
}

// Condition is the outcome of one check of a probe, kept so that an
// operator sees every check that failed, not only the first.
type Condition struct {
	Name   string
	OK     bool
	Detail string `json:",omitempty"`
}

// Result is the verdict on one target.
type Result struct {
	TenantID string
	URL      string
	Up       bool
	// Class says why the target is down ("" when up), or ClassNotProbed.
	Class   string
	Status  int
	Latency time.Duration
	Checked time.Time
	// Conditions are those of the last attempt.
	Conditions []Condition
	// Confirmed is true when a failure was seen twice (the first attempt
	// and the confirming retry), so the target is declared down.
	Confirmed bool
}

// Targets picks the tenants worth probing: those serving traffic (ACTIVE,
// or UPDATING, which keeps serving during a rollout) with an endpoint.
func Targets(tenants []*registry.Tenant) []Target {
	var out []Target
	for _, t := range tenants {
		if t == nil || t.Endpoint == "" {
			continue
		}
		if t.State != registry.StateActive && t.State != registry.StateUpdating {
			continue
		}
		tg := Target{TenantID: t.ID, URL: strings.TrimRight(t.Endpoint, "/") + "/health"}
		if h := t.Health; h != nil && h.Status != registry.HealthUnknown {
			tg.Known, tg.Suspect, tg.Cost = true, h.Status != registry.HealthUp, time.Duration(h.LatencyMS)*time.Millisecond
		}
		if _, ok := t.ProbeAfter(); ok && !t.FreshHealth() {
			tg.Awaited = true
		}
		out = append(out, tg)
	}
	return out
}

// Shard returns the targets of shard i of n, chosen by a stable hash of the
// tenant id so that a tenant stays in the same shard from sweep to sweep
// (its history stays with one invocation) whatever the order of targets.
// It returns nil when i is not in [0, n).
func Shard(targets []Target, i, n int) []Target {
	if n <= 0 || i < 0 || i >= n {
		return nil
	}
	var out []Target
	for _, t := range targets {
		h := fnv.New32a()
		_, _ = h.Write([]byte(t.TenantID))
		if int(h.Sum32()%uint32(n)) == i {
			out = append(out, t)
		}
	}
	return out
}

// Options tune a Prober. Zero values take the defaults.
type Options struct {
	// Concurrency bounds the probes in flight (default 50).
	Concurrency int
	// Timeout bounds one attempt, connection included (default 5s).
	Timeout time.Duration
	// SlowThreshold: an answer slower than this fails the latency
	// condition (default 2s).
	SlowThreshold time.Duration
	// ConfirmDelay is the mean wait before the confirming retry, jittered
	// by ±50% so retries of a fleet behind one load balancer do not land
	// together (default 200ms).
	ConfirmDelay time.Duration
	// Transport replaces the tuned transport NewTransport builds (tests
	// use it to trust a certificate, or to inject faults).
	Transport http.RoundTripper
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 50
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.SlowThreshold <= 0 {
		o.SlowThreshold = 2 * time.Second
	}
	if o.ConfirmDelay <= 0 {
		o.ConfirmDelay = 200 * time.Millisecond
	}
	return o
}

// NewTransport is the transport a Prober shares across all its probes:
// keep-alives and enough idle connections per host that a sweep reuses
// connections (tenant endpoints often share a host or a load balancer),
// and dial and TLS timeouts shorter than the probe timeout so a black-holed
// address fails as connect or tls rather than as a generic timeout.
func NewTransport(concurrency int, timeout time.Duration) *http.Transport {
	step := min(timeout, 3*time.Second)
	return &http.Transport{
		Proxy:                 nil, // a probe measures the endpoint, not a proxy
		DialContext:           (&net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   step,
		ResponseHeaderTimeout: 0, // the per-probe context bounds it
		MaxIdleConns:          2 * concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
}

// Prober sweeps targets. It is safe for concurrent use.
type Prober struct {
	opts   Options
	client *http.Client
	log    *slog.Logger
}

// New builds a Prober.
func New(opts Options, log *slog.Logger) *Prober {
	opts = opts.withDefaults()
	rt := opts.Transport
	if rt == nil {
		rt = NewTransport(opts.Concurrency, opts.Timeout)
	}
	return &Prober{
		opts: opts,
		client: &http.Client{
			Transport: rt,
			// A health endpoint that redirects is misconfigured: report
			// the 3xx as a status failure instead of probing elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log,
	}
}

// Close releases idle connections.
func (p *Prober) Close() { p.client.CloseIdleConnections() }

// Sweep probes every target, at most Concurrency at a time, and returns one
// result per target in the order given. When ctx ends (a Lambda's
// deadline) it stops starting probes, cancels those in flight, and returns
// what it has: the rest are marked ClassNotProbed.
func (p *Prober) Sweep(ctx context.Context, targets []Target) []Result {
	results := make([]Result, len(targets))
	for i, t := range targets {
		results[i] = Result{TenantID: t.TenantID, URL: t.URL, Class: ClassNotProbed}
	}
	sem := make(chan struct{}, p.opts.Concurrency)
	var wg sync.WaitGroup
loop:
	for _, i := range schedule(targets) {
		t := targets[i]
		select {
		case <-ctx.Done():
			break loop
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r := p.probe(ctx, t)
			if ctx.Err() != nil && !r.Up {
				// The failure may be ours (the sweep ran out of time),
				// not the endpoint's: leave it without a verdict.
				return
			}
			results[i] = r
		})
	}
	wg.Wait()
	var up, down, skipped int
	for _, r := range results {
		switch {
		case r.Class == ClassNotProbed:
			skipped++
		case r.Up:
			up++
		default:
			down++
		}
	}
	p.log.InfoContext(ctx, "probe sweep done", "targets", len(targets), "up", up, "down", down, "not_probed", skipped)
	return results
}

// schedule returns the order in which to start targets: those a rollout
// awaits a verdict on first, then suspects, then targets never checked,
// then the rest, each group costliest first.
// Starting the longest jobs first keeps a sweep's length near the bound
// set by total work over concurrency; a hanging endpoint started last
// would add a whole timeout to it.
func schedule(targets []Target) []int {
	order := make([]int, len(targets))
	for i := range order {
		order[i] = i
	}
	group := func(t Target) int {
		switch {
		case t.Awaited:
			return 0
		case t.Suspect:
			return 1
		case !t.Known:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ta, tb := targets[a], targets[b]
		if c := cmp.Compare(group(ta), group(tb)); c != 0 {
			return c
		}
		return cmp.Compare(tb.Cost, ta.Cost)
	})
	return order
}

// probe checks one target, confirming a failure with one retry after a
// jittered delay so that a one-off blip does not declare it down. For a
// suspect the retry is hedged: it starts after the delay even while the
// first attempt is still waiting, so an endpoint that hangs costs one
// timeout plus the delay instead of two timeouts.
func (p *Prober) probe(ctx context.Context, t Target) Result {
	if t.Suspect {
		return p.hedged(ctx, t)
	}
	first := p.check(ctx, t)
	if first.Up {
		return first
	}
	d := p.opts.ConfirmDelay/2 + rand.N(p.opts.ConfirmDelay)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return first
	case <-timer.C:
	}
	second := p.check(ctx, t)
	if second.Up {
		p.log.DebugContext(ctx, "probe failure not confirmed", "tenant", t.TenantID, "class", first.Class)
		return second
	}
	second.Confirmed = true
	p.log.DebugContext(ctx, "probe failure confirmed", "tenant", t.TenantID, "class", second.Class, "status", second.Status)
	return second
}

func (p *Prober) hedged(ctx context.Context, t Target) Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan Result, 2)
	go func() { results <- p.check(ctx, t) }()
	d := p.opts.ConfirmDelay/2 + rand.N(p.opts.ConfirmDelay)
	timer := time.NewTimer(d)
	defer timer.Stop()
	var first Result
	select {
	case first = <-results:
		if first.Up {
			return first
		}
		// A fast failure: the retry still waits out its jitter.
		select {
		case <-ctx.Done():
			return first
		case <-timer.C:
		}
		second := p.check(ctx, t)
		if !second.Up {
			second.Confirmed = true
		}
		return second
	case <-ctx.Done():
		return Result{TenantID: t.TenantID, URL: t.URL, Class: ClassNotProbed}
	case <-timer.C:
	}
	go func() { results <- p.check(ctx, t) }()
	a := <-results
	if a.Up {
		return a // the other attempt is cancelled
	}
	b := <-results
	if b.Up {
		return b
	}
	// Both failed: report the later verdict, as the sequential path does.
	if a.Checked.After(b.Checked) {
		b = a
	}
	b.Confirmed = true
	return b
}

// check makes one attempt and evaluates every condition on its answer.
func (p *Prober) check(ctx context.Context, t Target) Result {
	r := Result{TenantID: t.TenantID, URL: t.URL, Checked: time.Now()}
	// start precedes the timeout so a timed-out attempt reports a latency
	// of at least the timeout.
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		r.Class = ClassConnect
		r.Conditions = []Condition{{Name: CondReachable, Detail: err.Error()}}
		return r
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "silo-probe")
	resp, err := p.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		r.Status = resp.StatusCode
	}
	r.Latency = time.Since(start)
	if err != nil {
		r.Class = Classify(err)
		r.Conditions = []Condition{{Name: CondReachable, Detail: err.Error()}}
		return r
	}
	r.Conditions = []Condition{{Name: CondReachable, OK: true}}
	add := func(name, class string, ok bool, detail string) {
		r.Conditions = append(r.Conditions, Condition{Name: name, OK: ok, Detail: detail})
		if !ok && r.Class == "" {
			r.Class = class
		}
	}
	add(CondStatus, ClassStatus, r.Status == http.StatusOK, fmt.Sprintf("status %d", r.Status))
	var doc struct {
		Status string `json:"status"`
	}
	if jerr := json.Unmarshal(body, &doc); jerr != nil {
		add(CondBody, ClassBody, false, "body is not JSON")
	} else {
		add(CondBody, ClassBody, doc.Status == "ok", fmt.Sprintf("status %q", doc.Status))
	}
	add(CondLatency, ClassSlow, r.Latency < p.opts.SlowThreshold, r.Latency.Round(time.Millisecond).String())
	r.Up = r.Class == ""
	return r
}

// Classify names the failure class of a transport error. The order
// matters: a DNS lookup can time out (still dns), and a dial can time out
// (timeout, since the address answered nothing).
func Classify(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return ClassDNS
	}
	if isTLS(err) {
		return ClassTLS
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return ClassTimeout
	}
	// The handshake's own failures are plain strings prefixed "tls: ";
	// looked at after timeouts, so a handshake cut short by the deadline
	// stays a timeout.
	if strings.Contains(err.Error(), "tls: ") {
		return ClassTLS
	}
	// A refused dial (*net.OpError "dial", ECONNREFUSED) and anything else
	// that failed to reach the application (reset, unreachable, closed
	// mid-answer) is connect: the endpoint is not listening.
	return ClassConnect
}

// isTLS recognises the typed errors of a failed handshake or certificate
// check, wherever the transport wrapped them.
func isTLS(err error) bool {
	var (
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		verErr   *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		certErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &verErr),
		errors.As(err, &authErr), errors.As(err, &hostErr), errors.As(err, &certErr):
		return true
	}
	return false
}
