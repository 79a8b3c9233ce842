package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/deployed"
	"github.com/silo-saas/silo/internal/local"
)

func newLocalCmd() *cobra.Command {
	var readyFile, apiAddr, consoleAddr, logLevel, functionLogs, source string
	var exit, asJSON, verbose, demo, deployedMode bool
	var probeEvery time.Duration
	var poolSize int
	var speed float64
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run the silo platform on this machine, backed by a local AWS emulator",
		Long: `local starts the local AWS emulator (moto_server) behind silo's proxy, seeds
it as a management account (an IAM user and key, an organization with the
OUs Tenants/Production, Tenants/Preview, Suspended and Pool), creates the
tenant registry table, applies the guardrail SCPs, publishes the current
release and its StackSet, runs the reconciler, the fleet prober (every
--probe-every) and the PR-preview pool (--pool-size warm accounts, made
through the reconciler and reset after each preview), and serves the silo
API and the operations console. It
prints how to reach everything and an admin token, and runs until Ctrl-C.
No AWS account is needed.

The emulator cannot run Lambda or API Gateway, so an app host serves each
tenant's application on a loopback URL (its endpoint), acting with that
tenant's own account credentials; a local token issuer mints the tokens the
API and the apps accept.

With --demo it then signs three tenants up through the public API, shows
their progress, calls each tenant's endpoint (/health, and an /items write
and read with that tenant's user token), checks that one tenant's token is
refused by another tenant's endpoint, runs the isolation audit over them
through the API, and prints a summary; it exits 1 when any of it finds a
problem (make demo).

With --ready-file F it writes a JSON object with the API, console and issuer URLs,
the admin token and a read-only viewer token, the emulator endpoint, region
and management credentials to F once all is ready (and removes it on exit). With --exit it stops right
after the summary.

With --deployed it runs silo as it is deployed in AWS instead: it builds
every control-plane Lambda function from this checkout of silo for this
machine, creates the control-plane stack in the emulator through
CloudFormation as "cdk deploy" does, applies the guardrails as "silo
guardrails apply" does, and runs each function's real binary under the
Lambda runtime interface emulator with the environment and the IAM role the
stack gives it (IAM enforcement on). SQS batches, the EventBridge schedules
and API Gateway (a front door per REST API on a loopback port, the stage
first in the path) reach the functions as in AWS. The ready file has the
same fields, the API and console URLs being the front doors' stage URLs,
plus the stack's name and the directory of the functions' logs. --speed
runs the schedules and queue visibility timeouts faster than real time.
The reconciler function does not reconcile yet, so signups stay REQUESTED;
--demo needs it and is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			if logLevel != "" {
				if err := level.UnmarshalText([]byte(logLevel)); err != nil {
					return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
				}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if deployedMode {
				for _, name := range []string{"demo", "pool-size", "probe-every"} {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s does not apply to --deployed: the reconciler function does not reconcile yet, and the stack's own schedules drive the prober", name)}
					}
				}
				return runDeployed(cmd, log, local.DeployedOptions{APIAddr: apiAddr, ConsoleAddr: consoleAddr, Speed: speed, FunctionLogs: functionLogs, SourceDir: source}, readyFile, asJSON, exit)
			}
			for _, name := range []string{"speed", "function-logs", "source"} {
				if cmd.Flags().Changed(name) {
					return usageError{fmt.Errorf("--%s applies to --deployed only", name)}
				}
			}
			began := time.Now()
			fmt.Fprintln(cmd.ErrOrStderr(), "starting the local AWS emulator and the control plane…")
			p, err := local.Start(ctx, local.Options{APIAddr: apiAddr, ConsoleAddr: consoleAddr, ProbeEvery: probeEvery, PoolSize: poolSize}, log)
			if err != nil {
				return err
			}
			defer p.Close()
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, p.Info); err != nil {
					return err
				}
			} else {
				printLocalSummary(out, p.Info)
			}
			if readyFile != "" {
				if err := writeJSONFile(readyFile, p.Info); err != nil {
					return err
				}
				defer os.Remove(readyFile)
			}
			if demo {
				results, err := runDemo(ctx, p, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				printDemo(out, results, time.Since(began))
				fmt.Fprintf(out, "\nconsole: %s (log in with the admin token: SILO_TOKEN above)\n", p.Info.Console)
				if failed := demoFailures(results); failed > 0 {
					return fmt.Errorf("the demo found %d problems (see the summary)", failed)
				}
			}
			if exit {
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "silo local is running; the console is at %s (log in with the admin token). Press Ctrl-C to stop.\n", p.Info.Console)
			select {
			case <-ctx.Done():
				fmt.Fprintln(cmd.ErrOrStderr(), "stopping…")
				return nil
			case <-p.Done():
				return errors.New("the emulator stopped unexpectedly")
			}
		},
	}
	cmd.Flags().StringVar(&readyFile, "ready-file", "", "write connection details as JSON to this file once ready")
	cmd.Flags().StringVar(&apiAddr, "api-addr", "", "where the API listens (default: a free loopback port)")
	cmd.Flags().StringVar(&consoleAddr, "console-addr", "", "where the operations console listens (default: a free loopback port)")
	cmd.Flags().DurationVar(&probeEvery, "probe-every", 10*time.Second, "interval of the fleet health sweeps")
	cmd.Flags().IntVar(&poolSize, "pool-size", 2, "accounts kept warm for PR previews (silo preview up); 0 for none")
	cmd.Flags().BoolVar(&demo, "demo", false, "sign three tenants up and exercise their endpoints")
	cmd.Flags().BoolVar(&exit, "exit", false, "stop after the summary (for CI)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the connection details as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log progress (--log-level info)")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "log at this level and above: debug, info, warn (the default) or error")
	cmd.Flags().BoolVar(&deployedMode, "deployed", false, "run the control-plane stack and its Lambda functions' real binaries, as deployed in AWS")
	cmd.Flags().Float64Var(&speed, "speed", 1, "with --deployed: how many times faster than real time schedules fire and queue visibility timeouts pass")
	cmd.Flags().StringVar(&functionLogs, "function-logs", "", "with --deployed: directory for a log file per function (default: a directory removed on exit)")
	cmd.Flags().StringVar(&source, "source", "", "with --deployed: the silo checkout to build the functions from (default: the one holding the working directory)")
	return cmd
}

// runDeployed runs silo local --deployed until Ctrl-C.
func runDeployed(cmd *cobra.Command, log *slog.Logger, o local.DeployedOptions, readyFile string, asJSON, exit bool) error {
	ctx := cmd.Context()
	if o.Speed < 1 {
		return usageError{fmt.Errorf("--speed %v: want 1 (real time) or more", o.Speed)}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "starting the local AWS emulator, building the Lambda functions and creating the control-plane stack…")
	d, err := local.StartDeployed(ctx, o, log)
	if errors.Is(err, deployed.ErrNoSource) {
		return usageError{fmt.Errorf("%w: run silo local --deployed inside a checkout of silo, or name one with --source", err)}
	}
	if err != nil {
		return err
	}
	defer d.Close()
	out := cmd.OutOrStdout()
	if asJSON {
		if err := printJSON(out, d.Info); err != nil {
			return err
		}
	} else {
		printLocalSummary(out, d.Info)
	}
	if readyFile != "" {
		if err := writeJSONFile(readyFile, d.Info); err != nil {
			return err
		}
		defer os.Remove(readyFile)
	}
	if exit {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "silo local --deployed is running (stack %s, function logs in %s); the console is at %s. Press Ctrl-C to stop.\n",
		d.Info.StackName, d.Info.FunctionLogs, d.Info.Console)
	select {
	case <-ctx.Done():
		fmt.Fprintln(cmd.ErrOrStderr(), "stopping…")
		return nil
	case <-d.Done():
		return errors.New("the emulator stopped unexpectedly")
	}
}

func printLocalSummary(w io.Writer, info local.Info) {
	fmt.Fprintf(w, "\nsilo local is ready\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "console\t%s (log in with the admin token below)\n", info.Console)
	fmt.Fprintf(tw, "API\t%s\n", info.API)
	fmt.Fprintf(tw, "token issuer\t%s\n", info.Issuer)
	fmt.Fprintf(tw, "AWS endpoint\t%s\n", info.AWSEndpoint)
	fmt.Fprintf(tw, "region\t%s\n", info.Region)
	fmt.Fprintf(tw, "management account\t%s\n", info.ManagementAccountID)
	fmt.Fprintf(tw, "organization\t%s\n", info.OrganizationID)
	for _, path := range []string{"Tenants/Production", "Tenants/Preview", "Suspended", "Pool"} {
		fmt.Fprintf(tw, "OU %s\t%s\n", path, info.OUs[path])
	}
	fmt.Fprintf(tw, "registry table\t%s\n", info.RegistryTable)
	if info.TenantDomain != "" {
		fmt.Fprintf(tw, "tenant DNS names\t<id>.%s (hosted zone %s)\n", info.TenantDomain, info.HostedZoneID)
	}
	if info.StackName != "" {
		fmt.Fprintf(tw, "control-plane stack\t%s\n", info.StackName)
		fmt.Fprintf(tw, "function logs\t%s\n", info.FunctionLogs)
	}
	tw.Flush()
	// In the deployed topology the reconciler does not reconcile yet: a
	// signup stays REQUESTED, so --wait would never end.
	signup, list := " --wait", "ACTIVE"
	if info.StackName != "" {
		signup, list = "", "REQUESTED"
	}
	fmt.Fprintf(w, `
use the CLI against it (admin token, valid 24 hours):
  export SILO_API=%s SILO_TOKEN=%s
  silo signup --name "Acme Corp" --email ops@acme.example --tier standard --region us-east-1%s
  silo tenants ls --state %s

reach the emulator with the AWS CLI:
  export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s
  aws --endpoint-url %s organizations list-accounts

`, info.API, info.AdminToken, signup, list, info.AccessKeyID, info.SecretAccessKey, info.Region, info.AWSEndpoint)
}

// writeJSONFile writes v atomically, so a reader polling for the file never
// sees half of it.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".silo-ready-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
