package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/registry"
)

func newAuditCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Prove each tenant's account is a bulkhead (the isolation audit)",
		Long: `audit runs and reads the isolation audit through the API (--api or
SILO_API; isolation needs an operator token in --token or SILO_TOKEN, show
a viewer token).

The audit checks each tenant account statically (its OU and guardrail SCPs,
resource and KMS key policies, S3 public access, the application role's
reach) and probes it dynamically: the tenant's own application role tries
to reach other tenants' data, Organizations and the registry, and every
attempt must be denied. Each tenant's latest report is kept in the registry
and shown on the console's Isolation page; in AWS the audit also runs daily.`,
	}
	f.register(cmd)
	cmd.AddCommand(newAuditIsolationCmd(&f), newAuditShowCmd(&f))
	return cmd
}

func newAuditIsolationCmd(f *apiFlags) *cobra.Command {
	var tenants []string
	cmd := &cobra.Command{
		Use:   "isolation [--tenant ID]...",
		Short: "Audit the isolation of every active tenant (or those named) now",
		Long: `isolation audits the tenants named by --tenant, or every active customer
tenant, and prints a line per tenant with each check's verdict, then the
failing evidence of every check that did not pass.

It exits 0 when every tenant passed, 1 when any failed or could not be
audited (error), and 2 on a bad command line. --json prints the whole run
(every report with all its evidence) and exits the same way.`,
		Example: `  silo audit isolation
  silo audit isolation --tenant acme-1a2b3c --tenant beta-4d5e6f --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{errors.New("expected no arguments (name tenants with --tenant ID)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, id := range tenants {
				if err := registry.ValidateID(id); err != nil {
					return usageError{fmt.Errorf("--tenant %s: %w", clean(id), err)}
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			fl, err := c.AuditIsolation(cmd.Context(), tenants)
			if err != nil {
				return err
			}
			if f.asJSON {
				err = printJSON(cmd.OutOrStdout(), fl)
			} else {
				err = printFleet(cmd.OutOrStdout(), fl)
			}
			if err != nil {
				return err
			}
			return fleetOutcome(fl)
		},
	}
	cmd.Flags().StringArrayVar(&tenants, "tenant", nil, "audit this tenant (repeat for more); every active tenant when absent")
	return cmd
}

func newAuditShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a tenant's latest isolation report",
		Long: `show prints a tenant's latest isolation report: each check's verdict and
summary, then the failing evidence of every check that did not pass (--json:
the whole report). It exits 0 whenever it could read the report, whatever
the report says; 1 when there is none.`,
		Args: exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			rep, err := c.IsolationReport(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return printReport(cmd.OutOrStdout(), rep)
		},
	}
}

// fleetOutcome is nil when every tenant passed and an error (exit 1)
// otherwise. It counts the reports rather than trusting the totals.
func fleetOutcome(fl *audit.Fleet) error {
	var failed, errored int
	for _, r := range fl.Reports {
		switch r.Status {
		case audit.StatusPass:
		case audit.StatusFail:
			failed++
		default:
			errored++
		}
	}
	if failed+errored == 0 {
		return nil
	}
	return fmt.Errorf("isolation audit: %d of %d tenants did not pass (%d failed, %d errored)", failed+errored, len(fl.Reports), failed, errored)
}

// checkNames are the checks the reports hold, the audit's own order first
// and any other in the order met.
func checkNames(reports []audit.Report) []string {
	names := []string{audit.CheckOU, audit.CheckGuardrails, audit.CheckResourcePolicies, audit.CheckKMSKeyPolicy,
		audit.CheckS3PublicAccess, audit.CheckAppRoleScope, audit.CheckCrossTenant}
	seen := map[string]bool{}
	for _, r := range reports {
		for _, c := range r.Checks {
			seen[c.Name] = true
		}
	}
	var out []string
	for _, n := range names {
		if seen[n] {
			out = append(out, n)
			delete(seen, n)
		}
	}
	for _, r := range reports {
		for _, c := range r.Checks {
			if seen[c.Name] {
				out = append(out, c.Name)
				delete(seen, c.Name)
			}
		}
	}
	return out
}

// verdict is a status as a table cell: failures shout.
func verdict(s audit.Status) string {
	if s == audit.StatusPass {
		return string(s)
	}
	return strings.ToUpper(clean(string(s)))
}

func printFleet(w io.Writer, fl *audit.Fleet) error {
	if len(fl.Reports) == 0 {
		_, err := fmt.Fprintln(w, "no tenant to audit")
		return err
	}
	names := checkNames(fl.Reports)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "TENANT\tACCOUNT\tSTATUS")
	for _, n := range names {
		fmt.Fprint(tw, "\t"+strings.ToUpper(n))
	}
	fmt.Fprintln(tw)
	var passed, failed, errored int
	for _, r := range fl.Reports {
		switch r.Status {
		case audit.StatusPass:
			passed++
		case audit.StatusFail:
			failed++
		default:
			errored++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s", clean(r.TenantID), clean(r.AccountID), verdict(r.Status))
		for _, n := range names {
			cell := "-"
			for _, c := range r.Checks {
				if c.Name == n {
					cell = verdict(c.Status)
				}
			}
			fmt.Fprint(tw, "\t"+cell)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range fl.Reports {
		printFailures(w, r)
	}
	noun := "tenants"
	if len(fl.Reports) == 1 {
		noun = "tenant"
	}
	_, err := fmt.Fprintf(w, "\naudited %d %s in %s: %d passed, %d failed, %d errored\n",
		len(fl.Reports), noun, fl.FinishedAt.Sub(fl.StartedAt).Round(time.Second), passed, failed, errored)
	return err
}

func printReport(w io.Writer, r *audit.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "tenant\t%s\n", clean(r.TenantID))
	fmt.Fprintf(tw, "account\t%s (%s)\n", clean(r.AccountID), clean(r.Region))
	fmt.Fprintf(tw, "status\t%s\n", verdict(r.Status))
	fmt.Fprintf(tw, "audited\t%s (took %s)\n", r.StartedAt.Local().Format(time.DateTime), r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tSUMMARY")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", clean(c.Name), verdict(c.Status), clean(c.Summary))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printFailures(w, *r)
	return nil
}

// printFailures writes, for each check of r that did not pass, its
// summary and the evidence that failed (all of it when none is marked).
func printFailures(w io.Writer, r audit.Report) {
	for _, c := range r.Checks {
		if c.Status == audit.StatusPass {
			continue
		}
		fmt.Fprintf(w, "\n%s %s: %s: %s\n", clean(r.TenantID), clean(c.Name), verdict(c.Status), clean(c.Summary))
		bad := make([]audit.Evidence, 0, len(c.Evidence))
		for _, e := range c.Evidence {
			if !e.OK {
				bad = append(bad, e)
			}
		}
		if len(bad) == 0 {
			bad = c.Evidence
		}
		for _, e := range bad {
			fmt.Fprintln(w, "  - "+evidenceLine(e))
		}
	}
}

func evidenceLine(e audit.Evidence) string {
	s := clean(e.Call)
	if e.Target != "" {
		s += " " + clean(e.Target)
	}
	if e.Expected != "" {
		return s + ": expected " + clean(e.Expected) + ", got " + clean(e.Outcome)
	}
	return s + ": " + clean(e.Outcome)
}

// clean makes text from the audited accounts safe for a terminal and a
// table: evidence quotes policies and error messages a tenant can shape,
// so control and format characters (escape sequences, tabs, newlines,
// bidirectional overrides) are shown escaped rather than written.
func clean(s string) string {
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unprintable(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }
