package preview_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/preview"
	"github.com/silo-saas/silo/registry"
)

func TestBuildOutcome(t *testing.T) {
	up := &registry.Health{Status: registry.HealthUp}
	down := &registry.Health{Status: registry.HealthDown, Class: "status", Detail: "status == 200: status 500"}
	slow := &registry.Health{Status: registry.HealthDegraded, Class: "slow", Detail: "latency < threshold: 2.5s"}
	for _, tc := range []struct {
		name string
		p    preview.Preview
		want preview.Outcome
	}{
		{"queued", preview.Preview{Phase: preview.PhaseWaiting, Release: "mine"}, preview.OutcomePending},
		{"deploying", preview.Preview{Phase: preview.PhaseDeploying, Release: "mine"}, preview.OutcomePending},
		{"updating, the old build up", preview.Preview{Phase: preview.PhaseUpdating, Release: "mine", Running: "old", Health: up, HealthFresh: true}, preview.OutcomePending},
		{"another build's deploy ended first", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "old", Health: up, HealthFresh: true}, preview.OutcomePending},
		{"running, verdict from before", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "mine", Health: up}, preview.OutcomePending},
		{"running, never probed", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "mine"}, preview.OutcomePending},
		{"running, probed up", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "mine", Health: up, HealthFresh: true}, preview.OutcomeHealthy},
		{"running, probed down", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "mine", Health: down, HealthFresh: true}, preview.OutcomeUnhealthy},
		{"running, probed slow", preview.Preview{Phase: preview.PhaseReady, Release: "mine", Running: "mine", Health: slow, HealthFresh: true}, preview.OutcomeUnhealthy},
		{"replaced while queued", preview.Preview{Phase: preview.PhaseWaiting, Release: "theirs"}, preview.OutcomeSuperseded},
		{"replaced after it ran", preview.Preview{Phase: preview.PhaseReady, Release: "theirs", Running: "mine", Health: up, HealthFresh: true}, preview.OutcomeSuperseded},
		{"replaced, and theirs failed", preview.Preview{Phase: preview.PhaseFailed, Release: "theirs"}, preview.OutcomeSuperseded},
		{"failed", preview.Preview{Phase: preview.PhaseFailed, Release: "mine", Running: "old"}, preview.OutcomeFailed},
		{"being released", preview.Preview{Phase: preview.PhaseReleasing, Release: "mine"}, preview.OutcomeReleased},
		{"released", preview.Preview{Phase: preview.PhaseReleased, Release: "theirs"}, preview.OutcomeReleased},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.BuildOutcome("mine"); got != tc.want {
				t.Errorf("BuildOutcome = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRacingUpsNameTheirBuilds: ups of six builds for one new PR at
// once. Each answer names the build its own up asked for (Build, and the
// Release its own write set), the registry's last accepted write decides
// which one the preview deploys, and every other build reads as
// superseded by it.
func TestRacingUpsNameTheirBuilds(t *testing.T) {
	e := start(t, preview.Config{PoolSize: 0}, local.ControlOptions{})
	const n = 6
	codes := make([][]byte, n)
	want := make([]string, n)
	for i := range n {
		codes[i] = build(t, fmt.Sprint("race-", i))
		// The same content is the same release: publishing it here names
		// the build independently of what Up answers.
		rel, err := e.c.Releases().Publish(t.Context(), codes[i], "test")
		if err != nil {
			t.Fatal(err)
		}
		want[i] = rel.Version
	}
	got := make([]*preview.Preview, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = e.m.Up(t.Context(), preview.UpRequest{Repo: "acme/race", PR: 3, Artifact: codes[i], TTL: time.Hour, Actor: fmt.Sprint("ci-", i)})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("up %d: %v", i, errs[i])
		}
		if got[i].Build != want[i] || got[i].Release != want[i] {
			t.Errorf("up %d answered build %s, release %s; it asked for %s", i, got[i].Build, got[i].Release, want[i])
		}
	}
	cur, err := e.m.Get(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Build != "" {
		t.Errorf("a read names build %s: only an up's answer names its build", cur.Build)
	}
	// The winner is the release of the last accepted write, as the audit
	// history records it.
	evs, err := e.c.Registry.Events(t.Context(), cur.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, ev := range evs {
		if ev.Type == "preview.build" {
			last = ev.Detail["release"]
		}
	}
	if last != cur.Release {
		t.Errorf("the preview deploys %s, but the last accepted up asked for %s", cur.Release, last)
	}
	winners := 0
	for i := range n {
		switch o := cur.BuildOutcome(want[i]); {
		case want[i] == cur.Release:
			winners++
			if o != preview.OutcomePending {
				t.Errorf("the winning build %s: %s, want pending (it waits for an account)", want[i], o)
			}
		case o != preview.OutcomeSuperseded:
			t.Errorf("build %s lost to %s but reads %s", want[i], cur.Release, o)
		}
	}
	if winners != 1 {
		t.Errorf("%d of the builds are the preview's release %s, want 1", winners, cur.Release)
	}
}
