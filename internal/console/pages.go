package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// Tenant list limits.
const (
	defaultPer  = 50
	minPer      = 10
	maxPer      = 500
	maxQueryLen = 200
	// maxFailing bounds the failing tenants listed on the overview, and
	// maxOverdue those past their state's deadline; the rest are a click
	// away in the filtered list.
	maxFailing = 100
	maxOverdue = 100
)

// pageTimeout bounds the registry and AWS calls of one page.
const pageTimeout = 10 * time.Second

// params checks a query against the names a page accepts: an unknown name
// or a repeated one is a 400, so a typo never silently shows everything.
func params(r *http.Request, allowed ...string) (url.Values, []string) {
	q := r.URL.Query()
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(q)) {
		switch {
		case !slices.Contains(allowed, k):
			problems = append(problems, fmt.Sprintf("unknown parameter %s (this page takes %s)", quote(k), orNone(allowed)))
		case len(q[k]) > 1:
			problems = append(problems, fmt.Sprintf("parameter %s is given %d times", quote(k), len(q[k])))
		}
	}
	return q, problems
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no parameters"
	}
	return strings.Join(s, ", ")
}

// quote shows what the caller sent, shortened and printable.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD"))
}

// withSnapshot gets the fleet snapshot, or a 503 when the very first load
// fails (there is nothing to show yet).
func (c *Console) withSnapshot(r *http.Request, v *view) (*snapshot, error) {
	s, err := c.fleet.get(r.Context())
	if err != nil {
		id := requestID()
		c.log.ErrorContext(r.Context(), "load fleet", "error", err, "request_id", id)
		return nil, &httpError{status: http.StatusServiceUnavailable, msg: "The tenant registry could not be read. Try again in a moment.", id: id}
	}
	v.SnapshotAt = s.at
	return s, nil
}

// costView is the cost shown on a page.
type costView struct {
	OK     bool
	Amount string
	// Note says where the figure comes from, or why there is none.
	Note string
}

// costs returns the cost report, or nil (logged) when it is unavailable:
// a cost figure is never worth failing a page for.
func (c *Console) costs(ctx context.Context) *CostReport {
	if c.d.Costs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := c.d.Costs.MonthToDate(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "cost unavailable", "error", err)
		return nil
	}
	return rep
}

type overviewData struct {
	States      []stateCount
	Total       int
	Serving     int
	Health      []healthCount
	Failing     []*row
	MoreFailing int
	Uptime      *float64
	UptimeN     int
	Cost        costView
	// Overdue are the tenants past their state's deadline, longest past
	// first; OverdueCount all of them.
	Overdue      []*row
	OverdueCount int
	MoreOverdue  int
}

type stateCount struct {
	State registry.State
	Count int
}

type healthCount struct {
	Status string
	Count  int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, v *view) error {
	if _, problems := params(r); len(problems) > 0 {
		return errBadRequest(problems...)
	}
	s, err := c.withSnapshot(r, v)
	if err != nil {
		return err
	}
	d := &overviewData{Total: s.tenantCount, Serving: s.serving}
	for _, st := range registry.States() {
		d.States = append(d.States, stateCount{st, s.states[st]})
	}
	for _, h := range registry.HealthStatuses() {
		d.Health = append(d.Health, healthCount{h, s.health[h]})
	}
	d.Failing = s.failing[:min(len(s.failing), maxFailing)]
	d.MoreFailing = len(s.failing) - len(d.Failing)
	d.Overdue = s.overdue[:min(len(s.overdue), maxOverdue)]
	d.OverdueCount = len(s.overdue)
	d.MoreOverdue = len(s.overdue) - len(d.Overdue)
	if s.uptimeN > 0 {
		u := s.uptimeSum / float64(s.uptimeN)
		d.Uptime, d.UptimeN = &u, s.uptimeN
	}
	d.Cost = costView{Note: "cost unavailable"}
	if rep := c.costs(r.Context()); rep != nil {
		var sum float64
		for _, a := range s.accounts {
			sum += rep.ByAccount[a]
		}
		d.Cost = costView{OK: true, Amount: money(sum, rep.Unit),
			Note: fmt.Sprintf("%d tenant accounts, %s to %s, as of %s", len(s.accounts),
				rep.Start.Format(time.DateOnly), rep.End.AddDate(0, 0, -1).Format(time.DateOnly), rep.FetchedAt.UTC().Format("15:04Z"))}
	}
	v.Title, v.Page, v.Nav, v.Data = "Fleet overview", "overview", "overview", d
	return nil
}

// listQuery is a parsed, valid tenant list request.
type listQuery struct {
	Q, State, Health, Tier, Version string
	// Deadline "past" keeps only the tenants past their state's deadline.
	Deadline    string
	Sort, Order string
	Page, Per   int
}

func parseList(r *http.Request) (listQuery, []string) {
	q, problems := params(r, "q", "state", "health", "tier", "version", "deadline", "sort", "order", "page", "per")
	lq := listQuery{Q: strings.TrimSpace(q.Get("q")), State: q.Get("state"), Health: q.Get("health"), Tier: q.Get("tier"),
		Version: q.Get("version"), Deadline: q.Get("deadline"), Sort: q.Get("sort"), Order: q.Get("order"), Page: 1, Per: defaultPer}
	if lq.Deadline != "" && lq.Deadline != "past" {
		problems = append(problems, fmt.Sprintf("deadline %s is not past (the only filter on deadlines)", quote(lq.Deadline)))
	}
	if utf8.RuneCountInString(lq.Q) > maxQueryLen || !utf8.ValidString(lq.Q) || strings.ContainsFunc(lq.Q, unicode.IsControl) {
		problems = append(problems, fmt.Sprintf("q must be printable text of at most %d characters", maxQueryLen))
	}
	if lq.State != "" {
		if !registry.State(lq.State).Valid() {
			problems = append(problems, fmt.Sprintf("state %s is not a tenant state (one of %s)", quote(lq.State), joinStates()))
		}
	}
	if lq.Health != "" && !slices.Contains(registry.HealthStatuses(), lq.Health) {
		problems = append(problems, fmt.Sprintf("health %s is not one of %s", quote(lq.Health), strings.Join(registry.HealthStatuses(), ", ")))
	}
	if lq.Tier != "" {
		if _, ok := tierRank[registry.Tier(lq.Tier)]; !ok {
			problems = append(problems, fmt.Sprintf("tier %s is not one of basic, standard, enterprise", quote(lq.Tier)))
		}
	}
	if len(lq.Version) > 100 || !utf8.ValidString(lq.Version) || strings.ContainsFunc(lq.Version, unicode.IsControl) {
		problems = append(problems, "version must be printable text of at most 100 characters")
	}
	switch {
	case lq.Sort == "":
		lq.Sort = "id"
	case !slices.Contains(sortKeys, lq.Sort):
		problems = append(problems, fmt.Sprintf("sort %s is not one of %s", quote(lq.Sort), strings.Join(sortKeys, ", ")))
	}
	switch lq.Order {
	case "":
		lq.Order = "asc"
	case "asc", "desc":
	default:
		problems = append(problems, fmt.Sprintf("order %s is not asc or desc", quote(lq.Order)))
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			problems = append(problems, fmt.Sprintf("page %s is not a page number (1 or more)", quote(p)))
		}
		lq.Page = n
	}
	if p := q.Get("per"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < minPer || n > maxPer {
			problems = append(problems, fmt.Sprintf("per %s is not a page size from %d to %d", quote(p), minPer, maxPer))
		}
		lq.Per = n
	}
	return lq, problems
}

func joinStates() string {
	var s []string
	for _, st := range registry.States() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// values returns the query as URL parameters, leaving out defaults, with
// page set to p: what a link to another page of this listing carries.
func (lq listQuery) values(p int) url.Values {
	v := url.Values{}
	set := func(k, val, def string) {
		if val != "" && val != def {
			v.Set(k, val)
		}
	}
	set("q", lq.Q, "")
	set("state", lq.State, "")
	set("health", lq.Health, "")
	set("tier", lq.Tier, "")
	set("version", lq.Version, "")
	set("deadline", lq.Deadline, "")
	set("sort", lq.Sort, "id")
	set("order", lq.Order, "asc")
	set("per", strconv.Itoa(lq.Per), strconv.Itoa(defaultPer))
	set("page", strconv.Itoa(p), "1")
	return v
}

type tenantsData struct {
	Query    listQuery
	Rows     []*row
	Total    int // matching the filters
	Fleet    int
	Page     int
	Pages    int
	From, To int
	Links    []pageLink
	Prev     string
	Next     string
	Sorts    []sortLink
	States   []registry.State
	Healths  []string
	Tiers    []string
	Versions []string
	Pers     []int
}

type pageLink struct {
	N       int
	URL     string
	Current bool
	Gap     bool
}

type sortLink struct {
	Key, Label, URL string
	Active          bool
	Desc            bool
}

func (c *Console) tenants(w http.ResponseWriter, r *http.Request, v *view) error {
	lq, problems := parseList(r)
	if len(problems) > 0 {
		return errBadRequest(problems...)
	}
	s, err := c.withSnapshot(r, v)
	if err != nil {
		return err
	}
	d := &tenantsData{Query: lq, Fleet: s.tenantCount, States: registry.States(), Healths: registry.HealthStatuses(),
		Tiers: []string{"basic", "standard", "enterprise"}, Versions: s.versions, Pers: []int{25, 50, 100, 250, 500}}
	if !slices.Contains(d.Pers, lq.Per) {
		// A page size typed into the URL stays selected in the form.
		d.Pers = append(d.Pers, lq.Per)
		slices.Sort(d.Pers)
	}
	d.Rows, d.Total = s.filter(lq)
	d.Pages = max(1, (d.Total+lq.Per-1)/lq.Per)
	d.Page = lq.Page
	if len(d.Rows) > 0 {
		d.From = (lq.Page-1)*lq.Per + 1
		d.To = d.From + len(d.Rows) - 1
	}
	base := c.o.Prefix + "/tenants"
	link := func(p int) string {
		if e := lq.values(p).Encode(); e != "" {
			return base + "?" + e
		}
		return base
	}
	if lq.Page > 1 {
		d.Prev = link(min(lq.Page-1, d.Pages))
	}
	if lq.Page < d.Pages {
		d.Next = link(lq.Page + 1)
	}
	last := 0
	for p := 1; p <= d.Pages; p++ {
		if p == 1 || p == d.Pages || (p >= lq.Page-2 && p <= lq.Page+2) {
			if last != 0 && p > last+1 {
				d.Links = append(d.Links, pageLink{Gap: true})
			}
			d.Links = append(d.Links, pageLink{N: p, URL: link(p), Current: p == lq.Page})
			last = p
		}
	}
	for _, k := range sortKeys {
		sq := lq
		sq.Sort, sq.Order = k, "asc"
		if lq.Sort == k && lq.Order == "asc" {
			sq.Order = "desc"
		}
		e := sq.values(1).Encode()
		d.Sorts = append(d.Sorts, sortLink{Key: k, Label: sortLabels[k], URL: base + "?" + e, Active: lq.Sort == k, Desc: lq.Order == "desc"})
	}
	v.Title, v.Page, v.Nav, v.Data = "Tenants", "tenants", "tenants", d
	return nil
}

var sortLabels = map[string]string{"id": "ID", "name": "Name", "state": "State", "since": "In state", "health": "Health", "tier": "Tier",
	"version": "Version", "updated": "Updated", "uptime": "Uptime 24h"}

// filter returns one page of the rows matching lq, in its order, and how
// many match in all: one pass over a precomputed order, no sorting.
func (s *snapshot) filter(lq listQuery) ([]*row, int) {
	q := strings.ToLower(lq.Q)
	order := s.orders[lq.Sort]
	skip := (lq.Page - 1) * lq.Per
	out := make([]*row, 0, lq.Per)
	total := 0
	n := len(order)
	for i := range n {
		j := i
		if lq.Order == "desc" {
			j = n - 1 - i
		}
		r := s.rows[order[j]]
		t := r.T
		if (lq.State != "" && string(t.State) != lq.State) || (lq.Health != "" && r.Status != lq.Health) ||
			(lq.Tier != "" && string(t.Tier) != lq.Tier) || (lq.Version != "" && t.AppVersion != lq.Version) ||
			(lq.Deadline == "past" && !r.V.Overdue) || (q != "" && !strings.Contains(r.Key, q)) {
			continue
		}
		if total >= skip && len(out) < lq.Per {
			out = append(out, r)
		}
		total++
	}
	return out, total
}

type tenantData struct {
	T *registry.Tenant
	// V is the tenant judged against its state's deadline now.
	V         vending.Verdict
	Health    string
	OU        string
	Uptime24h *float64
	Uptime30d *float64
	Chart     *chart
	Events    []registry.Event
	Cost      costView
	// Isolation is whether the console reads isolation reports (the page
	// links to the tenant's).
	Isolation bool
}

func (c *Console) tenant(w http.ResponseWriter, r *http.Request, v *view) error {
	if _, problems := params(r); len(problems) > 0 {
		return errBadRequest(problems...)
	}
	id := r.PathValue("id")
	if err := registry.ValidateID(id); err != nil {
		return errBadRequest("tenant id: " + strings.TrimPrefix(err.Error(), "id: "))
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	t, err := c.d.Registry.Get(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return errNotFound("There is no tenant " + quote(id) + ".")
	}
	if err != nil {
		return fmt.Errorf("get tenant %s: %w", id, err)
	}
	now := c.o.Now()
	d := &tenantData{T: t, V: c.o.Deadlines.Judge(t, now), Health: healthOf(t), OU: "—", Cost: costView{Note: "cost unavailable"}, Isolation: c.d.Isolation != nil}
	// The rest is independent: read it at once.
	var (
		wg                sync.WaitGroup
		events            []registry.Event
		rollups           []registry.Rollup
		evErr, rollErr    error
		rep               *CostReport
		ouPath, ouErrText string
	)
	wg.Go(func() { events, evErr = c.d.Registry.Events(ctx, id) })
	wg.Go(func() { rollups, rollErr = c.d.Registry.Rollups(ctx, id, now.Add(-30*24*time.Hour)) })
	if t.AccountID != "" {
		wg.Go(func() { rep = c.costs(ctx) })
		if c.d.OUs != nil {
			wg.Go(func() {
				p, err := c.d.OUs.Path(ctx, t.AccountID)
				if err != nil {
					c.log.WarnContext(ctx, "OU unavailable", "account", t.AccountID, "error", err)
					ouErrText = "OU unavailable"
					return
				}
				ouPath = p
			})
		}
	}
	wg.Wait()
	if evErr != nil {
		return fmt.Errorf("events of %s: %w", id, evErr)
	}
	if rollErr != nil {
		return fmt.Errorf("roll-ups of %s: %w", id, rollErr)
	}
	switch {
	case ouErrText != "":
		d.OU = ouErrText
	case t.AccountID != "" && c.d.OUs != nil:
		d.OU = ouPath
		if d.OU == "" {
			d.OU = "(root)"
		}
	}
	slices.Reverse(events)
	d.Events = events
	if u, ok := registry.Uptime(rollups, now.Add(-24*time.Hour)); ok {
		d.Uptime24h = &u
	}
	if u, ok := registry.Uptime(rollups, now.Add(-30*24*time.Hour)); ok {
		d.Uptime30d = &u
	}
	d.Chart = newChart(rollups, now, 48)
	switch {
	case t.AccountID == "":
		d.Cost = costView{Note: "no account yet"}
	case rep != nil:
		d.Cost = costView{OK: true, Amount: money(rep.ByAccount[t.AccountID], rep.Unit),
			Note: fmt.Sprintf("%s to %s, as of %s", rep.Start.Format(time.DateOnly), rep.End.AddDate(0, 0, -1).Format(time.DateOnly), rep.FetchedAt.UTC().Format("15:04Z"))}
	}
	v.Title, v.Page, v.Nav, v.Data = t.Name+" ("+t.ID+")", "tenant", "tenants", d
	return nil
}
