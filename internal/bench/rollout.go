package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/rollout"
	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// RolloutOptions configure the rollout benchmark.
type RolloutOptions struct {
	Tenants        int
	Plan           string
	Bake           time.Duration
	DeployTime     time.Duration // one stack instance's update
	MaxConcurrency int           // StackSets' concurrency per wave
	ProbeEvery     time.Duration // the prober's sweep interval
}

// RolloutWave is one wave's figures.
type RolloutWave struct {
	Name    string        `json:"name"`
	Tenants int           `json:"tenants"`
	Rounds  int           `json:"rounds"`
	Bound   time.Duration `json:"bound_ns"`
	// Deploy is from the wave's start to its tenants' updates recorded;
	// Gate from the bake's end to the gate's decision.
	Deploy time.Duration `json:"deploy_ns"`
	Gate   time.Duration `json:"gate_ns"`
	Total  time.Duration `json:"total_ns"`
}

// RolloutResult is what the rollout benchmark measured.
type RolloutResult struct {
	Options         RolloutOptions `json:"options"`
	State           string         `json:"state"`
	Updated         int            `json:"tenants_updated"`
	Waves           []RolloutWave  `json:"waves"`
	Wall            time.Duration  `json:"wall_ns"`
	Bound           time.Duration  `json:"bound_ns"`
	Ratio           float64        `json:"ratio"`
	PeakConcurrency int            `json:"peak_instances_deploying"`
	Operations      int            `json:"stackset_operations"`
	Overlaps        int            `json:"operations_refused_busy"`
}

// Rollout rolls a release over o.Tenants ACTIVE tenants with the real
// rollout engine, registry (on the emulator's DynamoDB), reconciler and
// prober; only StackSets are simulated, each instance update taking
// DeployTime with at most the wave's concurrency at once. The bound is,
// for each wave, ceil(wave / concurrency) × DeployTime + Bake.
func Rollout(ctx context.Context, o RolloutOptions, progress io.Writer) (*RolloutResult, error) {
	if o.Tenants <= 0 || o.DeployTime <= 0 || o.MaxConcurrency < 1 || o.MaxConcurrency > rollout.MaxConcurrency {
		return nil, fmt.Errorf("bench rollout: tenants and deploy time must be positive, concurrency 1 to %d", rollout.MaxConcurrency)
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = time.Second
	}
	emu, err := emulator.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer emu.Stop()
	org, err := emu.Seed(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		return nil, err
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), "silo-bench-rollout")
	if err := reg.EnsureTable(ctx); err != nil {
		return nil, err
	}
	apps, err := serveApps()
	if err != nil {
		return nil, err
	}
	defer apps.close()

	base := vending.Release{Version: "rel-base", CodeBucket: "bench-artifacts", CodeKey: "base.zip"}
	next := registry.Release{Version: "rel-next", CodeBucket: "bench-artifacts", CodeKey: "next.zip"}
	if err := reg.PutRelease(ctx, next); err != nil {
		return nil, err
	}
	tenants := make([]*registry.Tenant, o.Tenants)
	for i := range tenants {
		id := fmt.Sprintf("bench-%04d", i)
		tenants[i] = &registry.Tenant{
			Spec:  registry.Spec{ID: id, Name: "Bench " + id, Email: id + "@bench.example", Tier: registry.TierStandard, Region: org.Region},
			State: registry.StateActive, AccountID: fmt.Sprintf("%012d", 300000000000+i),
			Endpoint: apps.url + "/" + id, AppVersion: base.Version, TargetVersion: base.Version,
		}
	}
	if err := reg.ImportTenants(ctx, tenants); err != nil {
		return nil, err
	}
	logTo := io.Discard
	if progress != nil {
		logTo = progress
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sim := &simStackSets{deploy: o.DeployTime, ops: map[string]*simOp{}}
	rec, err := vending.New(vending.Config{
		ManagementAccount: org.ManagementAccountID, ProductionOU: "ou-bench", SuspendedOU: "ou-bench-suspended",
		Release: base, EmailPattern: "{tenant}@bench.example",
	}, vending.Deps{Registry: reg, Deployer: sim, Log: log,
		Endpoint: func(_ context.Context, t *registry.Tenant, _ map[string]string) (string, error) {
			return t.Endpoint, nil
		}})
	if err != nil {
		return nil, err
	}
	prober := probe.New(probe.Options{Concurrency: 100, Timeout: 2 * time.Second}, log)
	defer prober.Close()
	sweeper := &probe.Sweeper{Registry: reg, Prober: prober, Shards: 1, Log: log,
		Recorder: probe.NewRecorder(reg, nil, probe.RecorderOptions{}, log)}
	engine := rollout.New(rollout.Config{Poll: 50 * time.Millisecond}, rollout.Deps{Registry: reg, Deployer: sim, Tenants: rec, Log: log})

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { sweepEvery(runCtx, sweeper, o.ProbeEvery) })
	// Every tenant has a verdict before the clock starts.
	if err := waitHealth(ctx, reg, o.Tenants); err != nil {
		return nil, err
	}
	start := time.Now()
	r, err := engine.Start(ctx, rollout.StartRequest{Release: next.Version, Plan: o.Plan, Bake: o.Bake, GateTimeout: time.Minute,
		MaxConcurrency: o.MaxConcurrency, Actor: "bench"})
	if err != nil {
		return nil, err
	}
	wg.Go(func() { engine.Run(runCtx) })
	last := ""
	for {
		cur, err := reg.GetRollout(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		w := cur.Waves[cur.Current]
		if line := fmt.Sprintf("rollout: wave %d/%d %s (%d tenants) %s", cur.Current+1, len(cur.Waves), w.Name, w.Tenants, w.Phase); progress != nil && line != last {
			fmt.Fprintln(progress, line)
			last = line
		}
		if cur.State.Final() {
			r = cur
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond): // watching loads the emulator too
		}
	}
	wall := time.Since(start)
	stop()

	res := &RolloutResult{Options: o, State: string(r.State), Wall: wall}
	recs, err := reg.RolloutTenants(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	for _, t := range recs {
		if t.Status == registry.RTHealthy {
			res.Updated++
		}
	}
	for _, w := range r.Waves {
		rounds := int(math.Ceil(float64(w.Tenants) / float64(w.MaxConcurrency)))
		rw := RolloutWave{Name: w.Name, Tenants: w.Tenants, Rounds: rounds, Bound: time.Duration(rounds)*o.DeployTime + r.Bake}
		if w.StartedAt != nil && w.DeployedAt != nil && w.Gate != nil {
			rw.Deploy = w.DeployedAt.Sub(*w.StartedAt)
			rw.Gate = w.Gate.At.Sub(w.DeployedAt.Add(r.Bake))
			rw.Total = w.Gate.At.Sub(*w.StartedAt)
		}
		res.Bound += rw.Bound
		res.Waves = append(res.Waves, rw)
	}
	res.Ratio = float64(res.Wall) / float64(res.Bound)
	sim.mu.Lock()
	res.PeakConcurrency, res.Operations, res.Overlaps = sim.peak, sim.issued, sim.busy
	sim.mu.Unlock()
	if r.State != registry.RolloutCompleted {
		return res, fmt.Errorf("rollout ended %s: %s", r.State, r.Reason)
	}
	return res, nil
}

// Print writes the result's tables.
func (r *RolloutResult) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "| wave\t| tenants\t| rounds\t| bound\t| deploy\t| gate wait\t| wave total\t|\n|---\t|---\t|---\t|---\t|---\t|---\t|---\t|\n")
	for _, x := range r.Waves {
		fmt.Fprintf(tw, "| %s\t| %d\t| %d\t| %s\t| %s\t| %s\t| %s\t|\n", x.Name, x.Tenants, x.Rounds, x.Bound.Round(time.Millisecond),
			x.Deploy.Round(time.Millisecond), x.Gate.Round(time.Millisecond), x.Total.Round(time.Millisecond))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "| figure\t| value\t|\n|---\t|---\t|\n")
	fmt.Fprintf(tw, "| tenants updated and healthy\t| %d of %d (%s)\t|\n", r.Updated, r.Options.Tenants, r.State)
	fmt.Fprintf(tw, "| plan\t| %s, bake %s, %s per instance, at most %d at once\t|\n", r.Options.Plan, r.Options.Bake, r.Options.DeployTime, r.Options.MaxConcurrency)
	fmt.Fprintf(tw, "| wall time\t| %s\t|\n", r.Wall.Round(time.Millisecond))
	fmt.Fprintf(tw, "| bound (Σ waves: rounds × deploy + bake)\t| %s\t|\n", r.Bound.Round(time.Millisecond))
	fmt.Fprintf(tw, "| ratio wall / bound\t| **%.3f** (target ≤ 1.2)\t|\n", r.Ratio)
	fmt.Fprintf(tw, "| StackSet operations\t| %d (refused as busy: %d)\t|\n", r.Operations, r.Overlaps)
	fmt.Fprintf(tw, "| peak instances deploying\t| %d\t|\n", r.PeakConcurrency)
	_ = tw.Flush()
}

// waitHealth waits until every tenant has a recorded verdict.
func waitHealth(ctx context.Context, reg *registry.Store, n int) error {
	for {
		probed, cursor := 0, ""
		for {
			p, err := reg.List(ctx, registry.StateActive, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
			if err != nil {
				return err
			}
			for _, t := range p.Tenants {
				if t.Health != nil {
					probed++
				}
			}
			if cursor = p.Next; cursor == "" {
				break
			}
		}
		if probed == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apps answers /<tenant>/health for every tenant from one listener.
type apps struct {
	url string
	srv *http.Server
}

func serveApps() (*apps, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &apps{url: "http://" + ln.Addr().String()}
	a.srv = server.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/health") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}), server.Default)
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *apps) close() { _ = a.srv.Close() }

// simStackSets stands in for StackSets: one operation at a time per stack
// set (a second is refused as busy), each instance update DeployTime, at
// most the operation's MaxConcurrentCount at once.
type simStackSets struct {
	deploy time.Duration

	mu      sync.Mutex
	ops     map[string]*simOp
	running int
	peak    int
	issued  int
	busy    int
	current *simOp
}

type simOp struct{ done chan struct{} }

func (s *simStackSets) UpdateInstances(ctx context.Context, opID, _ string, params map[string]map[string]string, prefs stacksets.Preferences) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ops[opID]; ok {
		return opID, ctx.Err() // the same id is the same operation
	}
	if s.current != nil {
		select {
		case <-s.current.done:
		default:
			s.busy++
			return "", fmt.Errorf("bench: %w", stacksets.ErrBusy)
		}
	}
	op := &simOp{done: make(chan struct{})}
	s.ops[opID], s.current = op, op
	s.issued++
	c := max(int(prefs.MaxConcurrentCount), 1)
	go func() {
		defer close(op.done)
		sem := make(chan struct{}, c)
		var wg sync.WaitGroup
		for range params {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				s.mu.Lock()
				s.running++
				s.peak = max(s.peak, s.running)
				s.mu.Unlock()
				time.Sleep(s.deploy) // the simulated instance update itself
				s.mu.Lock()
				s.running--
				s.mu.Unlock()
			})
		}
		wg.Wait()
	}()
	return opID, nil
}

func (s *simStackSets) Wait(ctx context.Context, opID string) (stacksets.Result, error) {
	s.mu.Lock()
	op, ok := s.ops[opID]
	s.mu.Unlock()
	if !ok {
		return stacksets.Result{}, errors.New("bench: unknown operation " + opID)
	}
	select {
	case <-ctx.Done():
		return stacksets.Result{}, ctx.Err()
	case <-op.done:
		return stacksets.Result{}, nil
	}
}

func (s *simStackSets) OperationFailures(context.Context, string) (map[string]string, error) {
	return nil, nil
}

// The reconciler's other Deployer calls; a rollout makes none but outputs.
func (s *simStackSets) AddInstance(context.Context, string, string, string, map[string]string) (string, error) {
	return "", errors.New("bench: not simulated")
}
func (s *simStackSets) UpdateInstance(context.Context, string, string, string, map[string]string) (string, error) {
	return "", errors.New("bench: not simulated")
}
func (s *simStackSets) RemoveInstance(context.Context, string, string, string, bool) (string, error) {
	return "", errors.New("bench: not simulated")
}
func (s *simStackSets) InstanceOutputs(context.Context, string, string) (map[string]string, error) {
	return map[string]string{}, nil
}
func (s *simStackSets) OperationStatus(context.Context, string) (stacksets.Result, error) {
	return stacksets.Result{}, errors.New("bench: not simulated")
}

// StackFailure: the simulated updates never fail.
func (s *simStackSets) StackFailure(context.Context, string, string) (string, error) {
	return "", nil
}

// sweepEvery starts a sweep every interval, or as soon as the last one
// ended when it took longer: a sweep of 200 tenants on the emulator can
// outlast a short interval, and the gate only needs the next verdict.
func sweepEvery(ctx context.Context, s *probe.Sweeper, every time.Duration) {
	for ctx.Err() == nil {
		next := time.Now().Add(every)
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, _ = s.Once(sctx)
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
	}
}
