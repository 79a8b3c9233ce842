package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run silo's platform benchmarks against the local emulator and print their tables",
	}
	cmd.AddCommand(newBenchVendCmd(), newBenchProbeCmd(), newBenchRolloutCmd(), newBenchSoakCmd())
	return cmd
}

func newBenchVendCmd() *cobra.Command {
	var o bench.VendOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "vend",
		Short: "Vend N tenants through the fault proxy under AWS-shaped quotas",
		Long: `vend starts the local emulator behind its fault proxy, makes account
creation asynchronous (each creation IN_PROGRESS for --creation) with at most
--in-progress at once, as AWS does, and vends --tenants tenants to ACTIVE.

It reports the wall time against the bound the quota sets,
ceil(N / in-progress) x creation time + the deploy of the last batch, their
ratio, AWS calls per tenant by operation, registry reads and writes per
tenant, and quota violations (requests the proxy had to refuse).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := cmd.ErrOrStderr()
			res, err := bench.Vend(cmd.Context(), o, progress)
			if err != nil {
				return err
			}
			return printBench(cmd, asJSON, res)
		},
	}
	cmd.Flags().IntVar(&o.Tenants, "tenants", 100, "tenants to vend")
	cmd.Flags().IntVar(&o.InProgress, "in-progress", 5, "create-account requests in progress at once (AWS: 5)")
	cmd.Flags().DurationVar(&o.CreationTime, "creation", 2*time.Second, "how long each account creation takes")
	cmd.Flags().DurationVar(&o.StackSetTime, "stackset", 200*time.Millisecond, "how long each StackSet operation runs")
	cmd.Flags().IntVar(&o.Workers, "workers", 0, "tenants driven at once (default: all)")
	cmd.Flags().DurationVar(&o.ClaimTTL, "claim-ttl", 2*time.Minute, "the reconciler's claim on an account creation (the production default)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newBenchProbeCmd() *cobra.Command {
	var o bench.ProbeOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Sweep a simulated fleet of endpoints and measure the prober",
		Long: `probe serves --endpoints simulated tenant endpoints from a child process
(silo sim fleet), with answers taking --latency-min to --latency-max and
--hang percent never answering, then runs two full sweeps at --concurrency
with a per-probe --timeout, recording results into an in-memory registry.

The first sweep knows nothing of the fleet; the second is the steady state
(each tenant's last health known, as every minute in production). For each
it reports the wall time against the bound, max(sum of answer latencies /
concurrency, timeout + slowest answer), their ratio, the peak RSS of this
process during the sweep, CPU time per probe, and the registry writes the
recording made (a write per change only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := bench.Probe(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printBench(cmd, asJSON, res)
		},
	}
	cmd.Flags().IntVar(&o.Endpoints, "endpoints", 10000, "simulated endpoints")
	cmd.Flags().IntVar(&o.Listeners, "listeners", 8, "loopback listeners the endpoints are spread over")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 500, "probes in flight at once")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Second, "per-probe timeout")
	cmd.Flags().DurationVar(&o.LatencyMin, "latency-min", 20*time.Millisecond, "fastest answer")
	cmd.Flags().DurationVar(&o.LatencyMax, "latency-max", 200*time.Millisecond, "slowest answer")
	cmd.Flags().Float64Var(&o.HangPercent, "hang", 1, "percent of endpoints that never answer")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// printBench prints a benchmark's result: its table, or JSON with --json.
func printBench(cmd *cobra.Command, asJSON bool, res interface{ Print(io.Writer) }) error {
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.Print(cmd.OutOrStdout())
	return nil
}

func newBenchRolloutCmd() *cobra.Command {
	var o bench.RolloutOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll a release over N tenants in waves and measure it against its bound",
		Long: `rollout seeds --tenants ACTIVE tenants in a registry on the local
emulator, each with a live health endpoint, and rolls a new release over
them with the real rollout engine, reconciler and prober (sweeping every
--probe-every). Only StackSets are simulated: one operation at a time, each
instance update taking --deploy, at most --max-concurrency at once.

It reports the wall time against the bound, the sum over waves of
ceil(wave / concurrency) x deploy + bake, their ratio, and per wave the
deploy time and how long the gate waited for fresh probes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := bench.Rollout(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printBench(cmd, asJSON, res)
		},
	}
	cmd.Flags().IntVar(&o.Tenants, "tenants", 200, "ACTIVE tenants")
	cmd.Flags().StringVar(&o.Plan, "plan", "1,10%,50%,100%", "the wave plan")
	cmd.Flags().DurationVar(&o.Bake, "bake", time.Second, "bake after each wave")
	cmd.Flags().DurationVar(&o.DeployTime, "deploy", 30*time.Second, "one stack instance's update (a tenant app stack update takes tens of seconds to minutes in AWS)")
	cmd.Flags().IntVar(&o.MaxConcurrency, "max-concurrency", 25, "instances updating at once (StackSets allow 100)")
	cmd.Flags().DurationVar(&o.ProbeEvery, "probe-every", time.Second, "the prober's sweep interval (a sweep that takes longer is followed at once by the next)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newBenchSoakCmd() *cobra.Command {
	var o bench.SoakOptions
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run the whole local platform under faults for a while and check nothing was lost",
		Long: `soak starts the whole local platform (emulator behind its fault proxy,
control plane, API, reconciler, rollout engine, prober, app host, previews)
and drives it through its HTTP API for --duration, all at once: --tenants
signups under idempotency keys (every tenth sent twice at once and once
more later), a fifth of the tenants decommissioned once ACTIVE, PR
previews up and down on the warm pool, a release published and rolled out
at 40% of the run, and the reconciler and the rollout engine killed and
restarted. --faults chooses what the proxy injects: throttling, slow and
failing account creations ("doomed" tenants fail for good, "flaky" ones
once and are retried), slow and failing StackSet operations ("shaky"
tenants' first stack instance fails), AssumeRole refused on new accounts,
and restarts; mixed is all of them.

It then waits for everything to settle and checks: one tenant per signup
key; every tenant in the state asked for (ACTIVE ones on the rolled-out
release); no duplicate and no orphan accounts; no lost registry updates
(audit event chains, rollout records); previews released and the pool
back to its target; the rollout completed. It prints the faults injected
and survived, the checks, and a summary, and exits 1 if any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if verbose {
				o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			res, err := bench.Soak(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := printBench(cmd, asJSON, res); err != nil {
				return err
			}
			if !res.Passed {
				return errors.New("soak: a check failed")
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&o.Tenants, "tenants", 200, "tenants signed up over the run")
	cmd.Flags().DurationVar(&o.Duration, "duration", 10*time.Minute, "the busy part of the run (it then waits for everything to settle)")
	cmd.Flags().DurationVar(&o.Settle, "settle", 0, "how long to wait for everything to settle after --duration (default: --duration, at least 3m)")
	cmd.Flags().StringVar(&o.Faults, "faults", "mixed", "faults injected: "+strings.Join(bench.SoakFaultSets, "|"))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "print the platform's warnings")
	return cmd
}
