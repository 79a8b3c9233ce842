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

	"golang.org/x/net/publicsuffix"
	"golang.org/x/time/rate"
)

// limiter is a token bucket per key (a client, an email domain). Its memory
// is bounded: when it tracks too many keys it forgets the ones whose bucket
// has refilled (forgetting them costs nothing: they would start full anyway).
//
// It is its own small bucket rather than rate.Limiter because a signup may
// hand its token back (refund) after the registry answered, and
// rate.Reservation.CancelAt restores nothing once the reservation's time
// has passed, which it has by then.
type limiter struct {
	every rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket holds tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(every rate.Limit, burst, max int) *limiter {
	return &limiter{every: every, burst: burst, max: max, buckets: map[string]*bucket{}}
}

// refill brings b up to now.
func (l *limiter) refill(b *bucket, now time.Time) {
	if now.After(b.last) {
		b.tokens = min(float64(l.burst), b.tokens+now.Sub(b.last).Seconds()*float64(l.every))
		b.last = now
	}
}

// allow takes a token for key at now, or says how long until one is there.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.every == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		b = &bucket{tokens: float64(l.burst), last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.every <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - b.tokens) / float64(l.every) * float64(time.Second))
}

// refund gives back a token allow took for key: the request it paid for
// turned out to cost nothing (a replay, a body the registry refused).
func (l *limiter) refund(key string, now time.Time) {
	if l.every == rate.Inf {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return // forgotten by a sweep: it is full again anyway
	}
	l.refill(b, now)
	b.tokens = min(float64(l.burst), b.tokens+1)
}

func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	// Everyone is busy: drop an arbitrary half rather than grow without
	// bound. Those keys get a fresh bucket, which is the lesser harm.
	if len(l.buckets) >= l.max {
		n := 0
		for k := range l.buckets {
			if n >= len(l.buckets)/2 {
				break
			}
			delete(l.buckets, k)
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
// load balancer that sets it), otherwise the connection's address, as
// addrKey groups it.
func clientKey(r *http.Request, trustForwarded bool) string {
	if trustForwarded {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip, ok := parseAddr(strings.TrimSpace(first)); ok {
				return addrKey(ip)
			}
		}
	}
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h // the Lambda adapter sets a bare IP, a server "ip:port"
	}
	if ip, ok := parseAddr(host); ok {
		return addrKey(ip)
	}
	return host
}

// parseAddr reads an address as clients and proxies write it: bare,
// bracketed ("[2001:db8::1]"), or with a port.
func parseAddr(s string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return ip, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	return netip.Addr{}, false
}

// addrKey is the rate-limit key of a client address. An IPv6 client is
// its /64: a subscriber is handed at least a /64 (often a /56 or /48),
// and picks any address in it at will, so keying on the whole address
// would give one client 2^64 buckets. An IPv4-mapped address
// (::ffff:192.0.2.1) is its IPv4 address, as a dual-stack listener reports
// an IPv4 client; a zone (fe80::1%eth0) says which interface, not who.
func addrKey(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64) // never fails for an IPv6 address
		return p.String()
	}
	return ip.String()
}

// emailDomain is the budget key of a signup's email: its registrable domain
// (eTLD+1, by the public suffix list), so a@x.evil.example and
// b@y.evil.example share one. An address without a usable domain keys by
// what follows its last "@" (the registry then refuses it, and the token
// is refunded).
func emailDomain(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	domain := strings.TrimSuffix(email[strings.LastIndexByte(email, '@')+1:], ".")
	if d, err := publicsuffix.EffectiveTLDPlusOne(domain); err == nil {
		return d
	}
	return domain
}
