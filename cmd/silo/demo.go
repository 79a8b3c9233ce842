package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/local"
	"github.com/silo-saas/silo/registry"
)

// demoSignups are the three customers `silo local --demo` signs up.
var demoSignups = []api.SignupRequest{
	{Name: "Acme Corp", Email: "ops@acme.example", Tier: "enterprise", Region: "us-east-1"},
	{Name: "Globex", Email: "cloud@globex.example", Tier: "standard", Region: "eu-west-1"},
	{Name: "Initech", Email: "it@initech.example", Tier: "basic", Region: "us-west-2"},
}

// demoResult is one row of the demo's summary.
type demoResult struct {
	Tenant   *api.TenantView
	Health   string // status code and body status of GET /health
	Items    string // outcome of an /items write and read
	Isolated string // outcome of another tenant's token on this endpoint
	// Audit is the tenant's isolation report (ACTIVE tenants only).
	Audit    *audit.Report
	Problems []string
}

// runDemo does what a newcomer would do by hand: signs up through the public
// API, follows each tenant with its status token, and uses every endpoint.
func runDemo(ctx context.Context, p *local.Platform, progress io.Writer) ([]*demoResult, error) {
	public, err := api.NewClient(p.Info.API, "")
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "\nsigning three tenants up through POST /v1/signup…")
	type pending struct {
		id, token string
	}
	var signed []pending
	for _, req := range demoSignups {
		res, err := public.Signup(ctx, req, api.NewIdempotencyKey())
		if err != nil {
			return nil, fmt.Errorf("sign up %s: %w", req.Name, err)
		}
		fmt.Fprintf(progress, "  %-24s → tenant %s (%s)\n", req.Name, res.TenantID, res.State)
		signed = append(signed, pending{res.TenantID, res.StatusToken})
	}
	// Follow every tenant until it settles, printing each change.
	results := make([]*demoResult, len(signed))
	last := map[string]registry.State{}
	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for settled := 0; settled < len(signed); {
		settled = 0
		for i, s := range signed {
			c, _ := api.NewClient(p.Info.API, s.token)
			t, err := c.Tenant(waitCtx, s.id)
			if err != nil {
				return nil, fmt.Errorf("follow %s: %w", s.id, err)
			}
			if last[s.id] != t.State {
				fmt.Fprintf(progress, "  %s  %-16s %s\n", time.Now().Format("15:04:05.0"), s.id, t.State)
				last[s.id] = t.State
			}
			if t.State == registry.StateActive || t.State == registry.StateFailed {
				settled++
				results[i] = &demoResult{Tenant: t}
			}
		}
		if settled == len(signed) {
			break
		}
		select {
		case <-waitCtx.Done():
			return nil, fmt.Errorf("tenants did not settle: %w", waitCtx.Err())
		case <-tick.C:
		}
	}
	fmt.Fprintln(progress, "calling each tenant's endpoint…")
	hc := &http.Client{Timeout: 10 * time.Second}
	for i, r := range results {
		t := r.Tenant
		if t.State != registry.StateActive {
			r.Problems = append(r.Problems, "not ACTIVE: "+t.Reason)
			continue
		}
		r.Health = demoHealth(ctx, hc, t.Endpoint, &r.Problems)
		token, err := p.Issuer.Mint(t.ID, "demo-user@"+t.ID, time.Hour, nil)
		if err != nil {
			return nil, err
		}
		r.Items = demoItems(ctx, hc, t.Endpoint, token, &r.Problems)
		// The previous tenant's user tries this tenant's endpoint.
		other := results[(i+len(results)-1)%len(results)].Tenant
		otherToken, err := p.Issuer.Mint(other.ID, "demo-user@"+other.ID, time.Hour, nil)
		if err != nil {
			return nil, err
		}
		code := demoCall(ctx, hc, http.MethodGet, t.Endpoint+"/items", otherToken, nil, nil)
		r.Isolated = fmt.Sprintf("%s's token: %d", other.ID, code)
		if code != http.StatusForbidden {
			r.Problems = append(r.Problems, fmt.Sprintf("another tenant's token got %d, want 403", code))
		}
	}
	if err := demoAudit(ctx, p, results, progress); err != nil {
		return nil, err
	}
	// The emulator tracks no spend, but it serves Cost Explorer results it
	// is given: give it made-up month-to-date costs for the demo accounts so
	// the console's cost column has something to show.
	costs := map[string]float64{}
	for i, r := range results {
		if r.Tenant.AccountID != "" {
			costs[r.Tenant.AccountID] = 11.5 + 7.25*float64(i)
		}
	}
	if err := p.Control.Org.SetCosts(ctx, costs); err != nil {
		fmt.Fprintf(progress, "could not give the emulator demo costs: %v\n", err)
	}
	return results, nil
}

// demoAudit runs the isolation audit over the ACTIVE tenants through the
// API with the admin token, as `silo audit isolation --tenant ...` does,
// and gives each tenant its report.
func demoAudit(ctx context.Context, p *local.Platform, results []*demoResult, progress io.Writer) error {
	var ids []string
	for _, r := range results {
		if r.Tenant.State == registry.StateActive {
			ids = append(ids, r.Tenant.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	fmt.Fprintln(progress, "auditing their isolation through POST /v1/audit/isolation…")
	c, err := api.NewClient(p.Info.API, p.Info.AdminToken)
	if err != nil {
		return err
	}
	fl, err := c.AuditIsolation(ctx, ids)
	if err != nil {
		return fmt.Errorf("isolation audit: %w", err)
	}
	applyAudit(results, fl)
	return nil
}

// applyAudit gives each ACTIVE tenant its report from fl: a tenant without
// one, or whose report did not pass, is a problem of the demo.
func applyAudit(results []*demoResult, fl *audit.Fleet) {
	for _, r := range results {
		if r.Tenant.State != registry.StateActive {
			continue
		}
		i := slices.IndexFunc(fl.Reports, func(rep audit.Report) bool { return rep.TenantID == r.Tenant.ID })
		if i < 0 {
			r.Problems = append(r.Problems, "no isolation report")
			continue
		}
		rep := fl.Reports[i]
		r.Audit = &rep
		if rep.Status != audit.StatusPass {
			r.Problems = append(r.Problems, fmt.Sprintf("isolation audit: %s (%s)", rep.Status, strings.Join(unpassed(rep), ", ")))
		}
	}
}

// unpassed names the checks of rep that did not pass.
func unpassed(rep audit.Report) []string {
	var out []string
	for _, c := range rep.Checks {
		if c.Status != audit.StatusPass {
			out = append(out, c.Name)
		}
	}
	return out
}

func demoHealth(ctx context.Context, hc *http.Client, endpoint string, problems *[]string) string {
	var body struct {
		Status string `json:"status"`
	}
	code := demoCall(ctx, hc, http.MethodGet, endpoint+"/health", "", nil, &body)
	if code != http.StatusOK || body.Status != "ok" {
		*problems = append(*problems, fmt.Sprintf("/health answered %d %q", code, body.Status))
	}
	return fmt.Sprintf("%d %s", code, body.Status)
}

func demoItems(ctx context.Context, hc *http.Client, endpoint, token string, problems *[]string) string {
	var created struct {
		ID string `json:"id"`
	}
	code := demoCall(ctx, hc, http.MethodPost, endpoint+"/items", token, map[string]any{"name": "first order", "data": map[string]any{"qty": 3}}, &created)
	if code != http.StatusCreated || created.ID == "" {
		*problems = append(*problems, fmt.Sprintf("POST /items answered %d", code))
		return fmt.Sprintf("write %d", code)
	}
	var got struct {
		Name string `json:"name"`
	}
	code = demoCall(ctx, hc, http.MethodGet, endpoint+"/items/"+created.ID, token, nil, &got)
	if code != http.StatusOK || got.Name != "first order" {
		*problems = append(*problems, fmt.Sprintf("GET /items/%s answered %d %q", created.ID, code, got.Name))
		return fmt.Sprintf("read %d", code)
	}
	return "write 201, read 200"
}

// demoCall makes one request and returns the status code (0 when the
// request failed), decoding a JSON answer into out.
func demoCall(ctx context.Context, hc *http.Client, method, url, token string, body, out any) int {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
	}
	return resp.StatusCode
}

func demoFailures(results []*demoResult) int {
	n := 0
	for _, r := range results {
		n += len(r.Problems)
	}
	return n
}

func printDemo(w io.Writer, results []*demoResult, elapsed time.Duration) {
	fmt.Fprintf(w, "\ndemo summary (%s from start):\n", elapsed.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSTATE\tACCOUNT\tREGION\tENDPOINT\tHEALTH\tITEMS\tISOLATION\tRESULT")
	for _, r := range results {
		t := r.Tenant
		result := "ok"
		if len(r.Problems) > 0 {
			result = "PROBLEM: " + strings.Join(r.Problems, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.State, t.AccountID, t.Region, t.Endpoint, r.Health, r.Items, r.Isolated, result)
	}
	tw.Flush()
	printDemoAudit(w, results)
}

// printDemoAudit writes the isolation audit's verdict per tenant: the
// checks passed out of those made, and which did not pass.
func printDemoAudit(w io.Writer, results []*demoResult) {
	var audited []*audit.Report
	for _, r := range results {
		if r.Audit != nil {
			audited = append(audited, r.Audit)
		}
	}
	if len(audited) == 0 {
		return
	}
	began, ended := audited[0].StartedAt, audited[0].FinishedAt
	for _, rep := range audited {
		began, ended = minTime(began, rep.StartedAt), maxTime(ended, rep.FinishedAt)
	}
	fmt.Fprintf(w, "\nisolation audit (silo audit isolation, %s):\n", ended.Sub(began).Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tVERDICT\tCHECKS PASSED")
	for _, rep := range audited {
		passed := len(rep.Checks) - len(unpassed(*rep))
		cell := fmt.Sprintf("%d/%d", passed, len(rep.Checks))
		if bad := unpassed(*rep); len(bad) > 0 {
			cell += " (not passed: " + clean(strings.Join(bad, ", ")) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", clean(rep.TenantID), verdict(rep.Status), cell)
	}
	tw.Flush()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
