package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/registry"
)

// ProbeOptions configure the probe benchmark.
type ProbeOptions struct {
	Endpoints   int
	Listeners   int
	Concurrency int
	Timeout     time.Duration
	LatencyMin  time.Duration
	LatencyMax  time.Duration
	// HangPercent of the endpoints never answer.
	HangPercent float64
	// Silo is the silo binary that serves the simulated fleet (`silo sim
	// fleet`) in a process of its own, so the prober's memory and CPU are
	// measured alone; os.Executable when empty.
	Silo string
}

// SweepFigures are the measurements of one sweep.
type SweepFigures struct {
	Name      string        `json:"name"`
	Wall      time.Duration `json:"wall_ns"`
	Bound     time.Duration `json:"bound_ns"`
	Ratio     float64       `json:"ratio"`
	Up        int           `json:"up"`
	Down      int           `json:"down"`
	NotProbed int           `json:"not_probed"`
	// PeakRSS is the process's resident peak during the sweep (VmHWM,
	// reset before it).
	PeakRSS int64 `json:"peak_rss_bytes"`
	// CPUPerProbe is user+system CPU time over the sweep per target.
	CPUPerProbe time.Duration `json:"cpu_per_probe_ns"`
	// Writes are the registry writes recording the sweep made; Changes the
	// health transitions among them.
	Writes  int `json:"registry_writes"`
	Changes int `json:"changes"`
}

// ProbeResult is the benchmark's outcome.
type ProbeResult struct {
	Options ProbeOptions   `json:"options"`
	Sweeps  []SweepFigures `json:"sweeps"`
	// Console is the console's server time per page over a fleet of
	// Endpoints tenants.
	Console []PageTiming `json:"console"`
}

// Probe runs the probe benchmark: a simulated fleet in a child process,
// then two full sweeps over it, recorded into an in-memory registry that
// counts writes. The first sweep knows nothing of the fleet (every tenant
// new); the second is the steady state the prober runs every minute, with
// each tenant's last health (so hanging endpoints are known suspects).
func Probe(ctx context.Context, o ProbeOptions, progress io.Writer) (*ProbeResult, error) {
	if o.Endpoints <= 0 || o.Concurrency <= 0 || o.Timeout <= 0 {
		return nil, errors.New("bench probe: endpoints, concurrency and timeout must be positive")
	}
	bin := o.Silo
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	targets, stop, err := startFleet(ctx, bin, o, progress)
	if err != nil {
		return nil, err
	}
	defer stop()

	store := newMemStore()
	for _, t := range targets {
		store.put(&registry.Tenant{Spec: registry.Spec{ID: t.TenantID}, State: registry.StateActive,
			Endpoint: strings.TrimSuffix(t.URL, "/health"), Version: 1})
	}
	p := probe.New(probe.Options{Concurrency: o.Concurrency, Timeout: o.Timeout, SlowThreshold: o.Timeout}, slog.New(slog.DiscardHandler))
	defer p.Close()
	rec := probe.NewRecorder(store, nil, probe.RecorderOptions{}, slog.New(slog.DiscardHandler))
	res := &ProbeResult{Options: o}
	for _, name := range []string{"cold (first sweep)", "steady (every minute)"} {
		fmt.Fprintf(progress, "sweeping %d endpoints: %s…\n", len(targets), name)
		tenants := store.all()
		f, err := measureSweep(ctx, p, rec, tenants, o)
		if err != nil {
			return nil, err
		}
		f.Name = name
		res.Sweeps = append(res.Sweeps, f)
	}
	fmt.Fprintf(progress, "timing the console over %d tenants…\n", len(targets))
	if res.Console, err = consolePages(len(targets), 50); err != nil {
		return nil, err
	}
	return res, nil
}

func measureSweep(ctx context.Context, p *probe.Prober, rec *probe.Recorder, tenants map[string]*registry.Tenant, o ProbeOptions) (SweepFigures, error) {
	list := make([]*registry.Tenant, 0, len(tenants))
	for _, t := range tenants {
		list = append(list, t)
	}
	targets := probe.Targets(list)
	resetPeakRSS()
	cpu0 := cpuTime()
	start := time.Now()
	results := p.Sweep(ctx, targets)
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	f := SweepFigures{Wall: wall, PeakRSS: peakRSS(), CPUPerProbe: cpu / time.Duration(max(len(targets), 1))}
	var sum, slowest time.Duration
	for _, r := range results {
		switch {
		case r.Class == probe.ClassNotProbed:
			f.NotProbed++
		case r.Up:
			f.Up++
			slowest = max(slowest, r.Latency)
		default:
			f.Down++
		}
		sum += min(r.Latency, o.Timeout)
	}
	// The bound: all the waiting there is, spread over the concurrency, or
	// one timeout plus the slowest answer, whichever is longer.
	f.Bound = max(sum/time.Duration(o.Concurrency), o.Timeout+slowest)
	f.Ratio = wall.Seconds() / f.Bound.Seconds()
	st := rec.Record(ctx, tenants, results)
	f.Writes, f.Changes = st.Writes(), st.Changes
	if st.Errors > 0 {
		return f, fmt.Errorf("recording the sweep failed %d times", st.Errors)
	}
	return f, nil
}

// startFleet runs `silo sim fleet` and returns its targets.
func startFleet(ctx context.Context, bin string, o ProbeOptions, progress io.Writer) ([]probe.Target, func(), error) {
	dir, err := os.MkdirTemp("", "silo-bench-probe-")
	if err != nil {
		return nil, nil, err
	}
	file := filepath.Join(dir, "targets.json")
	cmd := exec.Command(bin, "sim", "fleet", "--endpoints", strconv.Itoa(o.Endpoints),
		"--listeners", strconv.Itoa(max(o.Listeners, 1)), "--latency-min", o.LatencyMin.String(), "--latency-max", o.LatencyMax.String(),
		"--hang", strconv.FormatFloat(o.HangPercent, 'f', -1, 64), "--targets-file", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the fleet simulator: %w", err)
	}
	var lines strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			lines.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	}
	fmt.Fprintf(progress, "starting a simulated fleet of %d endpoints…\n", o.Endpoints)
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
			var targets []probe.Target
			if err := json.Unmarshal(b, &targets); err == nil {
				return targets, stop, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			mu.Lock()
			defer mu.Unlock()
			return nil, nil, fmt.Errorf("the fleet simulator did not start: %s", lines.String())
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// resetPeakRSS resets the kernel's peak-RSS mark (VmHWM) of this process,
// so the next reading is the peak of what follows (Linux ≥ 4.0).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Print writes the result as a table.
func (r *ProbeResult) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "%d endpoints, latency %s–%s, %.3g%% hanging, concurrency %d, timeout %s\n\n",
		o.Endpoints, o.LatencyMin, o.LatencyMax, o.HangPercent, o.Concurrency, o.Timeout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sweep\twall\tbound\tratio\tup\tdown\tnot probed\tpeak RSS\tCPU/probe\tregistry writes\tchanges\t")
	for _, s := range r.Sweeps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%d\t%d\t%d\t%.1f MB\t%s\t%d\t%d\t\n", s.Name, s.Wall.Round(time.Millisecond),
			s.Bound.Round(time.Millisecond), s.Ratio, s.Up, s.Down, s.NotProbed, float64(s.PeakRSS)/(1<<20),
			s.CPUPerProbe.Round(time.Microsecond), s.Writes, s.Changes)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nbound = max(sum of answer latencies (a hang counts one timeout) / concurrency, timeout + slowest answer)")
	if len(r.Console) > 0 {
		fmt.Fprintf(w, "\nconsole server time over %d tenants (%d requests each, token check included):\n\n", o.Endpoints, r.Console[0].Requests)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "page\tp50\tp95\tmax\tbytes\t")
		for _, p := range r.Console {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t\n", p.Page, p.P50.Round(10*time.Microsecond), p.P95.Round(10*time.Microsecond), p.Max.Round(10*time.Microsecond), p.Bytes)
		}
		tw.Flush()
	}
}

// memStore is an in-memory registry for the benchmark: it keeps tenants
// and counts the writes the recorder makes, so the figures are the
// prober's, not the emulator's.
type memStore struct {
	mu      sync.Mutex
	tenants map[string]*registry.Tenant
	rollups int
}

func newMemStore() *memStore { return &memStore{tenants: map[string]*registry.Tenant{}} }

func (m *memStore) put(t *registry.Tenant) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tenants[t.ID] = t
}

func (m *memStore) all() map[string]*registry.Tenant {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*registry.Tenant, len(m.tenants))
	for id, t := range m.tenants {
		c := *t
		out[id] = &c
	}
	return out
}

func (m *memStore) Get(_ context.Context, id string) (*registry.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return nil, registry.ErrNotFound
	}
	c := *t
	return &c, nil
}

func (m *memStore) Update(_ context.Context, t *registry.Tenant, c registry.Change) (*registry.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.tenants[t.ID]
	if !ok {
		return nil, registry.ErrNotFound
	}
	if cur.Version != t.Version {
		return nil, registry.ErrConflict
	}
	next := *cur
	if c.Mutate != nil {
		c.Mutate(&next)
	}
	next.Version++
	m.tenants[t.ID] = &next
	out := next
	return &out, nil
}

func (m *memStore) PutRollups(_ context.Context, rs []registry.Rollup) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollups += len(rs)
	return nil
}
