package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/preview"
)

func newPreviewCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "preview",
		Short: "Open, update, list, extend and release PR previews",
		Long: `preview drives PR previews through the API (--api or SILO_API, with an
operator token in --token or SILO_TOKEN; ls needs only a viewer token).

A preview is one warm pool account leased to a pull request, running the
PR's build in Tenants/Preview. up opens it (or deploys a new build to the
same account), down releases it: its account is reset, proved clean by
inventory, and returned to the pool. See docs/previews.md.`,
	}
	f.register(cmd)
	cmd.AddCommand(newPreviewUpCmd(&f), newPreviewDownCmd(&f), newPreviewLsCmd(&f), newPreviewExtendCmd(&f))
	return cmd
}

// prFlags name one PR's preview.
type prFlags struct {
	repo string
	pr   int
}

func (p *prFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.repo, "repo", "", "the repository, owner/name (required)")
	cmd.Flags().IntVar(&p.pr, "pr", 0, "the pull request number (required)")
	_ = cmd.MarkFlagRequired("repo")
	_ = cmd.MarkFlagRequired("pr")
}

// target is the API client and the preview id a command acts on: the
// PR's preview id, or the longer one a preview made before ids had a length
// budget still lives under (preview.LegacyPreviewID), as long as it does.
func (p *prFlags) target(ctx context.Context, f *apiFlags) (*api.Client, string, error) {
	c, err := f.client()
	if err != nil {
		return nil, "", err
	}
	id, err := p.id()
	if err != nil {
		return nil, "", err
	}
	if legacy := preview.LegacyPreviewID(p.repo, p.pr); legacy != "" {
		pv, err := c.Preview(ctx, legacy)
		var ae *api.Error
		switch {
		case err == nil && pv.Phase != preview.PhaseReleased:
			return c, legacy, nil
		case err != nil && (!errors.As(err, &ae) || ae.Status != http.StatusNotFound):
			return nil, "", err
		}
	}
	return c, id, nil
}

func (p *prFlags) id() (string, error) {
	id, err := preview.PreviewID(p.repo, p.pr)
	if err != nil {
		return "", usageError{err}
	}
	return id, nil
}

func newPreviewUpCmd(f *apiFlags) *cobra.Command {
	var p prFlags
	var artifact string
	var ttl, waitFor time.Duration
	var wait bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Open a PR's preview with a build, or deploy a new build to it",
		Long: `up sends the build (a Lambda code zip, at most 4 MiB inline, or an
s3://bucket/key the control plane can read) and asks for the PR's preview.
A new preview queues for a pool account, for at most --wait-timeout; an
existing one keeps its account and deploys the build there.

With --wait it follows the preview until it is ready (printing each phase
to stderr) and prints its URL; it exits 1 if the preview fails. When
$GITHUB_OUTPUT is set, it appends preview_id=, url= and account_id= lines
there for the next steps of a GitHub Actions job.`,
		Example: `  silo preview up --repo acme/web --pr 42 --artifact dist/app.zip --wait
  silo preview up --repo acme/web --pr 42 --artifact s3://builds/web/42.zip --ttl 8h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if _, err := p.id(); err != nil {
				return err
			}
			req := api.PreviewUpRequest{Repo: p.repo, PR: p.pr}
			if ttl > 0 {
				req.TTL = ttl.String()
			}
			if waitFor > 0 {
				req.Wait = waitFor.String()
			}
			if strings.HasPrefix(artifact, "s3://") {
				req.ArtifactURI = artifact
			} else {
				b, err := os.ReadFile(artifact)
				if err != nil {
					return usageError{fmt.Errorf("read the artifact: %w", err)}
				}
				if len(b) > api.MaxInlineArtifact {
					return usageError{fmt.Errorf("%s is %d bytes; builds over %d bytes go to S3 first: pass --artifact s3://bucket/key", artifact, len(b), api.MaxInlineArtifact)}
				}
				req.ArtifactZip = b
			}
			ctx := cmd.Context()
			pv, err := c.PreviewUp(ctx, req)
			if err != nil {
				return err
			}
			if wait {
				fmt.Fprintf(cmd.ErrOrStderr(), "preview %s: build %s\n", pv.ID, short(pv.Release))
				if pv, err = followPreview(ctx, c, pv, cmd.ErrOrStderr()); err != nil {
					_ = githubOutput(pv)
					return err
				}
			}
			if err := githubOutput(pv); err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), pv)
			}
			if pv.URL != "" {
				fmt.Fprintln(cmd.OutOrStdout(), pv.URL)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "preview %s is %s%s (follow with --wait, or silo preview ls)\n", pv.ID, pv.Phase, queueNote(pv))
			return nil
		},
	}
	p.register(cmd)
	cmd.Flags().StringVar(&artifact, "artifact", "", "the build: a code zip file, or s3://bucket/key (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the lease lasts (default 24h, at most 72h)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the preview until it is ready, and print its URL")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", 0, "how long to queue for a pool account (default 15m, at most 1h)")
	_ = cmd.MarkFlagRequired("artifact")
	return cmd
}

func queueNote(p *preview.Preview) string {
	if p.Phase != preview.PhaseWaiting || p.QueuePosition == 0 {
		return ""
	}
	note := fmt.Sprintf(", number %d in the queue for a pool account", p.QueuePosition)
	if p.WaitUntil != nil {
		note += " until " + p.WaitUntil.Local().Format("15:04:05")
	}
	return note
}

func short(release string) string {
	if len(release) > 12 {
		return release[:12]
	}
	return release
}

// followPreview polls a preview until it is ready, failed or released,
// printing each change of phase.
func followPreview(ctx context.Context, c *api.Client, p *preview.Preview, w io.Writer) (*preview.Preview, error) {
	var last string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		line := string(p.Phase) + queueNote(p)
		if p.AccountID != "" && p.Phase == preview.PhaseDeploying {
			line += " on account " + p.AccountID
		}
		if p.Phase == preview.PhaseUpdating {
			line += " to build " + short(p.Release)
		}
		if line != last {
			fmt.Fprintf(w, "%s  %s %s\n", time.Now().Format("15:04:05"), p.ID, line)
			last = line
		}
		switch {
		case p.Phase == preview.PhaseFailed:
			return p, fmt.Errorf("preview %s failed: %s", p.ID, p.Reason)
		case p.Phase == preview.PhaseReleased:
			return p, fmt.Errorf("preview %s was released while waiting", p.ID)
		case p.Phase == preview.PhaseReady && p.Running == p.Release:
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("stopped waiting: %w", ctx.Err())
		case <-tick.C:
		}
		next, err := c.Preview(ctx, p.ID)
		if err != nil {
			return p, err
		}
		p = next
	}
}

// githubOutput appends the preview's id, URL and account to the file
// GitHub Actions names in $GITHUB_OUTPUT, when it is set.
func githubOutput(p *preview.Preview) error {
	path := os.Getenv("GITHUB_OUTPUT")
	if path == "" || p == nil {
		return nil
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write $GITHUB_OUTPUT: %w", err)
	}
	_, err = fmt.Fprintf(fh, "preview_id=%s\nurl=%s\naccount_id=%s\n", p.ID, p.URL, p.AccountID)
	return errors.Join(err, fh.Close())
}

func newPreviewDownCmd(f *apiFlags) *cobra.Command {
	var p prFlags
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Release a PR's preview (its account is reset and returned to the pool)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, id, err := p.target(cmd.Context(), f)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pv, err := c.PreviewDown(ctx, id, reason)
			if err != nil {
				return err
			}
			for wait && pv.Phase != preview.PhaseReleased {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
				if pv, err = c.Preview(ctx, id); err != nil {
					return err
				}
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), pv)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "preview %s is %s\n", pv.ID, pv.Phase)
			return nil
		},
	}
	p.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit history (default: released)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the preview is released")
	return cmd
}

func newPreviewExtendCmd(f *apiFlags) *cobra.Command {
	var p prFlags
	var by time.Duration
	cmd := &cobra.Command{
		Use:   "extend",
		Short: "Lengthen a preview's lease (its end may be at most 72h from now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, id, err := p.target(cmd.Context(), f)
			if err != nil {
				return err
			}
			pv, err := c.PreviewExtend(cmd.Context(), id, by)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), pv)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "preview %s: lease ends %s\n", pv.ID, pv.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		},
	}
	p.register(cmd)
	cmd.Flags().DurationVar(&by, "by", 0, "how much longer, for example 12h (required)")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

func newPreviewLsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the pool by state and the previews",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			l, err := c.Previews(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), l)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "pool: target %d; %d available, %d leased, %d resetting, %d quarantined, %d being created\n",
				l.Target, l.Counts["available"], l.Counts["leased"], l.Counts["resetting"], l.Counts["quarantined"], l.Counts["creating"])
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PREVIEW\tREPO\tPR\tPHASE\tACCOUNT\tEXPIRES\tURL")
			for _, p := range l.Previews {
				exp := ""
				if p.ExpiresAt != nil {
					exp = time.Until(*p.ExpiresAt).Round(time.Minute).String()
				}
				if p.Phase == preview.PhaseWaiting {
					exp = fmt.Sprintf("queue #%d", p.QueuePosition)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", p.ID, p.Repo, p.PR, p.Phase, p.AccountID, exp, p.URL)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, a := range l.Accounts {
				if a.State == "quarantined" {
					fmt.Fprintf(w, "quarantined %s: %s\n", a.AccountID, a.Reason)
				}
			}
			return nil
		},
	}
}
