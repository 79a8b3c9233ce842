package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run silo's platform benchmarks against the local emulator and print their tables",
	}
	cmd.AddCommand(newBenchVendCmd())
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
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			res.Print(cmd.OutOrStdout())
			return nil
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
