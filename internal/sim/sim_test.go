package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/sim"
)

type answer struct {
	Code   int
	Status string
}

func get(t *testing.T, url string) answer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}
	defer resp.Body.Close()
	var doc struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
	return answer{resp.StatusCode, doc.Status}
}

func TestBehaviours(t *testing.T) {
	modes := []sim.Behaviour{
		{Mode: sim.Up}, {Mode: sim.Down}, {Mode: sim.Slow}, {Mode: sim.BadBody}, {Mode: sim.Flap, Every: 2},
	}
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints:   len(modes),
		Listeners:   2,
		Latency:     sim.Uniform(0, time.Millisecond),
		SlowLatency: 20 * time.Millisecond,
		Behaviour:   func(i int) sim.Behaviour { return modes[i] },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets := f.Targets()
	tests := []struct {
		name   string
		target int
		want   []answer
	}{
		{"up", 0, []answer{{200, "ok"}}},
		{"down", 1, []answer{{503, "down"}}},
		{"slow", 2, []answer{{200, "ok"}}},
		{"bad body", 3, []answer{{200, "degraded"}}},
		{"flapping one in two", 4, []answer{{503, "down"}, {200, "ok"}, {503, "down"}, {200, "ok"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []answer
			for range tc.want {
				got = append(got, get(t, targets[tc.target].URL))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("answers (-want +got):\n%s", d)
			}
		})
	}
}

func TestSetBehaviour(t *testing.T) {
	f, err := sim.Start(t.Context(), sim.Options{Endpoints: 3, Latency: sim.Uniform(0, time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id := f.IDs()[1]
	url := f.Endpoint(id) + "/health"
	if got := get(t, url); got.Code != 200 {
		t.Fatalf("before: %+v, want 200", got)
	}
	if err := f.SetBehaviour(id, sim.Behaviour{Mode: sim.Down}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, url); got.Code != 503 {
		t.Fatalf("after: %+v, want 503", got)
	}
	if got := f.Requests(id); got != 1 {
		t.Errorf("requests since set = %d, want 1", got)
	}
	if err := f.SetBehaviour("nope", sim.Behaviour{}); !errors.Is(err, sim.ErrUnknown) {
		t.Errorf("unknown id: err = %v, want ErrUnknown", err)
	}
}

// TestCloseReleasesHanging: Close returns although a handler is hanging,
// because it cancels the handlers' context and waits for its servers.
func TestCloseReleasesHanging(t *testing.T) {
	f, err := sim.Start(t.Context(), sim.Options{
		Endpoints: 1,
		Behaviour: func(int) sim.Behaviour { return sim.Behaviour{Mode: sim.Hang} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.Targets()[0].URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Wait until the request is being served, then close under it.
	for f.Requests(f.IDs()[0]) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	f.Close()
	if err := <-done; err == nil {
		t.Error("hanging request answered, want an error once the fleet closed")
	}
	cancel()
}
