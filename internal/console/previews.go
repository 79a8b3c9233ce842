package console

import (
	"cmp"
	"context"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/silo-saas/silo/registry"
)

// poolSource lists the preview pool's accounts; *registry.Store satisfies it.
type poolSource interface {
	ListPoolAll(ctx context.Context) ([]*registry.PoolAccount, error)
}

var _ poolSource = (*registry.Store)(nil)

// The attributes of a preview tenant that name its pull request.
const (
	attrRepo = "repo"
	attrPR   = "pr"
)

// githubRepo is an "owner/name" that may become a link to GitHub. Repo names
// are validated where previews are asked for, but the console links only
// what it has checked itself.
var githubRepo = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`)

// prURL is the pull request's page, or "" when repo and pr do not make a
// safe link (the page then shows them as text).
func prURL(repo string, pr int) string {
	if pr < 1 || !githubRepo.MatchString(repo) || strings.HasSuffix(repo, "/.") || strings.HasSuffix(repo, "/..") {
		return ""
	}
	return "https://github.com/" + repo + "/pull/" + strconv.Itoa(pr)
}

type previewsData struct {
	// Configured is false when the console has no pool to read.
	Configured bool
	// PoolError is the log reference of a failed pool read; the page still
	// shows what the fleet snapshot knows.
	PoolError string
	Counts    []poolCount
	// Accounts is the pool's size: accounts in any state, not counting
	// those being created.
	Accounts    int
	Target      int
	Leases      []leaseRow
	Waiting     []waitRow
	Quarantined []*registry.PoolAccount
	Resetting   []*registry.PoolAccount
}

type poolCount struct {
	State string
	Count int
}

// leaseRow is one leased account and the preview it serves.
type leaseRow struct {
	AccountID string
	Repo      string
	PR        int
	PRURL     string
	Tenant    string
	// Linked is whether Tenant is a valid id, worth a link to its page.
	Linked    bool
	LeasedAt  time.Time
	ExpiresAt time.Time
	Expired   bool
	// Endpoint, builds and health come from the fleet snapshot, which may
	// not have the preview yet right after a lease.
	Endpoint string
	Build    string
	Target   string
	Health   string
}

// waitRow is one preview request queued for an account.
type waitRow struct {
	Position int
	ID       string
	Repo     string
	PR       string
	PRURL    string
	Since    time.Time
}

func (c *Console) previews(w http.ResponseWriter, r *http.Request, v *view) error {
	if _, problems := params(r); len(problems) > 0 {
		return errBadRequest(problems...)
	}
	s, err := c.withSnapshot(r, v)
	if err != nil {
		return err
	}
	now := c.o.Now()
	d := &previewsData{Configured: c.d.Pool != nil, Target: c.o.PoolTarget}
	for i, row := range s.waiting {
		t := row.T
		pr, _ := strconv.Atoi(t.Attributes[attrPR])
		d.Waiting = append(d.Waiting, waitRow{Position: i + 1, ID: t.ID, Repo: t.Attributes[attrRepo], PR: t.Attributes[attrPR],
			PRURL: prURL(t.Attributes[attrRepo], pr), Since: waitingSince(t)})
	}
	counts := map[string]int{"creating": s.poolCreating}
	if c.d.Pool != nil {
		ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
		defer cancel()
		accounts, err := c.d.Pool.ListPoolAll(ctx)
		if err != nil {
			d.PoolError = requestID()
			c.log.ErrorContext(ctx, "list pool accounts", "error", err, "request_id", d.PoolError)
		}
		for _, a := range accounts {
			counts[string(a.State)]++
			d.Accounts++
			switch a.State {
			case registry.PoolLeased:
				d.Leases = append(d.Leases, leaseOf(a, s, now))
			case registry.PoolQuarantined:
				d.Quarantined = append(d.Quarantined, a)
			case registry.PoolResetting:
				d.Resetting = append(d.Resetting, a)
			}
		}
	}
	for _, st := range registry.PoolStates() {
		d.Counts = append(d.Counts, poolCount{string(st), counts[string(st)]})
	}
	d.Counts = append(d.Counts, poolCount{"creating", counts["creating"]})
	// The lease that ends first is the one an operator may need to act on.
	slices.SortFunc(d.Leases, func(a, b leaseRow) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.AccountID, b.AccountID))
	})
	v.Title, v.Page, v.Nav, v.Data = "Previews", "previews", "previews", d
	return nil
}

// leaseOf joins a leased account with its preview tenant from the snapshot.
func leaseOf(a *registry.PoolAccount, s *snapshot, now time.Time) leaseRow {
	lr := leaseRow{AccountID: a.AccountID}
	l := a.Lease
	if l == nil {
		return lr
	}
	lr.Repo, lr.PR, lr.PRURL, lr.Tenant = l.Repo, l.PR, prURL(l.Repo, l.PR), l.Tenant
	lr.Linked = registry.ValidateID(l.Tenant) == nil
	lr.LeasedAt, lr.ExpiresAt = l.LeasedAt, l.ExpiresAt
	lr.Expired = !l.ExpiresAt.IsZero() && !now.Before(l.ExpiresAt)
	if row, ok := s.byID[l.Tenant]; ok {
		t := row.T
		lr.Endpoint, lr.Build = t.Endpoint, t.AppVersion
		if t.TargetVersion != "" && t.TargetVersion != t.AppVersion {
			lr.Target = t.TargetVersion
		}
		if t.Health != nil {
			lr.Health = row.Status
		}
	}
	return lr
}

// shortBuild shortens a build id for a table cell; the full one goes in
// the cell's title.
func shortBuild(s string) string {
	if utf8.RuneCountInString(s) <= 16 {
		return s
	}
	return string([]rune(s)[:12]) + "…"
}
