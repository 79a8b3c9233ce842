package bench

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/console"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/registry"
)

// PageTiming is the server time of one console page over repeated requests.
type PageTiming struct {
	Page     string        `json:"page"`
	Requests int           `json:"requests"`
	P50      time.Duration `json:"p50_ns"`
	P95      time.Duration `json:"p95_ns"`
	Max      time.Duration `json:"max_ns"`
	Bytes    int           `json:"bytes"`
}

// consolePages times the console's overview and list pages over a fleet of
// n tenants held in its snapshot: the time from request to the last byte
// written, through the real handler, operator token check included.
func consolePages(n, requests int) ([]PageTiming, error) {
	iss, err := issuer.New("https://issuer.bench.invalid", issuer.Options{Audience: api.Audience})
	if err != nil {
		return nil, err
	}
	v, err := api.NewJWTVerifier(api.JWTConfig{Key: iss.PublicKey(), Issuer: iss.URL()})
	if err != nil {
		return nil, err
	}
	token, err := iss.Mint("", "bench", time.Hour, map[string]any{api.RoleClaim: string(api.RoleViewer)})
	if err != nil {
		return nil, err
	}
	c, err := console.NewFromTenants(benchFleet(n, time.Now().UTC()), console.Deps{Verifier: v, Log: slog.New(slog.DiscardHandler)}, console.Options{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Log in once, as a browser would, and keep the session cookie.
	login := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {token}, "next": {"/"}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	c.ServeHTTP(w, login)
	cookies := w.Result().Cookies()
	if len(cookies) == 0 {
		return nil, fmt.Errorf("console login failed: %d %s", w.Code, w.Body.String())
	}
	pages := []string{
		"/",
		"/tenants",
		"/tenants?sort=name&order=desc&page=40&per=100",
		"/tenants?q=tenant+07&health=down&sort=updated",
	}
	var out []PageTiming
	for _, page := range pages {
		pt := PageTiming{Page: page, Requests: requests}
		var took []time.Duration
		for range requests {
			r := httptest.NewRequest(http.MethodGet, page, nil)
			for _, ck := range cookies {
				r.AddCookie(ck)
			}
			w := httptest.NewRecorder()
			start := time.Now()
			c.ServeHTTP(w, r)
			took = append(took, time.Since(start))
			if w.Code != http.StatusOK {
				return nil, fmt.Errorf("console %s answered %d", page, w.Code)
			}
			pt.Bytes = w.Body.Len()
		}
		slices.Sort(took)
		pt.P50, pt.P95, pt.Max = took[len(took)/2], took[len(took)*95/100], took[len(took)-1]
		out = append(out, pt)
	}
	return out, nil
}

// benchFleet makes n tenants in a realistic mix: most ACTIVE and up, some
// degraded or down, some in other states.
func benchFleet(n int, now time.Time) []*registry.Tenant {
	tiers := []registry.Tier{registry.TierBasic, registry.TierStandard, registry.TierEnterprise}
	out := make([]*registry.Tenant, 0, n)
	for i := range n {
		st := registry.StateActive
		switch i % 50 {
		case 1:
			st = registry.StateSuspended
		case 2:
			st = registry.StateFailed
		case 3:
			st = registry.StateDeploying
		case 4:
			st = registry.StateUpdating
		}
		t := &registry.Tenant{
			Spec: registry.Spec{ID: fmt.Sprintf("tenant-%05d", i), Name: fmt.Sprintf("Tenant %05d Inc", i),
				Email: fmt.Sprintf("ops@tenant%05d.example", i), Tier: tiers[i%3], Region: "us-east-1", Kind: registry.KindTenant},
			State: st, AccountID: fmt.Sprintf("%012d", 300000000000+i), AppVersion: fmt.Sprintf("1.%d.0", i%5),
			Endpoint:  fmt.Sprintf("https://tenant-%05d.apps.example.com", i),
			CreatedAt: now.Add(-time.Duration(i) * time.Hour), UpdatedAt: now.Add(-time.Duration(i) * time.Minute), Version: 3,
		}
		if st == registry.StateActive || st == registry.StateUpdating {
			up := 0.999 - float64(i%7)/1000
			h := &registry.Health{Status: registry.HealthUp, Since: now.Add(-time.Duration(i%90) * time.Hour), CheckedAt: now, LatencyMS: int64(20 + i%180), Uptime24h: &up}
			switch i % 97 {
			case 5:
				h.Status, h.Class, h.Detail = registry.HealthDown, "timeout", "reachable: no answer in 5s"
			case 6:
				h.Status, h.Class, h.Detail = registry.HealthDegraded, "slow", "latency < threshold: 2.4s"
			}
			t.Health = h
		}
		out = append(out, t)
	}
	return out
}
