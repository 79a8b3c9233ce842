package apphost

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// In AWS each tenant's own API Gateway stage throttles its requests by the
// tenant's tier (the template's TierThrottle mapping, chosen by its Tier
// parameter, on the stage's method settings): there is no shared limiter.
// The emulator skips AWS::ApiGateway::Stage, so the host, which stands in
// for the stage, enforces the same numbers, read from the same mapping of
// the same embedded template: a token bucket per served tenant, answering
// what API Gateway answers when a stage throttles.

// Throttle is one tier's stage limit: a steady rate in requests per second
// and a burst.
type Throttle struct {
	Rate  float64 `json:"Rate"`
	Burst int     `json:"Burst"`
}

// TierThrottles returns the TierThrottle mapping of the tenant template
// (stacksets.TenantTemplate), by tier.
func TierThrottles() (map[registry.Tier]Throttle, error) {
	return parseThrottles(stacksets.TenantTemplate())
}

func parseThrottles(template []byte) (map[registry.Tier]Throttle, error) {
	var tpl struct {
		Mappings struct {
			TierThrottle map[registry.Tier]Throttle `json:"TierThrottle"`
		} `json:"Mappings"`
	}
	if err := json.Unmarshal(template, &tpl); err != nil {
		return nil, fmt.Errorf("tenant template: %w", err)
	}
	m := tpl.Mappings.TierThrottle
	if len(m) == 0 {
		return nil, fmt.Errorf("tenant template: no TierThrottle mapping")
	}
	for tier, th := range m {
		if th.Rate <= 0 || th.Burst <= 0 {
			return nil, fmt.Errorf("tenant template: TierThrottle %s is %+v", tier, th)
		}
	}
	return m, nil
}

// stage is the throttle of one served tenant.
type stage struct {
	tier    registry.Tier
	limiter *rate.Limiter
	now     func() time.Time
}

// throttleFor returns the stage throttle of tier (nil: unknown tier, no
// throttle, as a template without the tier could not have deployed).
func (h *Host) throttleFor(tier registry.Tier) *stage {
	th, ok := h.throttles[tier]
	if !ok {
		return nil
	}
	return &stage{tier: tier, limiter: rate.NewLimiter(rate.Limit(th.Rate), th.Burst), now: h.now}
}

// allow takes a token from the bucket.
func (s *stage) allow() bool {
	return s == nil || s.limiter.AllowN(s.now(), 1)
}

// tooManyRequests is what API Gateway answers for a throttled stage.
func tooManyRequests(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", "TooManyRequestsException")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = io.WriteString(w, `{"message":"Too Many Requests"}`)
}
