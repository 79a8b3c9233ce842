// Package bench holds silo's benchmarks that need the whole platform (the
// emulator, its fault proxy and the control plane), run by `silo bench`.
// Each prints a table of measured figures; none asserts on time.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// VendOptions configure the vend benchmark.
type VendOptions struct {
	Tenants      int
	InProgress   int           // create-account requests in progress at once
	CreationTime time.Duration // how long each creation stays IN_PROGRESS
	StackSetTime time.Duration // how long each StackSet operation runs
	Workers      int
	ClaimTTL     time.Duration // the reconciler's claim on a creation (production: 2m)
}

// VendResult is what the vend benchmark measured.
type VendResult struct {
	Tenants         int                `json:"tenants"`
	Active          int                `json:"active"`
	Wall            time.Duration      `json:"wall_ns"`
	Bound           time.Duration      `json:"bound_ns"`
	LastBatchDeploy time.Duration      `json:"last_batch_deploy_ns"`
	Ratio           float64            `json:"ratio"`
	CallsPerTenant  map[string]float64 `json:"aws_calls_per_tenant"`
	// MillisPerCall is the mean time of one call of each operation, as the
	// control plane saw it (the emulator's service time plus queueing).
	MillisPerCall    map[string]float64 `json:"ms_per_call"`
	PollingPerTenant float64            `json:"status_polls_per_tenant"`
	OtherPerTenant   float64            `json:"aws_calls_per_tenant_excluding_polling_and_registry"`
	RegistryReads    float64            `json:"registry_reads_per_tenant"`
	RegistryWrites   float64            `json:"registry_writes_per_tenant"`
	PeakInProgress   int                `json:"peak_creations_in_progress"`
	QuotaViolations  int64              `json:"quota_violations"`
}

// polling operations: waiting on AWS, not doing work.
var polling = map[string]bool{
	"Organizations.DescribeCreateAccountStatus": true,
	"CloudFormation.DescribeStackSetOperation":  true,
}

// Vend vends o.Tenants tenants through the fault proxy with AWS-shaped
// quotas and reports the wall time against the quota's bound:
// ceil(N/InProgress) × CreationTime, plus the deploy of the last batch.
func Vend(ctx context.Context, o VendOptions, progress io.Writer) (*VendResult, error) {
	if o.Tenants <= 0 || o.InProgress <= 0 || o.CreationTime <= 0 {
		return nil, fmt.Errorf("bench vend: tenants, in-progress and creation time must be positive")
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
	counter := awsx.NewCounter()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := local.Wire(ctx, org, local.ControlOptions{
		Counter: counter,
		Quotas:  vending.Quotas{MaxCreateInProgress: o.InProgress, CreateRate: 1000, CreateBurst: o.InProgress},
		// Poll a creation about 40 times over its life: the lag between AWS
		// finishing and silo noticing is what the ratio pays for.
		PollInterval: o.CreationTime / 40, MaxPollInterval: o.CreationTime / 40,
		// The production claim TTL (local mode shortens it for quick crash
		// recovery): a claim then outlives the tenant's wait for a quota
		// slot and needs no renewal on the way to CreateAccount.
		ClaimTTL: o.ClaimTTL,
	}, log)
	if err != nil {
		return nil, err
	}
	emu.Proxy.Configure(emulator.Faults{
		CreateAccountDelay:     o.CreationTime,
		MaxCreateInProgress:    o.InProgress,
		StackSetOperationDelay: o.StackSetTime,
	})
	ids := make([]string, o.Tenants)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		if _, _, err := c.Registry.Create(ctx, registry.Spec{ID: ids[i], Name: "Bench " + ids[i], Email: "ops@" + ids[i] + ".example",
			Tier: registry.TierStandard, Region: org.Region}, "", "bench"); err != nil {
			return nil, err
		}
	}
	// Progress is watched through a client of its own, so that watching
	// does not count as the platform's registry reads.
	plain, err := org.Config(ctx, nil)
	if err != nil {
		return nil, err
	}
	monitor := registry.New(dynamodb.NewFromConfig(plain), c.Registry.Table())
	counter.Reset()
	workers := o.Workers
	if workers <= 0 {
		workers = o.Tenants
	}
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	runner := vending.NewRunner(c.Reconciler, workers)
	var wg sync.WaitGroup
	wg.Add(1)
	// Every tenant is kicked off by the first sweep; later sweeps only find
	// work a crash left, so they are rare here (each is a query per state).
	go func() { defer wg.Done(); _ = runner.Run(runCtx, 10*time.Second) }()
	active, err := waitActive(ctx, monitor, ids, progress)
	wall := time.Since(start)
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}

	res := &VendResult{Tenants: o.Tenants, Active: active, Wall: wall, CallsPerTenant: map[string]float64{}, MillisPerCall: map[string]float64{}}
	stats := emu.Proxy.Stats()
	res.PeakInProgress, res.QuotaViolations = stats.MaxCreateInProgress, stats.CreateLimitViolations
	n := float64(o.Tenants)
	for _, oc := range counter.Snapshot() {
		per := float64(oc.Calls) / n
		res.MillisPerCall[oc.String()] = float64(oc.Elapsed.Microseconds()) / 1000 / float64(oc.Calls)
		switch {
		case oc.Service == "DynamoDB" && (oc.Operation == "GetItem" || oc.Operation == "Query"):
			res.RegistryReads += per
		case oc.Service == "DynamoDB" && oc.Operation == "TransactWriteItems":
			res.RegistryWrites += per
		default:
			res.CallsPerTenant[oc.String()] = per
			if polling[oc.String()] {
				res.PollingPerTenant += per
			} else {
				res.OtherPerTenant += per
			}
		}
	}
	// The deploy of the last batch: the post-creation work (OU, readiness,
	// stack instance) of the last InProgress tenants to get their account.
	res.LastBatchDeploy, err = lastBatchDeploy(ctx, monitor, ids, o.InProgress)
	if err != nil {
		return nil, err
	}
	batches := math.Ceil(n / float64(o.InProgress))
	res.Bound = time.Duration(batches)*o.CreationTime + res.LastBatchDeploy
	res.Ratio = float64(res.Wall) / float64(res.Bound)
	return res, nil
}

func waitActive(ctx context.Context, reg *registry.Store, ids []string, progress io.Writer) (int, error) {
	// Watching costs the emulator too (a query on the state index scans the
	// table in moto): two small queries a second.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := -1
	for {
		counts := map[registry.State]int{}
		for _, st := range []registry.State{registry.StateActive, registry.StateFailed} {
			p, err := reg.List(ctx, st, registry.ListOptions{Limit: registry.MaxPageSize})
			if err != nil {
				return 0, err
			}
			counts[st] = len(p.Tenants)
		}
		done := counts[registry.StateActive] + counts[registry.StateFailed]
		if progress != nil && done != last {
			fmt.Fprintf(progress, "\rvending: %d/%d active, %d failed   ", counts[registry.StateActive], len(ids), counts[registry.StateFailed])
			last = done
		}
		if done == len(ids) {
			if progress != nil {
				fmt.Fprintln(progress)
			}
			if counts[registry.StateFailed] > 0 {
				return counts[registry.StateActive], fmt.Errorf("%d tenants FAILED", counts[registry.StateFailed])
			}
			return counts[registry.StateActive], nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

func lastBatchDeploy(ctx context.Context, reg *registry.Store, ids []string, batch int) (time.Duration, error) {
	type span struct{ created, active time.Time }
	var spans []span
	for _, id := range ids {
		events, err := reg.Events(ctx, id)
		if err != nil {
			return 0, err
		}
		var s span
		for _, e := range events {
			switch e.To {
			case registry.StatePreparing:
				s.created = e.Time
			case registry.StateActive:
				s.active = e.Time
			}
		}
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].created.Before(spans[j].created) })
	var longest time.Duration
	for _, s := range spans[max(0, len(spans)-batch):] {
		longest = max(longest, s.active.Sub(s.created))
	}
	return longest, nil
}

// Print writes the result as a table.
func (r *VendResult) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "tenants vended\t%d of %d\n", r.Active, r.Tenants)
	fmt.Fprintf(tw, "wall time\t%s\n", r.Wall.Round(time.Millisecond))
	fmt.Fprintf(tw, "quota bound\t%s (creation batches + last batch's deploy %s)\n", r.Bound.Round(time.Millisecond), r.LastBatchDeploy.Round(time.Millisecond))
	fmt.Fprintf(tw, "ratio wall/bound\t%.3f\n", r.Ratio)
	fmt.Fprintf(tw, "peak creations in progress\t%d\n", r.PeakInProgress)
	fmt.Fprintf(tw, "quota violations\t%d\n", r.QuotaViolations)
	fmt.Fprintf(tw, "AWS calls per tenant (excl. polling, registry)\t%.1f\n", r.OtherPerTenant)
	fmt.Fprintf(tw, "status polls per tenant\t%.1f\n", r.PollingPerTenant)
	fmt.Fprintf(tw, "registry reads per tenant\t%.1f\n", r.RegistryReads)
	fmt.Fprintf(tw, "registry writes per tenant\t%.1f\n", r.RegistryWrites)
	for _, op := range []string{"DynamoDB.GetItem", "DynamoDB.Query", "DynamoDB.TransactWriteItems"} {
		if ms, ok := r.MillisPerCall[op]; ok {
			fmt.Fprintf(tw, "  %s\t%.1f ms/call\n", op, ms)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nAWS calls per tenant by operation:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ops := make([]string, 0, len(r.CallsPerTenant))
	for op := range r.CallsPerTenant {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		note := ""
		if polling[op] {
			note = "polling"
		}
		fmt.Fprintf(tw, "  %s\t%.2f\t%.1f ms/call\t%s\n", op, r.CallsPerTenant[op], r.MillisPerCall[op], strings.TrimSpace(note))
	}
	tw.Flush()
}
