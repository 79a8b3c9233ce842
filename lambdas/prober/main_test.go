package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// TestLambdaSweepsItsShard wires the Lambda as AWS would start it (the
// environment points at the emulator) and invokes it per shard: each
// tenant is probed by exactly one shard and its health recorded.
func TestLambdaSweepsItsShard(t *testing.T) {
	ctx := context.Background()
	org := emu.ResetT(t)
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"SILO_AWS_ENDPOINT": org.Endpoint, "AWS_REGION": org.Region,
		"AWS_ACCESS_KEY_ID": org.AccessKeyID, "AWS_SECRET_ACCESS_KEY": org.SecretAccessKey,
	} {
		t.Setenv(k, v)
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), "prober-lambda-test")
	if err := reg.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down/health" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer app.Close()
	var tenants []*registry.Tenant
	for _, id := range []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"} {
		tenants = append(tenants, &registry.Tenant{Spec: registry.Spec{ID: id, Name: id, Email: id + "@example.com", Tier: registry.TierBasic, Region: "us-east-1"},
			State: registry.StateActive, Endpoint: app.URL + "/" + id})
	}
	tenants[0].Endpoint = app.URL + "/down"
	if err := reg.ImportTenants(ctx, tenants); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SILO_REGISTRY_TABLE": reg.Table(), "SILO_EVENT_BUS": "silo-events", "SILO_PROBE_SHARDS": "3"}
	h, err := build(ctx, slog.New(slog.DiscardHandler), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := range 3 {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := h.handle(ictx, json.RawMessage(`{"shard":`+string(rune('0'+i))+`,"source":"aws.events"}`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		total += st.Targets
		if st.Record.Errors != 0 || st.Record.Changes != st.Targets {
			t.Errorf("shard %d: %+v", i, st)
		}
	}
	if total != len(tenants) {
		t.Errorf("the shards probed %d tenants in all, want %d", total, len(tenants))
	}
	for _, tn := range tenants {
		got, err := reg.Get(ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := registry.HealthUp
		if tn.ID == "alpha" {
			want = registry.HealthDown
		}
		if got.Health == nil || got.Health.Status != want {
			t.Errorf("%s: health %+v, want %s", tn.ID, got.Health, want)
		}
	}
	if _, err := h.handle(ctx, json.RawMessage(`{"shard":5}`)); err == nil {
		t.Error("shard 5 of 3 accepted")
	}
	if _, err := build(ctx, slog.New(slog.DiscardHandler), func(string) string { return "" }); err == nil {
		t.Error("built without environment")
	}
}
