package main

import (
	"context"
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

	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/registry"
)

func newLocalCmd() *cobra.Command {
	var readyFile string
	var exit, asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run the silo platform on this machine, backed by a local AWS emulator",
		Long: `local starts the local AWS emulator (moto_server) behind silo's proxy, seeds
it as a management account (an IAM user and key, an organization with the
OUs Tenants/Production, Tenants/Preview, Suspended and Pool), creates the
tenant registry table, applies the guardrail SCPs, publishes the current
release and its StackSet, and runs the reconciler. It then registers three
demo tenants and vends each one to ACTIVE (its own account in
Tenants/Production with the tenant stack deployed into it), showing progress,
prints how to reach everything, and runs until Ctrl-C. No AWS account is
needed.

The emulator cannot run Lambda or API Gateway, so an app host serves each
tenant's application on a loopback URL (its endpoint), acting with that
tenant's own account credentials; a local token issuer mints the users'
tokens the apps accept.

With --ready-file F it writes a JSON object with the emulator endpoint,
region, management credentials and issuer URL to F once all is ready (and removes it on
exit). With --exit it stops right after printing the summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			fmt.Fprintln(cmd.ErrOrStderr(), "starting the local AWS emulator and seeding it…")
			p, err := local.Start(ctx, local.Options{}, log)
			if err != nil {
				return err
			}
			defer p.Close()
			demo, err := registerDemoTenants(ctx, p.Registry)
			if err != nil {
				return err
			}
			for _, t := range demo {
				p.Runner.Kick(t.ID)
			}
			if demo, err = waitVended(ctx, p.Registry, demo, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if readyFile != "" {
				if err := writeJSONFile(readyFile, p.Info); err != nil {
					return err
				}
				defer os.Remove(readyFile)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					local.Info
					Tenants []*registry.Tenant `json:"tenants"`
				}{p.Info, demo}); err != nil {
					return err
				}
			} else {
				printLocalSummary(out, p.Info, demo)
			}
			if exit {
				return nil
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "silo local is running; press Ctrl-C to stop.")
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
	cmd.Flags().BoolVar(&exit, "exit", false, "stop after printing the summary (for CI)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log progress")
	return cmd
}

// demoTenants are registered and vended by `silo local`.
var demoTenants = []registry.Spec{
	{ID: "acme", Name: "Acme Corp", Email: "ops@acme.example", Tier: registry.TierEnterprise, Region: "us-east-1"},
	{ID: "globex", Name: "Globex", Email: "cloud@globex.example", Tier: registry.TierStandard, Region: "eu-west-1"},
	{ID: "initech", Name: "Initech", Email: "it@initech.example", Tier: registry.TierBasic, Region: "us-west-2"},
}

func registerDemoTenants(ctx context.Context, reg *registry.Store) ([]*registry.Tenant, error) {
	var out []*registry.Tenant
	for _, s := range demoTenants {
		t, _, err := reg.Create(ctx, s, "demo-"+s.ID, "silo-local")
		if err != nil {
			return nil, fmt.Errorf("register demo tenant %s: %w", s.ID, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func printLocalSummary(w io.Writer, info local.Info, tenants []*registry.Tenant) {
	fmt.Fprintf(w, "\nsilo local is ready\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "AWS endpoint\t%s\n", info.AWSEndpoint)
	fmt.Fprintf(tw, "region\t%s\n", info.Region)
	fmt.Fprintf(tw, "management account\t%s\n", info.ManagementAccountID)
	fmt.Fprintf(tw, "organization\t%s\n", info.OrganizationID)
	for _, path := range []string{"Tenants/Production", "Tenants/Preview", "Suspended", "Pool"} {
		fmt.Fprintf(tw, "OU %s\t%s\n", path, info.OUs[path])
	}
	fmt.Fprintf(tw, "registry table\t%s\n", info.RegistryTable)
	fmt.Fprintf(tw, "token issuer\t%s\n", info.Issuer)
	tw.Flush()
	fmt.Fprintf(w, "\ntenants:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTIER\tREGION\tSTATE\tACCOUNT\tRELEASE\tENDPOINT")
	for _, t := range tenants {
		state := string(t.State)
		if t.Reason != "" {
			state += " (" + t.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Tier, t.Region, state, t.AccountID, t.AppVersion, t.Endpoint)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Each tenant's stack runs in its own account. The emulator cannot serve API
Gateway or run Lambda, so silo's app host serves each tenant's application at
its ENDPOINT, with that tenant's own account credentials:
  curl <endpoint>/health
Its /items API takes a bearer token from the local issuer (%s),
which only this process can mint.

reach the emulator with the AWS CLI:
  export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s
  aws --endpoint-url %s organizations list-organizational-units-for-parent --parent-id %s
  aws --endpoint-url %s dynamodb query --table-name %s --index-name %s \
      --key-condition-expression 'gsi1pk = :s' --expression-attribute-values '{":s":{"S":"STATE#ACTIVE"}}'

`, info.Issuer, info.AccessKeyID, info.SecretAccessKey, info.Region, info.AWSEndpoint, info.OUs["Tenants"], info.AWSEndpoint, info.RegistryTable, registry.IndexByState)
}

// waitVended shows each tenant's progress until all are ACTIVE or FAILED.
func waitVended(ctx context.Context, reg *registry.Store, tenants []*registry.Tenant, w io.Writer) ([]*registry.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	seen := map[string]registry.State{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		done := 0
		out := make([]*registry.Tenant, 0, len(tenants))
		for _, t := range tenants {
			cur, err := reg.Get(ctx, t.ID)
			if err != nil {
				return nil, err
			}
			if seen[cur.ID] != cur.State {
				seen[cur.ID] = cur.State
				fmt.Fprintf(w, "  %-10s %s\n", cur.ID, cur.State)
			}
			if cur.State == registry.StateActive || cur.State == registry.StateFailed {
				done++
			}
			out = append(out, cur)
		}
		if done == len(tenants) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("tenants not vended in time: %w", ctx.Err())
		case <-tick.C:
		}
	}
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
