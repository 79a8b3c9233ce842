package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/registry"
)

// script is an API that answers GET /v1/rollouts/ro-1 with the next of
// its rollouts each time (the last one from then on), and GET /v1/rollouts
// with the last one. It records the bodies of POSTs.
type script struct {
	mu     sync.Mutex
	steps  []*registry.Rollout
	next   int
	posted map[string]string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	cur := s.steps[min(s.next, len(s.steps)-1)]
	switch {
	case r.Method == http.MethodPost:
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		s.posted[r.URL.Path] = b.String()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.NewRolloutView(s.steps[0]))
	case r.URL.Path == "/v1/rollouts":
		_ = json.NewEncoder(w).Encode(api.RolloutList{Rollouts: []api.RolloutView{api.NewRolloutView(s.steps[len(s.steps)-1])}})
	case r.URL.Path == "/v1/rollouts/ro-1":
		s.next++
		_ = json.NewEncoder(w).Encode(api.RolloutDetail{Rollout: api.NewRolloutView(cur), Tenants: []registry.RolloutTenant{
			{RolloutID: "ro-1", TenantID: "acme-1", Tier: registry.TierBasic, Wave: 0, From: "rel-0", Status: registry.RTHealthy,
				Health: &registry.Health{Status: registry.HealthUp}},
			{RolloutID: "ro-1", TenantID: "beta-2", Tier: registry.TierStandard, Wave: 1, From: "rel-0", Status: registry.RTUnhealthy, Reason: "down: status 502"},
		}})
	default:
		http.NotFound(w, r)
	}
}

// steps builds a rollout's successive records: each phases entry is the
// waves' phases at one read; final is the state of the last.
func steps(final registry.RolloutState, reason string, phases ...[2]registry.WavePhase) []*registry.Rollout {
	var out []*registry.Rollout
	for i, p := range phases {
		r := &registry.Rollout{ID: "ro-1", Release: "rel-1", Plan: "canary:1,100%", State: registry.RolloutRunning,
			Bake: time.Minute, GateTimeout: 5 * time.Minute, MaxFailures: 0, CreatedBy: "operator:ci",
			Waves: []registry.Wave{{Name: "canary", Tenants: 1, Phase: p[0]}, {Name: "wave-2", Tenants: 1, Phase: p[1]}},
			Notes: []registry.Note{{Text: "planned by operator:ci: 2 tenants in 2 waves"}}}
		if p[0] == registry.WavePassed {
			r.Waves[0].Gate = &registry.Gate{Pass: true, Healthy: 1, Why: "wave canary gate: 1 of 1 up; go on"}
			r.Current = 1
		}
		switch p[1] {
		case registry.WavePassed:
			r.Waves[1].Gate = &registry.Gate{Pass: true, Healthy: 1, Why: "wave wave-2 gate: 1 of 1 up; go on"}
		case registry.WaveHalted:
			r.Waves[1].Gate = &registry.Gate{Unhealthy: 1, Why: "wave wave-2 gate: 0 of 1 up, 1 unhealthy (down: status 502 ×1); halt and roll back"}
		}
		if i == len(phases)-1 {
			r.State, r.Reason = final, reason
			r.Notes = append(r.Notes, registry.Note{Text: "the end: " + string(final)})
		}
		out = append(out, r)
	}
	return out
}

func run(t *testing.T, srv string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(append(args, "--api", srv, "--token", "t"))
	err = root.ExecuteContext(t.Context())
	return o.String(), e.String(), err
}

// lines drops the time each progress line starts with.
func lines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if _, rest, ok := strings.Cut(l, "  "); ok {
			l = rest
		}
		out = append(out, l)
	}
	return out
}

func TestRolloutWatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   []*registry.Rollout
		args    []string
		wantErr string
		stderr  []string
	}{
		{
			name: "completed",
			steps: steps(registry.RolloutCompleted, "",
				[2]registry.WavePhase{registry.WaveDeploying, registry.WavePending},
				[2]registry.WavePhase{registry.WaveBaking, registry.WavePending},
				[2]registry.WavePhase{registry.WaveBaking, registry.WavePending}, // no change, no line
				[2]registry.WavePhase{registry.WavePassed, registry.WaveDeploying},
				[2]registry.WavePhase{registry.WavePassed, registry.WavePassed}),
			args: []string{"rollout", "status", "ro-1", "--watch", "--interval", "1ms"},
			stderr: []string{
				"ro-1 running",
				"ro-1 wave 1/2 canary (1 tenants): deploying",
				"ro-1 wave 1/2 canary (1 tenants): baking",
				"ro-1 wave 1/2 canary (1 tenants): passed; wave canary gate: 1 of 1 up; go on",
				"ro-1 wave 2/2 wave-2 (1 tenants): deploying",
				"ro-1 wave 2/2 wave-2 (1 tenants): passed; wave wave-2 gate: 1 of 1 up; go on",
				"ro-1 completed",
			},
		},
		{
			name: "rolled back",
			steps: steps(registry.RolloutRolledBack, "wave wave-2 gate: halt and roll back",
				[2]registry.WavePhase{registry.WavePassed, registry.WaveGating},
				[2]registry.WavePhase{registry.WavePassed, registry.WaveHalted}),
			// The latest, without an id.
			args:    []string{"rollout", "status", "--watch", "--interval", "1ms"},
			wantErr: "rollout ro-1 was rolled back: wave wave-2 gate: halt and roll back",
			stderr: []string{
				"ro-1 running",
				"ro-1 wave 1/2 canary (1 tenants): passed; wave canary gate: 1 of 1 up; go on",
				"ro-1 wave 2/2 wave-2 (1 tenants): gating",
				"ro-1 wave 2/2 wave-2 (1 tenants): halted; wave wave-2 gate: 0 of 1 up, 1 unhealthy (down: status 502 ×1); halt and roll back",
				"ro-1 rolled_back: wave wave-2 gate: halt and roll back",
			},
		},
		{
			name: "start and wait, aborted",
			steps: steps(registry.RolloutAborted, "abort asked by operator:ci",
				[2]registry.WavePhase{registry.WavePending, registry.WavePending},
				[2]registry.WavePhase{registry.WavePassed, registry.WavePending}),
			args:    []string{"rollout", "start", "--release", "rel-1", "--plan", "canary:1,100%", "--bake", "30s", "--failure-tolerance", "0", "--enterprise-last=false", "--wait", "--interval", "1ms"},
			wantErr: "rollout ro-1 is aborted: abort asked by operator:ci",
			stderr: []string{
				"rollout ro-1: rel-1 to 2 tenants in 2 waves (canary 1, wave-2 1)",
				"ro-1 running",
				"ro-1 wave 1/2 canary (1 tenants): passed; wave canary gate: 1 of 1 up; go on",
				"ro-1 aborted: abort asked by operator:ci",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{steps: tc.steps, posted: map[string]string{}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			stdout, stderr, err := run(t, srv.URL, tc.args...)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("error %v, want %q\n%s", err, tc.wantErr, stderr)
			}
			if diff := cmp.Diff(tc.stderr, lines(stderr)); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			for _, want := range []string{"state    " + string(tc.steps[len(tc.steps)-1].State), "WAVE", "canary", "LOG", "the end: "} {
				if !strings.Contains(stdout, want) {
					t.Errorf("the final status lacks %q:\n%s", want, stdout)
				}
			}
			if body := s.posted["/v1/rollouts"]; tc.name == "start and wait, aborted" {
				want := `{"release":"rel-1","plan":"canary:1,100%","bake":"30s","failure_tolerance":0,"enterprise_last":false}`
				if strings.TrimSpace(body) != want {
					t.Errorf("posted %s\nwant   %s", body, want)
				}
			}
		})
	}
}

func TestRolloutStatusTables(t *testing.T) {
	s := &script{posted: map[string]string{}, steps: steps(registry.RolloutRolledBack, "wave wave-2 gate: halt",
		[2]registry.WavePhase{registry.WavePassed, registry.WaveHalted})}
	s.steps[0].Skipped = map[string]int{"pinned": 2, "already on the release": 1}
	srv := httptest.NewServer(s)
	defer srv.Close()

	out, _, err := run(t, srv.URL, "rollout", "status", "ro-1", "--tenants")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"reason    wave wave-2 gate: halt",
		"left out  1 already on the release, 2 pinned",
		"canary  1        passed  1        0          0       0         pass (0 failures ≤ 0)",
		"wave-2  1        halted  0        1          0       0         halt (1 failures > 0)",
		"acme-1  basic     canary  rel-0  healthy    up",
		"beta-2  standard  wave-2  rel-0  unhealthy                  down: status 502",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	out, _, err = run(t, srv.URL, "rollout", "status", "ro-1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var d api.RolloutDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Rollout.Bake != "1m0s" || len(d.Tenants) != 2 {
		t.Errorf("--json: %v %s", err, out)
	}

	if _, _, err := run(t, srv.URL, "rollout", "status", "a", "b"); err == nil {
		t.Error("two ids were accepted")
	} else if _, ok := err.(usageError); !ok {
		t.Errorf("two ids: %v is not a usage error", err)
	}
}
