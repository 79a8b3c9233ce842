// Package sim simulates a fleet of tenant health endpoints on loopback, so
// the prober can be tested and benchmarked against thousands of endpoints
// without deploying any: a few listeners (as a few load balancers would)
// serve many tenants by path, each with a behaviour that can change while
// the fleet runs.
package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/server"
)

// Mode is how an endpoint answers.
type Mode int

const (
	// Up answers 200 {"status":"ok"} after a latency drawn from the
	// fleet's distribution.
	Up Mode = iota
	// Down answers 503.
	Down
	// Slow answers like Up, but after the fleet's SlowLatency.
	Slow
	// Hang never answers: it waits until the client gives up (or the
	// fleet closes).
	Hang
	// Flap fails (503) one request in Every, starting with the first.
	Flap
	// BadBody answers 200 {"status":"degraded"}.
	BadBody
)

// Behaviour is one endpoint's behaviour.
type Behaviour struct {
	Mode Mode
	// Every is the flapping period: one request in Every fails. 1 fails
	// them all.
	Every int
}

// Uniform draws latencies uniformly from [lo, hi).
func Uniform(lo, hi time.Duration) func() time.Duration {
	return func() time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + rand.N(hi-lo)
	}
}

// Options configure a Fleet. Zero values take the defaults.
type Options struct {
	// Endpoints is the number of tenants (default 10).
	Endpoints int
	// Listeners is the number of loopback listeners tenants are spread
	// over (default 4).
	Listeners int
	// Latency draws an Up endpoint's latency (default uniform 20–200ms).
	Latency func() time.Duration
	// SlowLatency is how long a Slow endpoint takes (default 3s).
	SlowLatency time.Duration
	// Behaviour gives endpoint i its initial behaviour (default Up).
	Behaviour func(i int) Behaviour
}

type endpoint struct {
	id       string
	base     string // the tenant endpoint, without /health
	mu       sync.Mutex
	b        Behaviour
	requests atomic.Int64
}

// Fleet is a running simulated fleet.
type Fleet struct {
	opts      Options
	ctx       context.Context // ends when the fleet closes, releasing Hang handlers
	cancel    context.CancelFunc
	servers   []*http.Server
	endpoints []*endpoint
	byID      map[string]*endpoint
	wg        sync.WaitGroup // servers and in-flight handlers
	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool // guards wg.Add against a Close already waiting
}

// Start serves the fleet until Close. ctx bounds the handlers (a hanging
// endpoint returns when it ends), not the listeners: Close stops those.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Endpoints <= 0 {
		opts.Endpoints = 10
	}
	if opts.Listeners <= 0 {
		opts.Listeners = 4
	}
	if opts.Latency == nil {
		opts.Latency = Uniform(20*time.Millisecond, 200*time.Millisecond)
	}
	if opts.SlowLatency <= 0 {
		opts.SlowLatency = 3 * time.Second
	}
	f := &Fleet{opts: opts, byID: make(map[string]*endpoint, opts.Endpoints)}
	f.ctx, f.cancel = context.WithCancel(ctx)
	var bases []string
	var lns []net.Listener
	for range opts.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			f.cancel()
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
		bases = append(bases, "http://"+ln.Addr().String())
	}
	for i := range opts.Endpoints {
		id := fmt.Sprintf("t%05d", i)
		e := &endpoint{id: id, base: bases[i%len(bases)] + "/t/" + id}
		if opts.Behaviour != nil {
			e.b = opts.Behaviour(i)
		}
		f.endpoints = append(f.endpoints, e)
		f.byID[id] = e
	}
	for _, ln := range lns {
		// A slow endpoint answers after SlowLatency, so the write timeout
		// allows that and a minute more; a hanging one writes nothing and
		// still hangs until its client gives up, as it should.
		srv := server.New(http.HandlerFunc(f.serve), server.Timeouts{Header: 5 * time.Second, Read: 10 * time.Second, Write: opts.SlowLatency + time.Minute})
		srv.BaseContext = func(net.Listener) context.Context { return f.ctx }
		f.servers = append(f.servers, srv)
		f.wg.Go(func() {
			// Serve returns ErrServerClosed on Close; anything else
			// is a broken listener, and the probes will say so.
			_ = srv.Serve(ln)
		})
	}
	return f, nil
}

// Close stops the listeners, releases hanging handlers and waits for the
// fleet's goroutines.
func (f *Fleet) Close() {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		// Connections first, so a released hanging handler has no client
		// left to answer; then the handlers' context.
		for _, s := range f.servers {
			_ = s.Close()
		}
		f.cancel()
		f.wg.Wait()
	})
}

// Targets lists every endpoint as a probe target.
func (f *Fleet) Targets() []probe.Target {
	out := make([]probe.Target, len(f.endpoints))
	for i, e := range f.endpoints {
		out[i] = probe.Target{TenantID: e.id, URL: e.base + "/health"}
	}
	return out
}

// IDs lists the tenant ids, in order.
func (f *Fleet) IDs() []string {
	out := make([]string, len(f.endpoints))
	for i, e := range f.endpoints {
		out[i] = e.id
	}
	return out
}

// Endpoint is tenant id's endpoint (what the registry would hold).
func (f *Fleet) Endpoint(id string) string {
	if e := f.byID[id]; e != nil {
		return e.base
	}
	return ""
}

// ErrUnknown: no simulated tenant with that id.
var ErrUnknown = errors.New("unknown simulated tenant")

// SetBehaviour changes tenant id's behaviour from its next request on, and
// restarts its flapping count.
func (f *Fleet) SetBehaviour(id string, b Behaviour) error {
	e := f.byID[id]
	if e == nil {
		return fmt.Errorf("set behaviour of %s: %w", id, ErrUnknown)
	}
	e.mu.Lock()
	e.b = b
	e.requests.Store(0)
	e.mu.Unlock()
	return nil
}

// Requests is how many requests tenant id has had since its behaviour was
// last set.
func (f *Fleet) Requests(id string) int64 {
	if e := f.byID[id]; e != nil {
		return e.requests.Load()
	}
	return 0
}

func (f *Fleet) serve(w http.ResponseWriter, r *http.Request) {
	// http.Server does not wait for its handlers; the fleet does, so that
	// Close returns with nothing of it still running.
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	f.wg.Add(1)
	f.mu.Unlock()
	defer f.wg.Done()

	rest, ok := strings.CutPrefix(r.URL.Path, "/t/")
	id, tail, _ := strings.Cut(rest, "/")
	e := f.byID[id]
	if !ok || e == nil || tail != "health" {
		http.NotFound(w, r)
		return
	}
	e.mu.Lock()
	b := e.b
	e.mu.Unlock()
	n := e.requests.Add(1)
	ctx := r.Context()
	switch b.Mode {
	case Down:
		writeStatus(w, http.StatusServiceUnavailable, "down")
	case Hang:
		<-ctx.Done()
		// Never answer, even when released by Close: drop the connection.
		panic(http.ErrAbortHandler)
	case Flap:
		every := max(b.Every, 1)
		if (n-1)%int64(every) == 0 {
			writeStatus(w, http.StatusServiceUnavailable, "down")
			return
		}
		if wait(ctx, f.opts.Latency()) {
			writeStatus(w, http.StatusOK, "ok")
		}
	case Slow:
		if wait(ctx, f.opts.SlowLatency) {
			writeStatus(w, http.StatusOK, "ok")
		}
	case BadBody:
		if wait(ctx, f.opts.Latency()) {
			writeStatus(w, http.StatusOK, "degraded")
		}
	default:
		if wait(ctx, f.opts.Latency()) {
			writeStatus(w, http.StatusOK, "ok")
		}
	}
}

// wait reports whether d passed before the client (or the fleet) gave up.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func writeStatus(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "{\"status\":%q}\n", status)
}
