package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/registry"
)

func newRolloutCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Take a release across the fleet in waves, gated by health",
		Long: `rollout drives rollouts through the API (--api or SILO_API, with an
operator token in --token or SILO_TOKEN; status and ls need only a viewer
token).

A rollout updates the ACTIVE tenants to a release in waves: canaries first,
enterprise tenants last, pinned tenants never. After each wave deploys and
bakes, a gate counts the wave's failures on probes taken after each tenant's
update; over --max-failures it halts and rolls every tenant the rollout moved
back to the release it ran before. One rollout runs at a time. See
docs/rollouts.md.`,
	}
	f.register(cmd)
	cmd.AddCommand(newRolloutStartCmd(&f), newRolloutStatusCmd(&f), newRolloutLsCmd(&f),
		newRolloutPauseCmd(&f), newRolloutResumeCmd(&f), newRolloutAbortCmd(&f))
	return cmd
}

// registerInterval adds --interval: how often --wait and --watch look.
func registerInterval(cmd *cobra.Command, every *time.Duration) {
	cmd.Flags().DurationVar(every, "interval", 2*time.Second, "how often --wait/--watch reads the rollout")
}

func newRolloutStartCmd(f *apiFlags) *cobra.Command {
	var req api.RolloutStartRequest
	var bake, gate, every time.Duration
	var tolerance int
	var enterpriseLast, wait bool
	cmd := &cobra.Command{
		Use:   "start --release R --plan PLAN",
		Short: "Start a rollout of a release",
		Long: `start plans a rollout of --release over the ACTIVE tenants and starts it.

The plan is comma-separated waves, each [name:]size[@concurrency[/tolerance]]:
size is a number of tenants or a cumulative percentage of the fleet, and the
last wave must be 100%. "canary:3,10%,50%,100%" updates 3 tenants, then up to
10% of the fleet, then 50%, then everyone; "10%@20/2" deploys that wave at
most 20 accounts at a time, letting 2 fail in StackSets before it stops.

With --wait it follows the rollout (a line on stderr whenever a wave moves
on) and exits 0 when it completes, 1 when it is rolled back or aborted.`,
		Example: `  silo rollout start --release 3f9a1c2b --plan "canary:3,10%,50%,100%" --wait
  silo rollout start --release 3f9a1c2b --plan "canary:1,100%" --bake 30s --canary-tag beta=yes --max-failures 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if bake > 0 {
				req.Bake = bake.String()
			}
			if gate > 0 {
				req.GateTimeout = gate.String()
			}
			if cmd.Flags().Changed("failure-tolerance") {
				req.FailureTolerance = &tolerance
			}
			req.EnterpriseLast = &enterpriseLast
			ctx := cmd.Context()
			r, err := c.StartRollout(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rollout %s: %s to %d tenants in %d waves (%s)\n", r.ID, short(r.Release), r.Tenants(), len(r.Waves), waveSummary(r))
			if !wait {
				if f.asJSON {
					return printJSON(cmd.OutOrStdout(), api.NewRolloutView(r))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n", r.ID)
				return nil
			}
			return watchRollout(ctx, c, r.ID, every, f.asJSON, false, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&req.Release, "release", "", "the release to roll out, as silo release publish printed it (required)")
	cmd.Flags().StringVar(&req.Plan, "plan", "", `the waves, for example "canary:3,10%,50%,100%" (required)`)
	cmd.Flags().DurationVar(&bake, "bake", 0, "how long each wave runs before its gate (default 5m)")
	cmd.Flags().DurationVar(&gate, "gate-timeout", 0, "how long a gate waits for a probe after each tenant's update (default 5m)")
	cmd.Flags().IntVar(&req.MaxFailures, "max-failures", 0, "failures (failed, unhealthy or unprobed tenants) a wave may have before the rollout halts")
	cmd.Flags().IntVar(&req.MaxConcurrency, "max-concurrency", 0, "accounts each wave deploys at once (default 25, at most 100)")
	cmd.Flags().IntVar(&tolerance, "failure-tolerance", 0, "accounts a wave's StackSet operation may fail before it stops (default --max-failures)")
	cmd.Flags().StringVar(&req.CanaryTag, "canary-tag", "", "key=value: tenants with this attribute go first")
	cmd.Flags().StringVar(&req.CanaryTier, "canary-tier", "", "tenants of this tier (basic, standard) go first, after tagged ones")
	cmd.Flags().BoolVar(&enterpriseLast, "enterprise-last", true, "enterprise tenants go last")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rollout until it ends; exit 1 unless it completes")
	registerInterval(cmd, &every)
	_ = cmd.MarkFlagRequired("release")
	_ = cmd.MarkFlagRequired("plan")
	return cmd
}

func newRolloutStatusCmd(f *apiFlags) *cobra.Command {
	var watch, tenants bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show a rollout (the latest without an ID): its waves, gates and log",
		Long: `status shows a rollout: each wave's phase and its gate's counts and
decision, and the log of the rollout's decisions with the reason for each.
--tenants adds a line per tenant. Without an ID it shows the latest rollout.

With --watch it follows the rollout (a line on stderr whenever a wave moves
on), prints it when it ends, and exits 0 when it completed, 1 when it was
rolled back or aborted.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{errors.New("expected at most one rollout id")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id := ""
			if len(args) == 1 {
				id = args[0]
			} else if id, err = latestRollout(ctx, c); err != nil {
				return err
			}
			if watch {
				return watchRollout(ctx, c, id, every, f.asJSON, tenants, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			r, ts, err := c.Rollout(ctx, id)
			if err != nil {
				return err
			}
			return printRollout(cmd.OutOrStdout(), r, ts, f.asJSON, tenants)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the rollout until it ends; exit 1 unless it completes")
	cmd.Flags().BoolVar(&tenants, "tenants", false, "also list every tenant of the rollout")
	registerInterval(cmd, &every)
	return cmd
}

func latestRollout(ctx context.Context, c *api.Client) (string, error) {
	rs, err := c.Rollouts(ctx, 1)
	if err != nil {
		return "", err
	}
	if len(rs) == 0 {
		return "", errors.New("no rollout yet (start one with silo rollout start)")
	}
	return rs[0].ID, nil
}

func newRolloutLsCmd(f *apiFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the latest rollouts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			rs, err := c.Rollouts(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if f.asJSON {
				out := api.RolloutList{Rollouts: make([]api.RolloutView, 0, len(rs))}
				for _, r := range rs {
					out.Rollouts = append(out.Rollouts, api.NewRolloutView(r))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLLOUT\tRELEASE\tSTATE\tWAVE\tTENANTS\tSTARTED\tBY")
			for _, r := range rs {
				wave := ""
				if len(r.Waves) > 0 {
					wave = fmt.Sprintf("%d/%d %s", r.Current+1, len(r.Waves), r.Waves[r.Current].Name)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, short(r.Release), r.State, wave, r.Tenants(), r.CreatedAt.Local().Format(time.DateTime), r.CreatedBy)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many (at most 1000)")
	return cmd
}

func newRolloutPauseCmd(f *apiFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "pause ID",
		Short: "Pause a rollout before its next wave (the wave under way finishes, gate included)",
		Args:  exactArgs(1, "a rollout id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutCommand(cmd, f, func(ctx context.Context, c *api.Client) (*registry.Rollout, error) {
				return c.PauseRollout(ctx, args[0], reason)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the rollout's log")
	return cmd
}

func newRolloutResumeCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "resume ID",
		Short: "Resume a paused rollout",
		Args:  exactArgs(1, "a rollout id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutCommand(cmd, f, func(ctx context.Context, c *api.Client) (*registry.Rollout, error) {
				return c.ResumeRollout(ctx, args[0])
			})
		},
	}
}

func newRolloutAbortCmd(f *apiFlags) *cobra.Command {
	var reason string
	var rollback bool
	cmd := &cobra.Command{
		Use:   "abort ID",
		Short: "Stop a rollout for good once the wave in flight has deployed",
		Long: `abort stops a rollout once the wave in flight (if any) has deployed.
Tenants it already updated stay on the new release, unless --rollback takes
every one of them back to the release it ran before.`,
		Args: exactArgs(1, "a rollout id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutCommand(cmd, f, func(ctx context.Context, c *api.Client) (*registry.Rollout, error) {
				return c.AbortRollout(ctx, args[0], rollback, reason)
			})
		},
	}
	cmd.Flags().BoolVar(&rollback, "rollback", false, "take the tenants the rollout updated back to their previous release")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the rollout's log")
	return cmd
}

// rolloutCommand runs an operator's command and prints where it left the
// rollout.
func rolloutCommand(cmd *cobra.Command, f *apiFlags, do func(context.Context, *api.Client) (*registry.Rollout, error)) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	r, err := do(cmd.Context(), c)
	if err != nil {
		return err
	}
	if f.asJSON {
		return printJSON(cmd.OutOrStdout(), api.NewRolloutView(r))
	}
	line := fmt.Sprintf("rollout %s is %s", r.ID, r.State)
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	fmt.Fprintln(cmd.OutOrStdout(), line)
	return nil
}

// watchRollout follows a rollout until it ends, printing a line to errw
// whenever its state or a wave's phase changes; then prints it to w. It
// fails unless the rollout completed.
func watchRollout(ctx context.Context, c *api.Client, id string, every time.Duration, asJSON, tenants bool, w, errw io.Writer) error {
	if every <= 0 {
		every = 2 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last *registry.Rollout
	for {
		r, ts, err := c.Rollout(ctx, id)
		if err != nil {
			return err
		}
		for _, line := range progress(last, r) {
			fmt.Fprintf(errw, "%s  %s %s\n", time.Now().Format("15:04:05"), r.ID, line)
		}
		last = r
		if r.State.Final() {
			if err := printRollout(w, r, ts, asJSON, tenants); err != nil {
				return err
			}
			return rolloutOutcome(r)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped watching: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// rolloutOutcome is nil for a completed rollout and an error (exit 1)
// for one rolled back or aborted.
func rolloutOutcome(r *registry.Rollout) error {
	switch r.State {
	case registry.RolloutCompleted:
		return nil
	case registry.RolloutRolledBack:
		return fmt.Errorf("rollout %s was rolled back: %s", r.ID, r.Reason)
	}
	return fmt.Errorf("rollout %s is %s: %s", r.ID, r.State, r.Reason)
}

// progress says what changed from prev to r: each wave whose phase moved
// (with its gate's decision once it has one) and the rollout's state. A
// first look (prev nil) says the state first, then where the waves are.
func progress(prev, r *registry.Rollout) []string {
	var waves []string
	for i, w := range r.Waves {
		was := registry.WavePhase("")
		if prev != nil && i < len(prev.Waves) {
			was = prev.Waves[i].Phase
		}
		if w.Phase == was || (prev == nil && w.Phase == registry.WavePending) {
			continue
		}
		line := fmt.Sprintf("wave %d/%d %s (%d tenants): %s", i+1, len(r.Waves), w.Name, w.Tenants, w.Phase)
		if w.Gate != nil && (w.Phase == registry.WavePassed || w.Phase == registry.WaveHalted) {
			line += "; " + w.Gate.Why
		}
		waves = append(waves, line)
	}
	if prev != nil && prev.State == r.State {
		return waves
	}
	state := string(r.State)
	if r.Reason != "" {
		state += ": " + r.Reason
	}
	if prev == nil {
		return append([]string{state}, waves...)
	}
	return append(waves, state)
}

func waveSummary(r *registry.Rollout) string {
	parts := make([]string, len(r.Waves))
	for i, w := range r.Waves {
		parts[i] = fmt.Sprintf("%s %d", w.Name, w.Tenants)
	}
	return strings.Join(parts, ", ")
}

// printRollout prints a rollout: a header, a line per wave, the log, and
// with tenants a line per tenant.
func printRollout(w io.Writer, r *registry.Rollout, ts []registry.RolloutTenant, asJSON, tenants bool) error {
	if asJSON {
		if ts == nil {
			ts = []registry.RolloutTenant{}
		}
		return printJSON(w, api.RolloutDetail{Rollout: api.NewRolloutView(r), Tenants: ts})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "rollout\t%s\n", r.ID)
	fmt.Fprintf(tw, "release\t%s\n", r.Release)
	fmt.Fprintf(tw, "state\t%s\n", r.State)
	if r.Reason != "" {
		fmt.Fprintf(tw, "reason\t%s\n", r.Reason)
	}
	fmt.Fprintf(tw, "plan\t%s (bake %s, gate timeout %s, max failures %d)\n", r.Plan, r.Bake, r.GateTimeout, r.MaxFailures)
	if len(r.Skipped) > 0 {
		keys := make([]string, 0, len(r.Skipped))
		for k := range r.Skipped {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%d %s", r.Skipped[k], k)
		}
		fmt.Fprintf(tw, "left out\t%s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "started\t%s by %s\n", r.CreatedAt.Local().Format(time.DateTime), r.CreatedBy)
	if r.EndedAt != nil {
		fmt.Fprintf(tw, "ended\t%s\n", r.EndedAt.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tTENANTS\tPHASE\tHEALTHY\tUNHEALTHY\tFAILED\tNO-PROBE\tGATE")
	for i, wv := range r.Waves {
		name := wv.Name
		if i == r.Current && !r.State.Final() {
			name = "> " + name
		}
		counts, gate := "\t\t\t", ""
		if g := wv.Gate; g != nil {
			counts = fmt.Sprintf("%d\t%d\t%d\t%d", g.Healthy, g.Unhealthy, g.DeployFailed, g.NoProbe)
			gate = fmt.Sprintf("halt (%d failures > %d)", g.Failures(), g.MaxFailures)
			if g.Pass {
				gate = fmt.Sprintf("pass (%d failures ≤ %d)", g.Failures(), g.MaxFailures)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", name, wv.Tenants, wv.Phase, counts, gate)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nLOG")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s  %s\n", n.At.Local().Format(time.TimeOnly), n.Text)
		}
	}
	if !tenants {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tTIER\tWAVE\tFROM\tSTATUS\tHEALTH AT GATE\tREASON")
	for _, t := range ts {
		wave := fmt.Sprint(t.Wave)
		if t.Wave >= 0 && t.Wave < len(r.Waves) {
			wave = r.Waves[t.Wave].Name
		}
		health := ""
		if t.Health != nil {
			health = t.Health.Summary()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.TenantID, t.Tier, wave, short(t.From), t.Status, health, t.Reason)
	}
	return tw.Flush()
}

func newReleaseCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Publish builds of the tenant app as releases",
	}
	f.register(cmd)
	var artifact, source string
	publish := &cobra.Command{
		Use:   "publish --artifact build.zip",
		Short: "Publish a code zip as a release, and print its version",
		Long: `publish sends a Lambda code zip (at most 4 MiB) to the API, which stores
it with the tenant template as a release named by its content: publishing
the same zip again gives the same version. Roll it out with
silo rollout start --release VERSION, or pin a tenant to it.`,
		Example: `  silo release publish --artifact dist/app.zip --source "ci acme/web@1a2b3c"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(artifact)
			if err != nil {
				return usageError{fmt.Errorf("read the artifact: %w", err)}
			}
			if len(b) > api.MaxInlineArtifact {
				return usageError{fmt.Errorf("%s is %d bytes; at most %d", artifact, len(b), api.MaxInlineArtifact)}
			}
			rel, err := c.PublishRelease(cmd.Context(), b, source)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), api.ReleaseResponse{Release: *rel})
			}
			fmt.Fprintln(cmd.OutOrStdout(), rel.Version)
			return nil
		},
	}
	publish.Flags().StringVar(&artifact, "artifact", "", "the build's code zip (required)")
	publish.Flags().StringVar(&source, "source", "", "where the build came from, for the record (default: who uploaded it)")
	_ = publish.MarkFlagRequired("artifact")
	cmd.AddCommand(publish)
	return cmd
}
