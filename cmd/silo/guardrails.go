package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/guardrails"
)

func newGuardrailsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guardrails",
		Short: "Put silo's guardrail SCPs on the tenant OUs of an AWS organization",
		Long: `guardrails manages silo's service control policies: tenant accounts cannot
leave the organization, stop the security services, work outside the allowed
regions, touch the role silo manages them through, or use their root user.

Unlike the other commands it does not talk to silo's API: it acts on AWS
directly, with the management account's credentials from the SDK's standard
chain (environment, profile, SSO, instance role). SILO_AWS_ENDPOINT points
it at an emulator instead. Local mode applies the guardrails itself.`,
	}
	cmd.AddCommand(newGuardrailsApplyCmd())
	return cmd
}

// guardrailsRun is what apply did, as --json prints it.
type guardrailsRun struct {
	Account        string   `json:"account"`
	AllowedRegions []string `json:"allowedRegions"`
	// EnabledSCPs is true when this run enabled service control policies
	// on the organization's root.
	EnabledSCPs bool                `json:"enabledSCPs"`
	Policies    []guardrails.Result `json:"policies"`
}

func newGuardrailsApplyCmd() *cobra.Command {
	var regions []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "apply --allowed-regions R1,R2",
		Short: "Create or update the guardrail SCPs and attach them to their OUs",
		Long: `apply makes each guardrail SCP exist with its current content and be attached
to the OUs it targets (Tenants/Production and Tenants/Preview; the preview
spend guard to Tenants/Preview only), enabling service control policies on
the organization's root first if they are not. It is safe to repeat: a
policy is found by name and updated in place, so its id never changes, and
an attachment already there is left alone.

--allowed-regions must be the regions of the control plane stack's
AllowedRegions parameter: the daily isolation audit compares what is
attached with the policies built from those regions, and fails every
tenant's guardrails check when they differ.

silo does not create OUs in AWS; a missing one is an error that names it.
Exit codes: 0 applied, 1 failed, 2 bad command line.`,
		Example: `  silo guardrails apply --allowed-regions us-east-1,eu-west-1
  AWS_PROFILE=management silo guardrails apply --allowed-regions us-east-1 --json`,
		Args: exactArgs(0, "no arguments (name regions with --allowed-regions)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			allowed, err := allowedRegions(regions)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			// The table (or JSON) says what changed; the log only warns.
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			cfg, err := awsx.Load(ctx, awsx.Options{})
			if err != nil {
				return err
			}
			me, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				return fmt.Errorf("read the caller identity (are management account credentials set?): %w", err)
			}
			// The SCPs name the member role by ARN, so the partition is part
			// of the content the audit compares with what is attached.
			policies, err := guardrails.Policies(guardrails.Options{AllowedRegions: allowed, Partition: awsx.ARNPartition(aws.ToString(me.Arn))})
			if err != nil {
				return usageError{fmt.Errorf("--allowed-regions: %w", err)}
			}
			org := organizations.NewFromConfig(cfg)
			ous, err := guardrails.ResolveOUs(ctx, org, targetOUs(policies))
			if errors.Is(err, guardrails.ErrNoSuchOU) {
				return fmt.Errorf("%w (silo does not create OUs in AWS; the guardrails need %s)", err, strings.Join(targetOUs(policies), ", "))
			}
			if err != nil {
				return err
			}
			run := guardrailsRun{Account: aws.ToString(me.Account), AllowedRegions: allowed}
			if run.EnabledSCPs, err = guardrails.EnableSCPs(ctx, org); err != nil {
				return err
			}
			if run.Policies, err = guardrails.New(org, log).Reconcile(ctx, policies, ous); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), run)
			}
			return printGuardrails(cmd.OutOrStdout(), run)
		},
	}
	cmd.Flags().StringSliceVar(&regions, "allowed-regions", nil, "regions tenants may use, comma-separated: the stack's AllowedRegions (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

// allowedRegions checks and normalises --allowed-regions: trimmed, known,
// sorted and without duplicates.
func allowedRegions(flag []string) ([]string, error) {
	if len(flag) == 0 {
		return nil, errors.New("--allowed-regions is required: the regions tenants may use, the same as the control plane stack's AllowedRegions parameter (e.g. --allowed-regions us-east-1,eu-west-1)")
	}
	out := make([]string, 0, len(flag))
	for _, r := range flag {
		r = strings.TrimSpace(r)
		if r == "" {
			return nil, errors.New("--allowed-regions: empty region in the list")
		}
		if !awsx.KnownRegion(r) {
			return nil, fmt.Errorf("--allowed-regions: unknown region %q (known: %s)", clean(r), strings.Join(awsx.Regions(), ", "))
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// targetOUs are the OU paths the policies are attached to, in first-met
// order.
func targetOUs(policies []guardrails.Policy) []string {
	var out []string
	for _, p := range policies {
		for _, t := range p.Targets {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

func printGuardrails(w io.Writer, run guardrailsRun) error {
	if run.EnabledSCPs {
		fmt.Fprintln(w, "enabled service control policies on the organization's root")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tID\tCHANGE\tTARGETS")
	count := map[guardrails.Change]int{}
	attached := 0
	for _, r := range run.Policies {
		count[r.Change]++
		attached += len(r.Attached)
		targets := make([]string, len(r.Targets))
		for i, t := range r.Targets {
			targets[i] = t
			if slices.Contains(r.Attached, t) {
				targets[i] += " (attached now)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.ID, r.Change, strings.Join(targets, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d guardrails in account %s for %s: %d created, %d updated, %d unchanged; %d attachments made\n",
		len(run.Policies), run.Account, strings.Join(run.AllowedRegions, ", "),
		count[guardrails.Created], count[guardrails.Updated], count[guardrails.Unchanged], attached)
	return err
}
