package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/lambdazip"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

// SoakOptions configure the soak.
type SoakOptions struct {
	// Tenants signed up over the run.
	Tenants int
	// Duration is the busy part of the run: signups in its first half,
	// the rollout at 40%, previews and restarts throughout. The soak then
	// waits (at most Settle) for everything to reach its end.
	Duration time.Duration
	// Settle bounds the wait after Duration (default: Duration, at least 3m).
	Settle time.Duration
	// Faults is the set of faults injected: mixed, none, throttle,
	// creations, stacksets or restarts.
	Faults string
	// Emulator, when set, is used (reset) instead of starting one.
	Emulator *emulator.Emulator
	// Log receives the platform's logs (discarded when nil).
	Log *slog.Logger
}

// SoakFaultSets are the values of SoakOptions.Faults.
var SoakFaultSets = []string{"mixed", "none", "throttle", "creations", "stacksets", "restarts"}

// faultSet says which kinds of fault a run injects.
type faultSet struct{ throttle, creations, stacksets, restarts bool }

func faultSetOf(name string) (faultSet, bool) {
	switch name {
	case "mixed":
		return faultSet{true, true, true, true}, true
	case "none":
		return faultSet{}, true
	case "throttle":
		return faultSet{throttle: true}, true
	case "creations":
		return faultSet{creations: true}, true
	case "stacksets":
		return faultSet{stacksets: true}, true
	case "restarts":
		return faultSet{restarts: true}, true
	}
	return faultSet{}, false
}

// The fault parameters of a soak: AWS's shapes on the emulator's
// compressed time scale.
const (
	soakCreationDelay   = 2 * time.Second
	soakInProgress      = 5 // AWS's limit on creations in progress
	soakUnusable        = 1500 * time.Millisecond
	soakStackSetDelay   = 300 * time.Millisecond
	soakPoolSize        = 2
	soakProbeEvery      = 3 * time.Second
	soakProbePerTenant  = 100 * time.Millisecond
	soakOperatorEvery   = 2 * time.Second
	soakInstanceFailure = "Resource handler returned message: \"Internal Failure\" (injected by the soak)"
)

// soakThrottle is the fraction of calls throttled per service.
var soakThrottle = map[string]float64{
	"Organizations.*":  0.10,
	"CloudFormation.*": 0.05,
	"STS.AssumeRole":   0.05,
	"DynamoDB.*":       0.02,
}

// Tenant roles: what the soak does to a tenant and the end it expects.
const (
	roleNormal       = "normal"       // ACTIVE on the rolled-out release
	roleDoomed       = "doomed"       // creation FAILED EMAIL_ALREADY_EXISTS: FAILED, no account
	roleFlaky        = "flaky"        // first creation FAILED INTERNAL_FAILURE, retried: ACTIVE
	roleShaky        = "shaky"        // first stack instance FAILED, retried: ACTIVE
	roleDecommission = "decommission" // decommissioned once ACTIVE: CLOSED
)

// SoakFault is one kind of fault: how often the proxy (or the soak)
// injected it and whether the platform came through.
type SoakFault struct {
	Kind     string `json:"kind"`
	Injected int64  `json:"injected"`
	Survived bool   `json:"survived"`
	Note     string `json:"note,omitempty"`
}

// SoakCheck is one of the final checks.
type SoakCheck struct {
	Name     string   `json:"name"`
	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
}

// SoakResult is what a soak found.
type SoakResult struct {
	Tenants  int           `json:"tenants"`
	FaultSet string        `json:"fault_set"`
	Duration time.Duration `json:"duration_ns"`
	Wall     time.Duration `json:"wall_ns"`
	// Settled is how long after Duration everything reached its end (or
	// the settle bound, when it did not).
	Settled time.Duration `json:"settled_ns"`
	// Roles counts the tenants of each role, fixed up front.
	Roles map[string]int `json:"roles"`
	// States counts the soak's tenants by final state.
	States       map[string]int `json:"final_states"`
	Release      string         `json:"release"`
	Rollout      string         `json:"rollout"`
	RolloutState string         `json:"rollout_state"`
	Previews     int            `json:"previews"`
	// Accounts are the organization's member accounts at the end.
	Accounts int `json:"accounts"`
	// Events are the audit events of the soak's tenants.
	Events int `json:"events"`
	// AWSCalls are the requests the emulator's proxy saw (retries and
	// refusals included); ControlPlaneCalls those the control plane made.
	AWSCalls          int64 `json:"aws_calls"`
	ControlPlaneCalls int64 `json:"control_plane_aws_calls"`
	// APICalls are the soak's requests to the silo API; APIRetries those
	// it sent again after a 5xx, a 429 or a broken connection.
	APICalls   int64       `json:"api_calls"`
	APIRetries int64       `json:"api_retries"`
	Faults     []SoakFault `json:"faults_injected"`
	Checks     []SoakCheck `json:"checks"`
	Passed     bool        `json:"passed"`
}

// soakTenant is one signup and what the soak expects of it.
type soakTenant struct {
	i         int
	key, name string
	role      string
	dup       bool          // sent twice at once, and once more later
	at        time.Duration // when it signs up, from the start

	// Guarded by soak.mu.
	answers     []string // the tenant ids the key was answered with
	retries     int      // operator retries
	decomAsked  bool
	state       registry.State
	app, target string
	accountID   string
	reason      string
}

func (t *soakTenant) id() string {
	if len(t.answers) == 0 {
		return ""
	}
	return t.answers[0]
}

func (t *soakTenant) want() registry.State {
	switch t.role {
	case roleDoomed:
		return registry.StateFailed
	case roleDecommission:
		return registry.StateClosed
	}
	return registry.StateActive
}

// soak is one run.
type soak struct {
	ctx   context.Context // the run's parent: the proxy's callbacks use it
	o     SoakOptions
	set   faultSet
	p     *local.Platform
	cl    *api.Client
	log   *slog.Logger
	began time.Time

	apiCalls, apiRetries         atomic.Int64
	reconcilerRestarts, engineRe atomic.Int64
	dupSignups                   atomic.Int64

	mu       sync.Mutex
	tenants  []*soakTenant
	byID     map[string]*soakTenant
	release  string
	rollout  string
	roState  registry.RolloutState
	previews []string
	pool     *preview.Listing

	// injected faults' bookkeeping (guarded by fmu; the proxy calls in)
	fmu         sync.Mutex
	flakyFailed map[string]bool // account names whose creation failed once
	shakyFailed map[string]bool // accounts whose stack instance failed once
	accountName map[string]string
	orgDirect   *organizations.Client // moto itself, past the proxy
}

// Soak runs the whole local platform under faults, drives it through its
// HTTP API as customers, CI and an operator would, all at once, and checks
// at the end that nothing was lost or duplicated. It returns an error only
// when the run could not be made; failed checks are in the result.
func Soak(ctx context.Context, o SoakOptions, progress io.Writer) (*SoakResult, error) {
	set, ok := faultSetOf(o.Faults)
	if !ok {
		return nil, fmt.Errorf("bench soak: faults %q is not one of %s", o.Faults, strings.Join(SoakFaultSets, ", "))
	}
	if o.Tenants < 1 || o.Duration < 10*time.Second {
		return nil, errors.New("bench soak: at least 1 tenant and a duration of 10s")
	}
	if o.Settle <= 0 {
		o.Settle = max(o.Duration, 3*time.Minute)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if progress == nil {
		progress = io.Discard
	}
	began := time.Now()
	p, err := local.Start(ctx, local.Options{
		// A probe of a tenant app costs the emulator a few AWS calls (its
		// table, bucket, secret, key): sweeps of a large fleet are spaced
		// out so that probing does not starve the rest of the platform.
		ProbeEvery: max(soakProbeEvery, time.Duration(o.Tenants)*soakProbePerTenant), PoolSize: soakPoolSize, SignupRate: rate.Inf, Emulator: o.Emulator,
	}, log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	cl, err := api.NewClient(p.Info.API, p.Info.AdminToken)
	if err != nil {
		return nil, err
	}
	s := &soak{ctx: ctx, o: o, set: set, p: p, cl: cl, log: log, began: began, byID: map[string]*soakTenant{},
		flakyFailed: map[string]bool{}, shakyFailed: map[string]bool{}, accountName: map[string]string{}}
	opts := p.Control.Org.Options()
	opts.Endpoint = p.Emulator().MotoEndpoint
	direct, err := awsx.Load(ctx, opts)
	if err != nil {
		return nil, err
	}
	s.orgDirect = organizations.NewFromConfig(direct)
	s.plan()
	p.Proxy().Configure(s.faults())
	fmt.Fprintf(progress, "soak: %d tenants over %s, faults %s; API %s\n", o.Tenants, o.Duration, o.Faults, p.Info.API)

	run, stop := context.WithTimeout(ctx, o.Duration+o.Settle)
	defer stop()
	busy, busyEnd := context.WithTimeout(run, o.Duration)
	defer busyEnd()
	var wg sync.WaitGroup
	for _, t := range s.tenants {
		wg.Go(func() { s.signup(run, t) })
	}
	wg.Go(func() { s.rolloutAt(run, o.Duration*4/10) })
	wg.Go(func() { s.previewsLoop(busy, run) })
	if set.restarts {
		wg.Go(func() { s.restarts(busy) })
	}
	settledAt := s.operate(run, busy, progress)
	stop()
	wg.Wait()

	res := &SoakResult{Tenants: o.Tenants, FaultSet: o.Faults, Duration: o.Duration, Roles: map[string]int{}, States: map[string]int{}}
	if settledAt.IsZero() {
		res.Settled = o.Settle
	} else {
		res.Settled = max(0, settledAt.Sub(began.Add(o.Duration)))
	}
	stats := p.Proxy().Stats()
	res.AWSCalls, res.ControlPlaneCalls = stats.Total(), p.Counter.Total()
	// The checks read AWS as it is, without faults.
	p.Proxy().Configure(emulator.Faults{})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := s.check(cctx, res); err != nil {
		return nil, err
	}
	s.faultTable(res, stats)
	res.APICalls, res.APIRetries = s.apiCalls.Load(), s.apiRetries.Load()
	res.Wall = time.Since(began)
	res.Passed = true
	for _, c := range res.Checks {
		res.Passed = res.Passed && c.Pass
	}
	return res, nil
}

// plan fixes every tenant's role and signup time up front. Roles that
// need a kind of fault the run does not inject are plain tenants.
func (s *soak) plan() {
	n := s.o.Tenants
	spread := s.o.Duration * 45 / 100
	for i := range n {
		t := &soakTenant{i: i, key: fmt.Sprintf("soak-signup-%04d-%s", i, api.NewIdempotencyKey()), role: roleNormal, dup: i%10 == 0,
			at: time.Duration(int64(spread) * int64(i) / int64(n))}
		switch {
		case i%10 == 3 && s.set.creations:
			t.role = roleDoomed
		case i%10 == 5 && s.set.creations:
			t.role = roleFlaky
		case i%10 == 7 && s.set.stacksets:
			t.role = roleShaky
		case i%5 == 1:
			t.role = roleDecommission
		}
		t.name = fmt.Sprintf("Soak %s %04d", strings.ToUpper(t.role[:1])+t.role[1:], i)
		s.tenants = append(s.tenants, t)
	}
}

// faults is the proxy's configuration for the run's fault set.
func (s *soak) faults() emulator.Faults {
	var f emulator.Faults
	if s.set.throttle {
		f.Throttle = soakThrottle
	}
	if s.set.creations {
		f.CreateAccountDelay, f.MaxCreateInProgress, f.NewAccountUnusable = soakCreationDelay, soakInProgress, soakUnusable
		f.CreateAccountFailure = s.creationFailure
	}
	if s.set.stacksets {
		f.StackSetOperationDelay = soakStackSetDelay
		f.StackSetFailure = s.instanceFailure
	}
	return f
}

// creationFailure fails every creation of a doomed tenant's account, and
// the first of a flaky one's. Account names are "silo-<tenant id>", and
// tenant ids start with the slug of the name, which carries the role.
func (s *soak) creationFailure(_, name string) string {
	switch {
	case strings.Contains(name, "-"+roleDoomed+"-"):
		return "EMAIL_ALREADY_EXISTS"
	case strings.Contains(name, "-"+roleFlaky+"-"):
		s.fmu.Lock()
		defer s.fmu.Unlock()
		if !s.flakyFailed[name] {
			s.flakyFailed[name] = true
			return "INTERNAL_FAILURE"
		}
	}
	return ""
}

// instanceFailure fails the first stack instance of a shaky tenant's
// account. The proxy names the account only; its name is read from moto
// directly (not through the proxy, whose faults and counters are the
// platform's).
func (s *soak) instanceFailure(account string) string {
	s.fmu.Lock()
	name, known := s.accountName[account]
	s.fmu.Unlock()
	if !known {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		out, err := s.orgDirect.DescribeAccount(ctx, &organizations.DescribeAccountInput{AccountId: aws.String(account)})
		cancel()
		if err != nil {
			return ""
		}
		name = aws.ToString(out.Account.Name)
		s.fmu.Lock()
		s.accountName[account] = name
		s.fmu.Unlock()
	}
	if !strings.Contains(name, "-"+roleShaky+"-") {
		return ""
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.shakyFailed[account] {
		return ""
	}
	s.shakyFailed[account] = true
	return soakInstanceFailure
}

// call runs an API call as a careful client does: again after a 5xx, a
// 429 or a broken connection (every call the soak makes is safe to
// repeat: signups carry their key, and the rest are reads or ends it
// checks), until ctx ends.
func (s *soak) call(ctx context.Context, f func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		s.apiCalls.Add(1)
		err := f(ctx)
		var ae *api.Error
		retry := err != nil && ctx.Err() == nil && (!errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusTooManyRequests)
		if !retry {
			return err
		}
		s.apiRetries.Add(1)
		if err := awsx.Sleep(ctx, time.Duration(min(attempt+1, 5))*200*time.Millisecond); err != nil {
			return err
		}
	}
}

// signup signs t up at its time; a dup tenant's signup is sent twice at
// once, and once more a while later. Every answer is recorded.
func (s *soak) signup(ctx context.Context, t *soakTenant) {
	if awsx.Sleep(ctx, time.Until(s.began.Add(t.at))) != nil {
		return
	}
	tier := registry.TierStandard
	switch {
	case t.i%7 == 6:
		tier = registry.TierEnterprise
	case t.i%3 == 2:
		tier = registry.TierBasic
	}
	// Each customer signs up from a domain of its own, as customers do: the
	// API's per-domain signup budget is then in force, not switched off.
	req := api.SignupRequest{Name: t.name, Email: fmt.Sprintf("owner@soak%04d.example", t.i), Tier: string(tier), Region: s.p.Info.Region}
	send := func() {
		var out *api.SignupResponse
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			out, err = s.cl.Signup(ctx, req, t.key)
			return err
		})
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				t.answers = append(t.answers, "error: "+err.Error())
			}
			return
		}
		if len(t.answers) == 0 {
			s.byID[out.TenantID] = t
		}
		t.answers = append(t.answers, out.TenantID)
	}
	if !t.dup {
		send()
		return
	}
	var wg sync.WaitGroup
	wg.Go(send)
	wg.Go(send)
	wg.Wait()
	s.dupSignups.Add(2)
	if awsx.Sleep(ctx, s.o.Duration/5) != nil {
		return
	}
	send()
	s.dupSignups.Add(1)
}

// rolloutAt publishes a release at `at` and rolls it out through the
// API, starting again while there is no ACTIVE tenant to roll it to.
func (s *soak) rolloutAt(ctx context.Context, at time.Duration) {
	if awsx.Sleep(ctx, time.Until(s.began.Add(at))) != nil {
		return
	}
	code, err := lambdazip.Pack([]byte("#!/bin/sh\necho soak-release-2\n"))
	if err != nil {
		s.log.Error("soak: pack the release", "error", err)
		return
	}
	var rel *registry.Release
	if err := s.call(ctx, func(ctx context.Context) error {
		var err error
		rel, err = s.cl.PublishRelease(ctx, code, "soak")
		return err
	}); err != nil {
		s.log.Error("soak: publish the release", "error", err)
		return
	}
	s.mu.Lock()
	s.release = rel.Version
	s.mu.Unlock()
	for {
		var r *registry.Rollout
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			r, err = s.cl.StartRollout(ctx, api.RolloutStartRequest{
				Release: rel.Version, Plan: "1,50%,100%", Bake: "2s", GateTimeout: "3m",
				// The tenant apps' health checks call the emulator, which a
				// soak saturates: a probe now and then over the 2s latency
				// threshold is the emulator's load, not the release's fault.
				// A twentieth of the fleet may fail a gate (a 200-tenant run
				// was rolled back for two answers at 2.02s and 2.03s).
				MaxFailures: max(1, s.o.Tenants/20),
			})
			return err
		})
		if err == nil {
			s.mu.Lock()
			s.rollout, s.roState = r.ID, r.State
			s.mu.Unlock()
			return
		}
		// Our own start may have gone through although its answer was lost
		// (a timeout under load): the rollout under way is then ours.
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			var list []*registry.Rollout
			if s.call(ctx, func(ctx context.Context) error {
				var err error
				list, err = s.cl.Rollouts(ctx, 5)
				return err
			}) == nil {
				for _, r := range list {
					if r.Release == rel.Version && !r.Planning() && r.State != registry.RolloutAborted {
						s.mu.Lock()
						s.rollout, s.roState = r.ID, r.State
						s.mu.Unlock()
						return
					}
				}
			}
		}
		// No ACTIVE tenant yet (422), or a plan still being written: try
		// again shortly.
		s.log.Warn("soak: rollout not started", "error", err)
		if awsx.Sleep(ctx, 2*time.Second) != nil {
			return
		}
	}
}

// previewsLoop opens a PR preview every eighth of the run, waits for it
// to serve, and closes it again, until busy ends.
func (s *soak) previewsLoop(busy, run context.Context) {
	every := s.o.Duration / 8
	var wg sync.WaitGroup
	defer wg.Wait()
	for pr := 1; ; pr++ {
		if awsx.Sleep(busy, every) != nil {
			return
		}
		wg.Go(func() { s.previewCycle(run, pr) })
	}
}

func (s *soak) previewCycle(ctx context.Context, pr int) {
	code, err := lambdazip.Pack(fmt.Appendf(nil, "#!/bin/sh\necho soak-pr-%d\n", pr))
	if err != nil {
		return
	}
	var pv *preview.Preview
	if err := s.call(ctx, func(ctx context.Context) error {
		var err error
		pv, err = s.cl.PreviewUp(ctx, api.PreviewUpRequest{Repo: "soak/web", PR: pr, ArtifactZip: code, TTL: "1h", Wait: "10m"})
		return err
	}); err != nil {
		s.log.Warn("soak: preview not opened", "pr", pr, "error", err)
		return
	}
	s.mu.Lock()
	s.previews = append(s.previews, pv.ID)
	s.mu.Unlock()
	// Wait for it to serve (or fail), then hold it a moment: CI runs its
	// tests against it.
	limit, cancel := context.WithTimeout(ctx, max(s.o.Duration/3, time.Minute))
	for !pv.Done() {
		if awsx.Sleep(limit, time.Second) != nil {
			break
		}
		_ = s.call(limit, func(ctx context.Context) error {
			got, err := s.cl.Preview(ctx, pv.ID)
			if err == nil {
				pv = got
			}
			return err
		})
	}
	cancel()
	_ = awsx.Sleep(ctx, 2*time.Second)
	for ctx.Err() == nil {
		err := s.call(ctx, func(ctx context.Context) error {
			_, err := s.cl.PreviewDown(ctx, pv.ID, "soak: PR closed")
			return err
		})
		var ae *api.Error
		if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			return
		}
		_ = awsx.Sleep(ctx, time.Second) // busy: being released already
	}
}

// restarts kills the reconciler's runner and the rollout engine in turn,
// each every sixth of the run, until busy ends.
func (s *soak) restarts(busy context.Context) {
	every := s.o.Duration / 12
	for n := 1; ; n++ {
		if awsx.Sleep(busy, every) != nil {
			return
		}
		if n%2 == 1 {
			if s.p.RestartReconciler() == nil {
				s.reconcilerRestarts.Add(1)
			}
		} else if s.p.RestartRollouts() == nil {
			s.engineRe.Add(1)
		}
	}
}

// operate is the operator: every few seconds it reads the fleet through
// the API, retries the tenants expected to need it, decommissions those
// due, follows the rollout, and reports progress. It returns when, after
// busy ended, everything has reached its end (the time it did), or when
// run ends (zero time).
func (s *soak) operate(run, busy context.Context, progress io.Writer) time.Time {
	lastReport := time.Time{}
	for {
		s.observe(run)
		settled := busy.Err() != nil && s.settled(run)
		if time.Since(lastReport) >= 10*time.Second || settled {
			lastReport = time.Now()
			fmt.Fprintln(progress, s.progressLine())
		}
		if settled {
			return time.Now()
		}
		if awsx.Sleep(run, soakOperatorEvery) != nil {
			return time.Time{}
		}
	}
}

// observe reads the ended and serving tenants, acts on them, and the
// rollout.
func (s *soak) observe(ctx context.Context) {
	for _, st := range []registry.State{registry.StateActive, registry.StateFailed, registry.StateClosed} {
		cursor := ""
		for {
			var page *api.TenantList
			if err := s.call(ctx, func(ctx context.Context) error {
				var err error
				page, err = s.cl.Tenants(ctx, string(st), registry.MaxPageSize, cursor)
				return err
			}); err != nil {
				return
			}
			for _, v := range page.Tenants {
				s.act(ctx, v)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
	}
	s.mu.Lock()
	id := s.rollout
	s.mu.Unlock()
	if id != "" {
		var r *registry.Rollout
		if s.call(ctx, func(ctx context.Context) error {
			var err error
			r, _, err = s.cl.Rollout(ctx, id)
			return err
		}) == nil {
			s.mu.Lock()
			s.roState = r.State
			s.mu.Unlock()
		}
	}
}

// act records what the listing says of one of the soak's tenants and does
// what an operator would.
func (s *soak) act(ctx context.Context, v api.TenantView) {
	s.mu.Lock()
	t := s.byID[v.ID]
	if t == nil {
		s.mu.Unlock()
		return
	}
	t.state, t.app, t.target, t.accountID, t.reason = v.State, v.AppVersion, v.TargetVersion, v.AccountID, v.Reason
	retry := v.State == registry.StateFailed && (t.role == roleFlaky || t.role == roleShaky) && t.retries < 3
	decom := v.State == registry.StateActive && t.role == roleDecommission && !t.decomAsked
	if retry {
		t.retries++
	}
	if decom {
		t.decomAsked = true
	}
	s.mu.Unlock()
	var action, reason string
	switch {
	case retry:
		action, reason = "retry", "soak: the operator retries a "+t.role+" tenant"
	case decom:
		action, reason = "decommission", "soak: the customer left"
	default:
		return
	}
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.cl.Action(ctx, v.ID, action, reason)
		return err
	})
	if err != nil && ctx.Err() == nil {
		// Lost a race with the platform (409): the next look tries again.
		s.log.Warn("soak: operator action refused", "tenant", v.ID, "action", action, "error", err)
		s.mu.Lock()
		if retry {
			t.retries--
		} else {
			t.decomAsked = false
		}
		s.mu.Unlock()
	}
}

// settled reports whether every tenant, the rollout and the previews have
// reached their ends.
func (s *soak) settled(ctx context.Context) bool {
	s.mu.Lock()
	for _, t := range s.tenants {
		if t.id() == "" || t.state != t.want() ||
			t.want() == registry.StateActive && (s.release == "" || t.app != s.release || t.target != s.release) {
			s.mu.Unlock()
			return false
		}
	}
	done := s.roState.Final()
	previews := slices.Clone(s.previews)
	s.mu.Unlock()
	if !done {
		return false
	}
	for _, id := range previews {
		var pv *preview.Preview
		if s.call(ctx, func(ctx context.Context) error {
			var err error
			pv, err = s.cl.Preview(ctx, id)
			return err
		}) != nil || pv.Phase != preview.PhaseReleased {
			return false
		}
	}
	var l *preview.Listing
	if s.call(ctx, func(ctx context.Context) error {
		var err error
		l, err = s.cl.Previews(ctx)
		return err
	}) != nil {
		return false
	}
	s.mu.Lock()
	s.pool = l
	s.mu.Unlock()
	return poolAtTarget(l)
}

func poolAtTarget(l *preview.Listing) bool {
	return l.Counts[string(registry.PoolAvailable)] == l.Target && l.Counts[string(registry.PoolLeased)] == 0 &&
		l.Counts[string(registry.PoolResetting)] == 0 && l.Counts["creating"] == 0
}

func (s *soak) progressLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts := map[registry.State]int{}
	signed := 0
	for _, t := range s.tenants {
		if t.id() != "" {
			signed++
			counts[t.state]++
		}
	}
	inProgress := signed - counts[registry.StateActive] - counts[registry.StateFailed] - counts[registry.StateClosed]
	ro := "not started"
	if s.rollout != "" {
		ro = string(s.roState)
	}
	return fmt.Sprintf("soak %s: %d/%d signed up, %d in progress, %d ACTIVE, %d FAILED, %d CLOSED; rollout %s; %d previews",
		time.Since(s.began).Round(time.Second), signed, len(s.tenants), inProgress,
		counts[registry.StateActive], counts[registry.StateFailed], counts[registry.StateClosed], ro, len(s.previews))
}

// check runs the final checks on the registry and the organization as
// they are, and fills res.
func (s *soak) check(ctx context.Context, res *SoakResult) error {
	cfg, err := s.p.Control.Org.Config(ctx, nil)
	if err != nil {
		return err
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), s.p.Registry.Table())
	all := map[string]*registry.Tenant{}
	for _, st := range registry.States() {
		cursor := ""
		for {
			page, err := reg.List(ctx, st, registry.ListOptions{Limit: registry.MaxPageSize, Cursor: cursor})
			if err != nil {
				return err
			}
			for _, t := range page.Tenants {
				all[t.ID] = t
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
	}
	var accounts []struct{ id, name string }
	ap := organizations.NewListAccountsPaginator(organizations.NewFromConfig(cfg), &organizations.ListAccountsInput{})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list accounts: %w", err)
		}
		for _, a := range page.Accounts {
			if id := aws.ToString(a.Id); id != s.p.Info.ManagementAccountID {
				accounts = append(accounts, struct{ id, name string }{id, aws.ToString(a.Name)})
			}
		}
	}
	res.Accounts = len(accounts)
	pool, err := reg.ListPoolAll(ctx)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	res.Release, res.Rollout, res.Previews = s.release, s.rollout, len(s.previews)
	for _, t := range s.tenants {
		res.Roles[t.role]++
	}

	// 1. One tenant per signup key.
	var p1 []string
	byName := map[string][]string{}
	for _, t := range all {
		byName[t.Name] = append(byName[t.Name], t.ID)
	}
	for _, t := range s.tenants {
		switch {
		case len(t.answers) == 0:
			p1 = append(p1, fmt.Sprintf("%s: never answered", t.key))
		case slices.ContainsFunc(t.answers, func(a string) bool { return a != t.answers[0] }):
			p1 = append(p1, fmt.Sprintf("%s answered %v", t.key, t.answers))
		case len(byName[t.name]) != 1:
			p1 = append(p1, fmt.Sprintf("%s (%q): %d tenants in the registry %v", t.key, t.name, len(byName[t.name]), byName[t.name]))
		}
	}
	res.Checks = append(res.Checks, soakCheck("one tenant per signup key", p1))

	// 2. Every tenant in the end asked for; ACTIVE ones on the release.
	var p2 []string
	for _, t := range s.tenants {
		tn := all[t.id()]
		if tn == nil {
			p2 = append(p2, fmt.Sprintf("%s (%s): no tenant", t.key, t.role))
			continue
		}
		res.States[string(tn.State)]++
		switch {
		case tn.State != t.want():
			p2 = append(p2, fmt.Sprintf("%s (%s): %s, want %s%s", tn.ID, t.role, tn.State, t.want(), why(tn.Reason)))
		case tn.State == registry.StateActive && (tn.AppVersion != s.release || tn.TargetVersion != s.release):
			p2 = append(p2, fmt.Sprintf("%s (%s): ACTIVE on %s, target %s; want the rolled-out %s", tn.ID, t.role, short(tn.AppVersion), short(tn.TargetVersion), short(s.release)))
		case t.role == roleDoomed && tn.AccountID != "":
			p2 = append(p2, fmt.Sprintf("%s (doomed): FAILED but holds account %s", tn.ID, tn.AccountID))
		}
	}
	res.Checks = append(res.Checks, soakCheck("every tenant in the state asked for, ACTIVE ones on the rolled-out release", p2))

	// 3. No duplicate accounts.
	var p3 []string
	owner := map[string]string{}
	for _, tn := range all {
		if tn.AccountID == "" || tn.Kind == registry.KindPreview {
			continue // previews lease pool accounts in turn
		}
		if other, ok := owner[tn.AccountID]; ok {
			p3 = append(p3, fmt.Sprintf("account %s held by %s and %s", tn.AccountID, other, tn.ID))
		}
		owner[tn.AccountID] = tn.ID
	}
	names := map[string][]string{}
	for _, a := range accounts {
		names[a.name] = append(names[a.name], a.id)
	}
	for name, ids := range names {
		if len(ids) > 1 {
			p3 = append(p3, fmt.Sprintf("%d accounts named %s: %v", len(ids), name, ids))
		}
	}
	res.Checks = append(res.Checks, soakCheck("no duplicate accounts", p3))

	// 4. No orphan accounts.
	var p4 []string
	known := map[string]bool{}
	for _, tn := range all {
		if tn.AccountID != "" {
			known[tn.AccountID] = true
		}
	}
	for _, a := range pool {
		known[a.AccountID] = true
	}
	exists := map[string]bool{}
	for _, a := range accounts {
		exists[a.id] = true
		if !known[a.id] {
			p4 = append(p4, fmt.Sprintf("account %s (%s) is in neither the registry nor the pool", a.id, a.name))
		}
	}
	for id := range known {
		if !exists[id] {
			p4 = append(p4, fmt.Sprintf("account %s is in the registry but not in the organization", id))
		}
	}
	res.Checks = append(res.Checks, soakCheck("no orphan accounts", p4))

	// 5. No lost registry updates.
	var p5 []string
	for _, t := range s.tenants {
		tn := all[t.id()]
		if tn == nil {
			continue
		}
		events, err := reg.Events(ctx, tn.ID)
		if err != nil {
			return err
		}
		res.Events += len(events)
		p5 = append(p5, chainProblems(tn, events)...)
	}
	if s.rollout != "" {
		ps, err := s.rolloutProblems(ctx, reg, all)
		if err != nil {
			return err
		}
		p5 = append(p5, ps...)
	}
	res.Checks = append(res.Checks, soakCheck("no lost registry updates (event chains, rollout records)", p5))

	// 6. Previews released, the pool back to its target.
	var p6 []string
	for _, id := range s.previews {
		tn := all[id]
		switch {
		case tn == nil:
			p6 = append(p6, fmt.Sprintf("preview %s: not in the registry", id))
		case tn.State != registry.StateClosed:
			p6 = append(p6, fmt.Sprintf("preview %s: %s%s, not released", id, tn.State, why(tn.Reason)))
		}
	}
	counts := map[registry.PoolState]int{}
	for _, a := range pool {
		counts[a.State]++
	}
	if counts[registry.PoolAvailable] != soakPoolSize || len(pool) != soakPoolSize {
		p6 = append(p6, fmt.Sprintf("pool: %v, want %d available and nothing else", counts, soakPoolSize))
	}
	res.Checks = append(res.Checks, soakCheck("previews released, the pool back to its target", p6))

	// 7. The rollout completed.
	var p7 []string
	res.RolloutState = "not started"
	if s.rollout == "" {
		p7 = append(p7, "no rollout was started")
	} else {
		r, err := reg.GetRollout(ctx, s.rollout)
		if err != nil {
			return err
		}
		res.RolloutState = string(r.State)
		if r.State != registry.RolloutCompleted {
			p7 = append(p7, fmt.Sprintf("rollout %s is %s%s", r.ID, r.State, why(r.Reason)))
		}
	}
	res.Checks = append(res.Checks, soakCheck("the rollout completed", p7))
	return nil
}

func soakCheck(name string, problems []string) SoakCheck {
	sort.Strings(problems)
	return SoakCheck{Name: name, Pass: len(problems) == 0, Problems: problems}
}

func why(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func short(version string) string {
	if len(version) > 12 {
		return version[:12]
	}
	if version == "" {
		return `""`
	}
	return version
}

// chainProblems checks a tenant's audit history against the tenant: it
// starts with its creation, sequence numbers rise and never pass the
// tenant's version, each state change starts where the last one ended,
// and the last one ends in the tenant's state.
func chainProblems(t *registry.Tenant, events []registry.Event) []string {
	if len(events) == 0 {
		return []string{t.ID + ": no events"}
	}
	var out []string
	if e := events[0]; e.Type != "created" || e.To != registry.StateRequested || e.Seq != 1 {
		out = append(out, fmt.Sprintf("%s: first event %s seq %d to %s, want created seq 1 to REQUESTED", t.ID, e.Type, e.Seq, e.To))
	}
	state, seq := registry.StateRequested, events[0].Seq
	for _, e := range events[1:] {
		if e.Seq <= seq {
			out = append(out, fmt.Sprintf("%s: event %s seq %d after seq %d", t.ID, e.Type, e.Seq, seq))
		}
		seq = e.Seq
		if e.To == "" {
			continue
		}
		if e.From != state {
			out = append(out, fmt.Sprintf("%s: event %s seq %d goes %s → %s, but the tenant was %s", t.ID, e.Type, e.Seq, e.From, e.To, state))
		}
		state = e.To
	}
	if seq > t.Version {
		out = append(out, fmt.Sprintf("%s: event seq %d beyond the tenant's version %d", t.ID, seq, t.Version))
	}
	if state != t.State {
		out = append(out, fmt.Sprintf("%s: events end in %s, the tenant is %s", t.ID, state, t.State))
	}
	return out
}

// rolloutProblems checks the rollout's records against the tenants: each
// tenant the rollout moved to UPDATING has a record, and a record that
// says a tenant runs the release agrees with a tenant still serving.
func (s *soak) rolloutProblems(ctx context.Context, reg *registry.Store, all map[string]*registry.Tenant) ([]string, error) {
	r, err := reg.GetRollout(ctx, s.rollout)
	if err != nil {
		return nil, err
	}
	recs, err := reg.RolloutTenants(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	var out []string
	byTenant := map[string]registry.RolloutTenant{}
	for _, rec := range recs {
		byTenant[rec.TenantID] = rec
		tn := all[rec.TenantID]
		switch {
		case tn == nil:
			out = append(out, fmt.Sprintf("rollout record of %s: no such tenant", rec.TenantID))
		case r.State == registry.RolloutCompleted && rec.Status == registry.RTPending:
			out = append(out, fmt.Sprintf("rollout record of %s still pending in a completed rollout", rec.TenantID))
		case rec.Status.OnRelease() && tn.State == registry.StateActive && tn.AppVersion != r.Release:
			out = append(out, fmt.Sprintf("rollout record of %s says %s, the tenant runs %s", rec.TenantID, rec.Status, short(tn.AppVersion)))
		}
	}
	for _, t := range s.tenants {
		tn := all[t.id()]
		if tn == nil {
			continue
		}
		events, err := reg.Events(ctx, tn.ID)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			if e.Detail["rollout"] == r.ID && e.To == registry.StateUpdating {
				if _, ok := byTenant[tn.ID]; !ok {
					out = append(out, fmt.Sprintf("%s: moved by rollout %s (seq %d) without a record", tn.ID, r.ID, e.Seq))
				}
			}
		}
	}
	return out, nil
}

// faultTable fills res.Faults from the proxy's counters and the soak's
// own, each with whether the checks it bears on passed.
func (s *soak) faultTable(res *SoakResult, st emulator.Stats) {
	pass := map[int]bool{}
	for i, c := range res.Checks {
		pass[i+1] = c.Pass
	}
	all := func(ns ...int) bool {
		for _, n := range ns {
			if !pass[n] {
				return false
			}
		}
		return true
	}
	roleOK := func(role string) bool {
		for _, t := range s.tenants {
			if t.role == role && (t.state != t.want() || t.role == roleDoomed && t.accountID != "") {
				return false
			}
		}
		return true
	}
	add := func(kind string, n int64, ok bool, note string) {
		res.Faults = append(res.Faults, SoakFault{Kind: kind, Injected: n, Survived: ok, Note: note})
	}
	if s.set.throttle {
		for _, svc := range []string{"Organizations", "CloudFormation", "STS", "DynamoDB"} {
			var n int64
			for op, c := range st.Throttled {
				if strings.HasPrefix(op, svc+".") {
					n += c
				}
			}
			add("throttled: "+svc, n, all(1, 2, 3, 4, 5, 6, 7), fmt.Sprintf("%.0f%% of calls", 100*soakThrottle[svc+".*"]+100*soakThrottle[svc+".AssumeRole"]))
		}
	}
	if s.set.creations {
		add("account creation slow (IN_PROGRESS)", st.CreateRequests, all(2, 3, 4), soakCreationDelay.String()+" each")
		add(fmt.Sprintf("creation refused at %d in progress", soakInProgress), st.CreateLimitViolations, all(2, 3, 4),
			"0 expected: the quota governor keeps creations under AWS's limit")
		add("creation FAILED EMAIL_ALREADY_EXISTS", st.CreateFailures["EMAIL_ALREADY_EXISTS"], roleOK(roleDoomed) && all(3, 4), "doomed tenants: FAILED, no account")
		add("creation FAILED INTERNAL_FAILURE", st.CreateFailures["INTERNAL_FAILURE"], roleOK(roleFlaky) && all(3, 4), "flaky tenants: retried, ACTIVE")
		add("AssumeRole refused (new account)", st.AssumeRoleDenied, all(2), soakUnusable.String()+" after creation")
	}
	if s.set.stacksets {
		add("StackSet operation slow (RUNNING)", st.StackSetOperations, all(2, 7), soakStackSetDelay.String()+" each")
		add("StackSet operation busy", st.StackSetConflicts, all(2, 7), "timing: another operation was running")
		add("stack instance FAILED", st.StackSetAccountFailures, roleOK(roleShaky), "shaky tenants: retried, ACTIVE")
	}
	if s.set.restarts {
		add("reconciler killed mid-flight", s.reconcilerRestarts.Load(), all(1, 2, 3, 4, 5), "restarted at once")
		add("rollout engine killed mid-flight", s.engineRe.Load(), all(5, 7), "restarted at once")
	}
	add("signup sent twice at once, then again", s.dupSignups.Load(), all(1), "every tenth signup")
	add("API call retried (5xx, 429, broken connection)", s.apiRetries.Load(), all(1, 2), "by the soak as a client")
}

// Print writes the result as tables: faults, checks, summary.
func (r *SoakResult) Print(w io.Writer) {
	fmt.Fprintf(w, "soak: %d tenants, %s, faults %s\n\n", r.Tenants, r.Duration, r.FaultSet)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tINJECTED\tSURVIVED\tNOTE")
	for _, f := range r.Faults {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", f.Kind, f.Injected, yesNo(f.Survived), f.Note)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT")
	for i, c := range r.Checks {
		res := "pass"
		if !c.Pass {
			res = fmt.Sprintf("FAIL (%d)", len(c.Problems))
		}
		fmt.Fprintf(tw, "%d. %s\t%s\n", i+1, c.Name, res)
	}
	tw.Flush()
	for i, c := range r.Checks {
		for j, p := range c.Problems {
			if j == 10 {
				fmt.Fprintf(w, "   %d. ... and %d more\n", i+1, len(c.Problems)-10)
				break
			}
			fmt.Fprintf(w, "   %d. %s\n", i+1, p)
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "wall time\t%s (settled %s after the busy %s)\n", r.Wall.Round(time.Second), r.Settled.Round(time.Second), r.Duration)
	fmt.Fprintf(tw, "roles\t%s\n", countsText(r.Roles))
	fmt.Fprintf(tw, "final states\t%s\n", countsText(r.States))
	fmt.Fprintf(tw, "rollout\t%s %s (release %s)\n", r.Rollout, r.RolloutState, short(r.Release))
	fmt.Fprintf(tw, "previews\t%d opened and closed\n", r.Previews)
	fmt.Fprintf(tw, "member accounts\t%d\n", r.Accounts)
	fmt.Fprintf(tw, "audit events\t%d\n", r.Events)
	fmt.Fprintf(tw, "AWS calls\t%d at the emulator (%d by the control plane)\n", r.AWSCalls, r.ControlPlaneCalls)
	fmt.Fprintf(tw, "API calls\t%d (%d retried)\n", r.APICalls, r.APIRetries)
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(tw, "result\t%s\n", verdict)
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
