package api

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client. Its memory is bounded: when it
// tracks too many clients it forgets the ones whose bucket has refilled
// (forgetting them costs nothing: they would start full anyway).
type limiter struct {
	every rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newLimiter(every rate.Limit, burst, max int) *limiter {
	return &limiter{every: every, burst: burst, max: max, clients: map[string]*rate.Limiter{}}
}

// allow takes a token for client at now, or says how long until one is there.
func (l *limiter) allow(client string, now time.Time) (bool, time.Duration) {
	if l.every == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.max {
			l.sweep(now)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.clients[client] = lim
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Hour
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *limiter) sweep(now time.Time) {
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
	// Everyone is busy: drop an arbitrary half rather than grow without
	// bound. Those clients get a fresh bucket, which is the lesser harm.
	if len(l.clients) >= l.max {
		n := 0
		for k := range l.clients {
			if n >= len(l.clients)/2 {
				break
			}
			delete(l.clients, k)
			n++
		}
	}
}

// retryAfter renders a delay as whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// clientKey identifies the caller for rate limiting: the first hop of
// X-Forwarded-For when the deployment trusts it (behind API Gateway or a
// load balancer that sets it), otherwise the connection's address.
func clientKey(r *http.Request, trustForwarded bool) string {
	if trustForwarded {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
				return ip.Unmap().String()
			}
		}
	}
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h // the Lambda adapter sets a bare IP, a server "ip:port"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}
