package main

import (
	"cmp"
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
	"github.com/silo-saas/silo/registry"
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
	var ttl, waitFor, timeout, every time.Duration
	var wait bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Open a PR's preview with a build, or deploy a new build to it",
		Long: `up sends the build (a Lambda code zip, at most 4 MiB inline, or an
s3://bucket/key the control plane can read) and asks for the PR's preview.
A new preview queues for a pool account, for at most --wait-timeout; an
existing one keeps its account and deploys the build there. The build is
named by its release (a content hash), which up prints to stderr.

With --wait it follows this build until the preview runs it and the fleet
prober has probed it since (printing progress to stderr), then prints its
URL. It exits 0 when that probe found the build up; 1 when it found it
down or degraded (with the failure class and detail), when the preview
failed or was released, or after --timeout; and 3 when another up for the
same PR replaced the build meanwhile (naming that build: the preview
deploys it instead). An up of the same build again is not a replacement.
With --json it prints the preview, this build and its outcome, whatever
the exit code.

When $GITHUB_OUTPUT is set, it appends preview_id=, url=, account_id=,
build= and (with --wait) outcome= lines there for the next steps of a
GitHub Actions job.`,
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
			if every <= 0 {
				return usageError{errors.New("--interval must be positive")}
			}
			if timeout < 0 {
				return usageError{errors.New("--timeout must not be negative")}
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
			build := pv.Build
			if build == "" {
				// An API from before builds were named per up: its answer's
				// release is still the one this up set.
				build = pv.Release
			}
			res := upResult{Preview: pv}
			var werr error
			fmt.Fprintf(cmd.ErrOrStderr(), "preview %s: build %s\n", pv.ID, short(build))
			if wait {
				if timeout == 0 {
					// The queue wait the server allows, then readyAllowance
					// for the deploy and the first probe.
					timeout = cmp.Or(waitFor, preview.DefaultWaitTimeout) + readyAllowance
					if pv.WaitUntil != nil {
						timeout = time.Until(*pv.WaitUntil).Round(time.Second) + readyAllowance
					}
				}
				wctx, cancel := context.WithTimeout(ctx, timeout)
				res, werr = followBuild(wctx, c, pv, build, cmd.ErrOrStderr(), every)
				cancel()
				if errors.Is(werr, context.DeadlineExceeded) && ctx.Err() == nil {
					werr = fmt.Errorf("gave up after %s waiting for build %s of preview %s (last seen: %s); the preview goes on: silo preview ls",
						timeout, short(build), pv.ID, describe(res.Preview, build))
				}
			}
			res.Build = build
			if err := githubOutput(res); err != nil {
				return errors.Join(werr, err)
			}
			if f.asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return errors.Join(werr, err)
				}
				return werr
			}
			if werr != nil {
				return werr
			}
			if res.URL != "" && (!wait || res.Outcome == preview.OutcomeHealthy) {
				fmt.Fprintln(cmd.OutOrStdout(), res.URL)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "preview %s is %s%s (follow with --wait, or silo preview ls)\n", res.ID, res.Phase, queueNote(res.Preview))
			return nil
		},
	}
	p.register(cmd)
	cmd.Flags().StringVar(&artifact, "artifact", "", "the build: a code zip file, or s3://bucket/key (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the lease lasts (default 24h, at most 72h)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the build until it is deployed and probed, and print the preview's URL")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", 0, "how long to queue for a pool account (default 15m, at most 1h)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, how long to follow the build in all (default: the queue wait, then 15m)")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "how often --wait reads the preview")
	_ = cmd.MarkFlagRequired("artifact")
	return cmd
}

// readyAllowance is how long up --wait gives a build to deploy and be
// probed once its preview holds an account, by default: a stack instance
// takes minutes in AWS, and the prober looks every minute.
const readyAllowance = 15 * time.Minute

// upResult is what up prints with --json and writes to $GITHUB_OUTPUT:
// the preview as last read, the build this up asked for and, with --wait,
// where that build ended.
type upResult struct {
	*preview.Preview
	// Outcome is where the build ended; empty without --wait, pending when
	// the wait gave up.
	Outcome preview.Outcome `json:"outcome,omitempty"`
	// SupersededBy is the build that replaced this one (the preview's
	// release then).
	SupersededBy string `json:"superseded_by,omitempty"`
}

// supersededError ends an up --wait whose build another up replaced; it
// exits 3, so that CI tells "a newer build took over" from a failure.
type supersededError struct{ error }

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

// previewReader reads a preview (*api.Client).
type previewReader interface {
	Preview(ctx context.Context, id string) (*preview.Preview, error)
}

// progressEvery is how often a wait in which nothing changes says it is
// still waiting.
const progressEvery = time.Minute

// followBuild polls a preview every interval until build has an outcome
// (preview.BuildOutcome) other than pending, printing a line to w when
// what it waits for changes, and at least every minute. It returns the
// preview as last read with the outcome, and an error for every outcome but
// healthy; when ctx ends first, the outcome is pending.
func followBuild(ctx context.Context, c previewReader, p *preview.Preview, build string, w io.Writer, interval time.Duration) (upResult, error) {
	var last string
	var printed time.Time
	begun := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		res := upResult{Preview: p, Outcome: p.BuildOutcome(build)}
		line := describe(p, build)
		switch now := time.Now(); {
		case line != last:
			fmt.Fprintf(w, "%s  %s %s\n", now.Format("15:04:05"), p.ID, line)
			last, printed = line, now
		case now.Sub(printed) >= progressEvery:
			fmt.Fprintf(w, "%s  %s still %s (waited %s)\n", now.Format("15:04:05"), p.ID, line, now.Sub(begun).Round(time.Second))
			printed = now
		}
		switch res.Outcome {
		case preview.OutcomeHealthy:
			return res, nil
		case preview.OutcomeUnhealthy:
			return res, fmt.Errorf("preview %s: build %s is deployed at %s but failed its health check: %s, probed at %s",
				p.ID, short(build), p.URL, probeVerdict(p.Health), p.Health.CheckedAt.Local().Format("15:04:05"))
		case preview.OutcomeSuperseded:
			res.SupersededBy = p.Release
			by := ""
			if p.RequestedBy != "" {
				by = ", asked for by " + p.RequestedBy
			}
			return res, supersededError{fmt.Errorf("preview %s: build %s was replaced by build %s (a later up for %s#%d%s); the preview deploys that one",
				p.ID, short(build), short(p.Release), p.Repo, p.PR, by)}
		case preview.OutcomeFailed:
			return res, fmt.Errorf("preview %s failed on build %s: %s", p.ID, short(build), p.Reason)
		case preview.OutcomeReleased:
			return res, fmt.Errorf("preview %s was released while waiting for build %s", p.ID, short(build))
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("stopped waiting: %w", ctx.Err())
		case <-tick.C:
		}
		next, err := c.Preview(ctx, p.ID)
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("stopped waiting: %w", ctx.Err())
			}
			return res, err
		}
		p = next
	}
}

// describe says where build stands in p, in the words of a progress line.
func describe(p *preview.Preview, build string) string {
	switch {
	case p.Release != build:
		return "deploys build " + short(p.Release) + " instead"
	case p.Phase == preview.PhaseWaiting:
		return string(p.Phase) + queueNote(p)
	case p.Phase == preview.PhaseDeploying && p.AccountID != "":
		return "deploying build " + short(build) + " on account " + p.AccountID
	case p.Phase == preview.PhaseUpdating:
		return "updating from build " + short(p.Running) + " to build " + short(build)
	case p.Phase == preview.PhaseReady && p.Running != build:
		// Another build's deploy ended; this one's follows.
		return "running build " + short(p.Running) + "; build " + short(build) + " follows"
	case p.Phase == preview.PhaseReady && (!p.HealthFresh || p.Health == nil):
		return "ready on build " + short(build) + ": waiting for its first health probe"
	case p.Phase == preview.PhaseReady:
		return "ready on build " + short(build) + ": " + probeVerdict(p.Health)
	}
	return string(p.Phase)
}

// probeVerdict words a probe's verdict: "up, 12ms", or "down, class status
// (status == 200: status 502)" with the failed condition.
func probeVerdict(h *registry.Health) string {
	if h.Status == registry.HealthUp {
		return fmt.Sprintf("up, %dms", h.LatencyMS)
	}
	detail := h.Detail
	if detail == "" {
		detail = "no detail"
	}
	return fmt.Sprintf("%s, class %s (%s)", h.Status, h.Class, detail)
}

// githubOutput appends the preview's id, URL and account, this up's build
// and its outcome to the file GitHub Actions names in $GITHUB_OUTPUT, when
// it is set.
func githubOutput(r upResult) error {
	path := os.Getenv("GITHUB_OUTPUT")
	if path == "" || r.Preview == nil {
		return nil
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write $GITHUB_OUTPUT: %w", err)
	}
	_, err = fmt.Fprintf(fh, "preview_id=%s\nurl=%s\naccount_id=%s\nbuild=%s\n", r.ID, r.URL, r.AccountID, r.Build)
	if err == nil && r.Outcome != "" {
		_, err = fmt.Fprintf(fh, "outcome=%s\n", r.Outcome)
	}
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
