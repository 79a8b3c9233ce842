// Command prober is the fleet health Lambda of the silo control plane: on
// each scheduled invocation it sweeps one shard of the fleet (internal/probe)
// within the invocation's deadline and records what changed in the
// registry, with transitions on the event bus. Wiring only; behaviour lives
// in internal/probe.
//
// Environment (set by the control-plane stack):
//
//	SILO_REGISTRY_TABLE  the registry table
//	SILO_EVENT_BUS       the bus health transitions go to
//	SILO_PROBE_SHARDS    how many shards the fleet is split into (default 1)
//
// The event may name the shard: {"shard": i, "shards": n}; the schedule
// sends one event per shard. An event without one sweeps shard 0 of
// SILO_PROBE_SHARDS.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	ctx := context.Background()
	h, err := build(ctx, log, os.Getenv)
	if err != nil {
		log.Error("prober start failed", "err", err)
		os.Exit(1)
	}
	lambda.StartWithOptions(h.handle, lambda.WithContext(ctx))
}

// Event selects the shard to sweep.
type Event struct {
	Shard  *int `json:"shard,omitempty"`
	Shards int  `json:"shards,omitempty"`
}

type handler struct {
	sweeper *probe.Sweeper
	shards  int
	log     *slog.Logger
}

func build(ctx context.Context, log *slog.Logger, env func(string) string) (*handler, error) {
	table, bus := env("SILO_REGISTRY_TABLE"), env("SILO_EVENT_BUS")
	var missing []string
	if table == "" {
		missing = append(missing, "SILO_REGISTRY_TABLE")
	}
	if bus == "" {
		missing = append(missing, "SILO_EVENT_BUS")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	shards := 1
	if s := env("SILO_PROBE_SHARDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("SILO_PROBE_SHARDS: %q is not a positive whole number", s)
		}
		shards = n
	}
	cfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return nil, err
	}
	reg := registry.New(dynamodb.NewFromConfig(cfg), table)
	// The recorder lives as long as the execution environment: a warm one
	// keeps summing the open hour's roll-up across invocations.
	return &handler{
		sweeper: &probe.Sweeper{
			Registry: reg, Log: log, Shards: shards,
			Prober:   probe.New(probe.Options{Concurrency: 200, Timeout: 5 * time.Second}, log),
			Recorder: probe.NewRecorder(reg, vending.NewBus(eventbridge.NewFromConfig(cfg), bus, log), probe.RecorderOptions{}, log),
		},
		shards: shards, log: log,
	}, nil
}

func (h *handler) handle(ctx context.Context, raw json.RawMessage) (probe.SweepStats, error) {
	var ev Event
	if len(raw) > 0 {
		// A scheduled event from EventBridge has other fields; only the
		// shard fields matter.
		_ = json.Unmarshal(raw, &ev)
	}
	s := *h.sweeper
	if ev.Shards > 0 {
		s.Shards = ev.Shards
	}
	if ev.Shard != nil {
		s.Shard = *ev.Shard
	}
	if s.Shard < 0 || s.Shard >= s.Shards {
		return probe.SweepStats{}, fmt.Errorf("shard %d is not in 0..%d", s.Shard, s.Shards-1)
	}
	// Leave a few seconds of the invocation for recording.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	return s.Once(ctx)
}
