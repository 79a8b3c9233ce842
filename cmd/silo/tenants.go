package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/registry"
)

func newSignupCmd() *cobra.Command {
	var f apiFlags
	var req api.SignupRequest
	var key string
	var wait bool
	cmd := &cobra.Command{
		Use:   "signup",
		Short: "Sign a new tenant up through the public API",
		Long: `signup calls POST /v1/signup. The idempotency key makes a retry safe: the
same key and details answer with the same tenant. Without --key a random key
(a UUID) is used and printed, so a failed call can be retried with it. A key
of your own must be hard to guess, since a replay answers with the tenant's
status token: at least 20 characters and about 64 bits of randomness (a
random UUID passes; see docs/api.md).

With --wait it follows the tenant's state until it is ACTIVE or FAILED.`,
		Example: `  silo signup --name "Acme Corp" --email ops@acme.example --tier standard --region us-east-1 --wait`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if key == "" {
				key = api.NewIdempotencyKey()
				fmt.Fprintf(cmd.ErrOrStderr(), "idempotency key: %s\n", key)
			} else if err := api.ValidateIdempotencyKey(key); err != nil {
				var fe *registry.FieldError
				if errors.As(err, &fe) {
					return usageError{fmt.Errorf("--key %s", fe.Problem)}
				}
				return usageError{fmt.Errorf("--key: %w", err)}
			}
			ctx := cmd.Context()
			res, err := c.Signup(ctx, req, key)
			if err != nil {
				return err
			}
			if !wait {
				if f.asJSON {
					return printJSON(cmd.OutOrStdout(), res)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s is %s\nstatus: %s (token %s)\n", res.TenantID, res.State, res.StatusURL, res.StatusToken)
				return nil
			}
			// Follow with the tenant's own status token.
			sc, err := api.NewClient(f.addr, res.StatusToken)
			if err != nil {
				return err
			}
			t, err := follow(ctx, sc, res.TenantID, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), t, f.asJSON)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&req.Name, "name", "", "the customer's name (required)")
	cmd.Flags().StringVar(&req.Email, "email", "", "the customer's contact email (required)")
	cmd.Flags().StringVar(&req.Tier, "tier", "standard", "basic, standard or enterprise")
	cmd.Flags().StringVar(&req.Region, "region", "us-east-1", "AWS region of the tenant's stack")
	cmd.Flags().StringVar(&key, "key", "", "idempotency key, made at random (default: a new random UUID)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the tenant until it is ACTIVE or FAILED")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("email")
	return cmd
}

func newTenantsCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "List, inspect and act on tenants through the operator API",
		Long: `tenants talks to the operator API with a bearer token (--token or
SILO_TOKEN): viewer for ls, get and events; operator for suspend, resume,
retry, redeploy, pin and unpin; admin for decommission. Every action but pin
and unpin needs --reason; all land in the tenant's audit events with your
identity.`,
	}
	f.register(cmd)

	var state, cursor string
	var limit int
	var all bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List tenants in a state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var tenants []api.TenantView
			next := cursor
			for {
				page, err := c.Tenants(cmd.Context(), state, limit, next)
				if err != nil {
					return err
				}
				tenants = append(tenants, page.Tenants...)
				next = page.Next
				if !all || next == "" {
					break
				}
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), api.TenantList{Tenants: tenants, Next: next})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tTIER\tREGION\tSTATE\tIN STATE\tDEADLINE\tACCOUNT\tVERSION\tENDPOINT")
			for _, t := range tenants {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Tier, t.Region, t.State, t.InState, deadlineCell(t), t.AccountID, t.AppVersion, t.Endpoint)
			}
			tw.Flush()
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s (or --all)\n", next)
			}
			return nil
		},
	}
	ls.Flags().StringVar(&state, "state", "ACTIVE", "state to list: "+strings.ToLower(fmt.Sprint(registry.States())))
	ls.Flags().IntVar(&limit, "limit", 100, "page size (at most 1000)")
	ls.Flags().StringVar(&cursor, "cursor", "", "continue from a previous page")
	ls.Flags().BoolVar(&all, "all", false, "fetch every page")

	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show one tenant",
		Args:  exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			t, err := c.Tenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), t, f.asJSON)
		},
	}
	events := &cobra.Command{
		Use:   "events ID",
		Short: "Show a tenant's audit history",
		Args:  exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ev, err := c.Events(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), ev)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSEQ\tTYPE\tCHANGE\tACTOR\tREASON")
			for _, e := range ev.Events {
				change := ""
				if e.To != "" {
					change = fmt.Sprintf("%s→%s", e.From, e.To)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Seq, e.Type, change, e.Actor, e.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(ls, get, events)
	for _, a := range []struct{ name, short string }{
		{"suspend", "Suspend an ACTIVE tenant"},
		{"resume", "Resume a SUSPENDED tenant"},
		{"retry", "Retry a FAILED tenant from the step that failed"},
		{"redeploy", "Redeploy a tenant's stack"},
		{"decommission", "Decommission a tenant: delete everything and close its account (admin)"},
	} {
		cmd.AddCommand(newActionCmd(&f, a.name, a.short))
	}
	cmd.AddCommand(newPinCmd(&f), newUnpinCmd(&f), newResolveCmd(&f))
	return cmd
}

// newResolveCmd is `silo tenants resolve`: where a tenant's own API is, as a
// front end finds it (GET /v1/resolve). By id it needs no token.
func newResolveCmd(f *apiFlags) *cobra.Command {
	var userToken string
	cmd := &cobra.Command{
		Use:   "resolve [ID | --user-token T]",
		Short: "Find a serving tenant's endpoint and DNS name, by id or from an end user's token",
		Long: `resolve asks GET /v1/resolve where a tenant's API is. By id it is public
(no --token needed) and answers only for a serving tenant (ACTIVE or
UPDATING): any other id is "not found". With --user-token, an end user's token
of the tenant application, it resolves the tenant the token names and says
why not when it cannot (suspended, not ready, unknown).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (userToken != "") || len(args) > 1 {
				return usageError{errors.New("give a tenant id or --user-token, one of them")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var v *api.ResolveView
			if userToken != "" {
				v, err = c.ResolveUser(cmd.Context(), userToken)
			} else {
				v, err = c.Resolve(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), v)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "tenant\t%s\nstate\t%s\nregion\t%s\nendpoint\t%s\n", v.ID, v.State, v.Region, v.Endpoint)
			if v.DNSName != "" {
				fmt.Fprintf(tw, "dns name\t%s\n", v.DNSName)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&userToken, "user-token", "", "an end user's bearer token of the tenant application")
	return cmd
}

func newPinCmd(f *apiFlags) *cobra.Command {
	var release string
	cmd := &cobra.Command{
		Use:   "pin ID [--release R]",
		Short: "Pin a tenant to a release (the one it runs by default): rollouts leave it out",
		Long: `pin keeps rollouts away from a tenant. With --release it also moves the
tenant to that release (the reconciler deploys it); without, the tenant stays
on the release it runs. unpin lets rollouts reach it again.`,
		Args: exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			t, err := c.Pin(cmd.Context(), args[0], release)
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), t, f.asJSON)
		},
	}
	cmd.Flags().StringVar(&release, "release", "", "the release to pin to (default: the one it runs)")
	return cmd
}

func newUnpinCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "unpin ID",
		Short: "Let rollouts reach a pinned tenant again",
		Args:  exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			t, err := c.Unpin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), t, f.asJSON)
		},
	}
}

func newActionCmd(f *apiFlags, action, short string) *cobra.Command {
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   action + " ID --reason TEXT",
		Short: short,
		Args:  exactArgs(1, "a tenant id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageError{errors.New("--reason is required: it is recorded in the tenant's audit events")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			t, err := c.Action(cmd.Context(), args[0], action, reason)
			if err != nil {
				return err
			}
			if wait {
				if t, err = follow(cmd.Context(), c, t.ID, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			return printTenant(cmd.OutOrStdout(), t, f.asJSON)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit events)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the tenant until it settles")
	return cmd
}

// follow polls a tenant, printing each state it passes through, until it
// settles (ACTIVE, SUSPENDED, CLOSED, FAILED) or ctx ends (Ctrl-C).
func follow(ctx context.Context, c *api.Client, id string, w io.Writer) (*api.TenantView, error) {
	last := registry.State("")
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		t, err := c.Tenant(ctx, id)
		if err != nil {
			return nil, err
		}
		if t.State != last {
			fmt.Fprintf(w, "%s  %s %s\n", time.Now().Format("15:04:05"), id, t.State)
			last = t.State
		}
		switch t.State {
		case registry.StateActive, registry.StateSuspended, registry.StateClosed:
			return t, nil
		case registry.StateFailed:
			return t, fmt.Errorf("tenant %s FAILED: %s", id, t.Reason)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// deadlineCell says where a tenant stands against its state's deadline:
// "-" in a resting state, "30m0s" (the deadline) while it has time,
// "PAST 30m0s" once past it, "quota wait" while a quota holds it.
func deadlineCell(t api.TenantView) string {
	switch {
	case t.Deadline == "":
		return "-"
	case t.Overdue:
		return "PAST " + t.Deadline
	case t.Waiting != "":
		return "quota wait"
	}
	return t.Deadline
}

func printTenant(w io.Writer, t *api.TenantView, asJSON bool) error {
	if asJSON {
		return printJSON(w, t)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("tenant", t.ID)
	row("name", t.Name)
	row("state", string(t.State))
	row("reason", t.Reason)
	row("failed in", string(t.FailedFrom))
	if !t.StateSince.IsZero() {
		row("in state", fmt.Sprintf("%s (since %s)", t.InState, t.StateSince.UTC().Format(time.RFC3339)))
	}
	if t.Deadline != "" {
		row("deadline", deadlineCell(*t))
	}
	row("waiting", t.Waiting)
	if t.LastError != "" {
		at := ""
		if t.LastErrorAt != nil {
			at = " (since " + t.LastErrorAt.UTC().Format(time.RFC3339) + ")"
		}
		row("last error", t.LastError+at)
	}
	row("tier", string(t.Tier))
	row("region", t.Region)
	row("account", t.AccountID)
	row("endpoint", t.Endpoint)
	row("version", t.AppVersion)
	if t.TargetVersion != t.AppVersion {
		row("target", t.TargetVersion)
	}
	row("pinned to", t.PinnedRelease)
	row("health", t.Health.Summary())
	row("created", t.CreatedAt.Format(time.RFC3339))
	row("updated", t.UpdatedAt.Format(time.RFC3339))
	if e := t.LastEvent; e != nil {
		row("last event", fmt.Sprintf("%s by %s at %s %s", e.Type, e.Actor, e.Time.Format(time.RFC3339), e.Reason))
	}
	return tw.Flush()
}
