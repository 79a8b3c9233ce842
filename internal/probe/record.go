package probe

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/silo-saas/silo/registry"
)

// Store is what the recorder needs of the registry.
type Store interface {
	Get(ctx context.Context, id string) (*registry.Tenant, error)
	Update(ctx context.Context, t *registry.Tenant, c registry.Change) (*registry.Tenant, error)
	PutRollups(ctx context.Context, rollups []registry.Rollup) error
}

// Publisher puts tenant events on the event bus (vending.Bus).
type Publisher interface {
	Publish(ctx context.Context, kind string, t *registry.Tenant)
}

// EventHealthChanged is the audit event type and the bus detail type of a
// health transition.
const EventHealthChanged = "tenant.health_changed"

// Actor is how the prober appears in audit events.
const Actor = "prober"

// RecorderOptions tune a Recorder. Zero values take the defaults.
type RecorderOptions struct {
	// Heartbeat is the longest a tenant's health record goes unwritten
	// while nothing changes, so its CheckedAt shows the prober is alive
	// (default 15m). Tenants are spread over the last third of it, so a
	// fleet that became known in one sweep does not heartbeat in one sweep.
	Heartbeat time.Duration
	// Writers bounds the registry writes in flight (default 16).
	Writers int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Recorder turns sweep results into registry state: a tenant's health is
// written only when its status or failure class changes (with an audit
// event and a bus event) or when its heartbeat is due; probe results are
// summed per tenant and hour in memory and written as roll-ups once the
// hour is over (or on Flush), so a sweep that changes nothing writes
// nothing.
//
// Change detection compares with the health stored on the tenant as read
// for the sweep, not with memory, so a fresh process (a cold Lambda) makes
// the same decisions as a warm one. Only the open hour's roll-up lives in
// memory: a crash loses at most that hour's partial counts.
type Recorder struct {
	store Store
	bus   Publisher
	log   *slog.Logger
	opts  RecorderOptions

	mu      sync.Mutex
	open    map[string]*bucket           // tenant → the hour being summed
	history map[string][]registry.Rollup // tenant → closed hours of the last day, for Uptime24h
}

type bucket struct {
	hour      time.Time
	checks    int
	failures  int
	latencies []int64 // ms, one per check
}

func (b *bucket) rollup(tenant string) registry.Rollup {
	lat := slices.Clone(b.latencies)
	slices.Sort(lat)
	r := registry.Rollup{TenantID: tenant, Hour: b.hour, Checks: b.checks, Failures: b.failures}
	if len(lat) > 0 {
		r.P50MS, r.P95MS, r.MaxMS = registry.Percentile(lat, 50), registry.Percentile(lat, 95), lat[len(lat)-1]
	}
	return r
}

// NewRecorder returns a Recorder writing to store; bus may be nil.
func NewRecorder(store Store, bus Publisher, opts RecorderOptions, log *slog.Logger) *Recorder {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Minute
	}
	if opts.Writers <= 0 {
		opts.Writers = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Recorder{store: store, bus: bus, log: log, opts: opts,
		open: map[string]*bucket{}, history: map[string][]registry.Rollup{}}
}

// RecordStats says what one Record call did.
type RecordStats struct {
	Results    int // verdicts recorded (not_probed ones are not)
	Changes    int // health transitions written, each with its events
	Heartbeats int // unchanged health rewritten because its heartbeat was due
	Gone       int // tenants no longer serving when written to (left alone)
	Rollups    int // roll-up items written (closed hours)
	Errors     int
}

// Writes is the number of registry writes the call made.
func (s RecordStats) Writes() int { return s.Changes + s.Heartbeats + s.Rollups }

// StatusOf maps a verdict to a health status: a failure of the body or
// latency condition means the application answers but not well
// (degraded); anything else that is not up means down.
func StatusOf(r Result) registry.HealthStatus {
	switch {
	case r.Up:
		return registry.HealthUp
	case r.Class == ClassBody || r.Class == ClassSlow:
		return registry.HealthDegraded
	default:
		return registry.HealthDown
	}
}

// Detail is the first failed condition of a verdict, for an operator.
func Detail(r Result) string {
	for _, c := range r.Conditions {
		if !c.OK {
			if c.Detail != "" {
				return c.Name + ": " + c.Detail
			}
			return c.Name
		}
	}
	return ""
}

// Record records one sweep's results. tenants holds each probed tenant as
// read for the sweep (its stored health is what a result is compared
// with). Errors on single tenants are logged and counted, not returned:
// one bad write must not hide the rest of the fleet.
func (r *Recorder) Record(ctx context.Context, tenants map[string]*registry.Tenant, results []Result) RecordStats {
	now := r.opts.Now().UTC()
	var st RecordStats
	type write struct {
		t      *registry.Tenant
		h      registry.Health
		change bool
		probed time.Time
	}
	var writes []write
	r.mu.Lock()
	closed := r.closeHours(now)
	for _, res := range results {
		if res.Class == ClassNotProbed {
			continue
		}
		t := tenants[res.TenantID]
		if t == nil {
			continue
		}
		st.Results++
		r.add(res, now)
		// Times are the recorder's clock (the sweep's end, within a sweep
		// of the probe), the same clock that decides heartbeats and hours.
		h := registry.Health{Status: StatusOf(res), Class: res.Class, Detail: Detail(res),
			Since: now, CheckedAt: now, LatencyMS: res.Latency.Milliseconds()}
		if u, ok := r.uptime24h(res.TenantID, now); ok {
			h.Uptime24h = &u
		}
		prev := t.Health
		switch {
		case prev == nil || prev.Status != h.Status || prev.Class != h.Class:
			writes = append(writes, write{t: t, h: h, change: true, probed: res.Checked})
		case now.Sub(prev.CheckedAt) >= r.heartbeatOf(t.ID) || wantsVerdict(t, res.Checked):
			h.Since = prev.Since
			writes = append(writes, write{t: t, h: h, probed: res.Checked})
		}
	}
	r.mu.Unlock()

	if len(closed) > 0 {
		if err := r.store.PutRollups(ctx, closed); err != nil {
			st.Errors++
			r.log.ErrorContext(ctx, "health roll-ups not written", "rollups", len(closed), "error", err)
		} else {
			st.Rollups = len(closed)
		}
	}

	var mu sync.Mutex
	sem := make(chan struct{}, r.opts.Writers)
	var wg sync.WaitGroup
	for _, w := range writes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := r.write(ctx, w.t, w.h, w.change, w.probed)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, errGone):
				st.Gone++
			case err != nil:
				st.Errors++
				r.log.WarnContext(ctx, "health not recorded", "tenant", w.t.ID, "error", err)
			case w.change:
				st.Changes++
			default:
				st.Heartbeats++
			}
		})
	}
	wg.Wait()
	return st
}

var errGone = errors.New("tenant no longer serving")

// write stores one tenant's health, re-reading it once if someone else
// (the reconciler, an operator) wrote it since the sweep read it.
func (r *Recorder) write(ctx context.Context, t *registry.Tenant, h registry.Health, change bool, probed time.Time) error {
	for attempt := 0; ; attempt++ {
		if t.State != registry.StateActive && t.State != registry.StateUpdating {
			return errGone
		}
		if after, ok := t.ProbeAfter(); ok && probed.Before(after) {
			// The tenant was updated after this probe was taken (a rollout
			// wave finished meanwhile): the verdict is on the release it
			// ran before, and recording it now would pass it off as one on
			// the new release. The next sweep probes the new one.
			return nil
		}
		prev := t.Health
		c := registry.Change{Actor: Actor, Mutate: func(n *registry.Tenant) { hh := h; n.Health = &hh }}
		if change {
			from := registry.HealthUnknown
			if prev != nil {
				from = prev.Status
			}
			c.Type = EventHealthChanged
			c.Reason = fmt.Sprintf("%s → %s", orUnknown(from), h.Status)
			if h.Class != "" {
				c.Reason += " (" + h.Class + ")"
			}
			c.Detail = map[string]string{"from": string(orUnknown(from)), "to": string(h.Status), "class": h.Class,
				"detail": h.Detail, "latency_ms": fmt.Sprint(h.LatencyMS)}
		}
		next, err := r.store.Update(ctx, t, c)
		if err == nil {
			if change {
				r.log.InfoContext(ctx, "tenant health changed", "tenant", t.ID, "reason", c.Reason, "detail", h.Detail)
				if r.bus != nil {
					r.bus.Publish(ctx, EventHealthChanged, next)
				}
			}
			return nil
		}
		if !errors.Is(err, registry.ErrConflict) || attempt > 0 {
			return err
		}
		if t, err = r.store.Get(ctx, t.ID); err != nil {
			return err
		}
		// What changed may have been the health itself (another prober):
		// a write that is no longer a change becomes a heartbeat, and one
		// whose record is fresh is not needed at all.
		if cur := t.Health; cur != nil && cur.Status == h.Status && cur.Class == h.Class {
			if !h.CheckedAt.After(cur.CheckedAt) {
				return nil
			}
			change = false
			h.Since = cur.Since
		}
	}
}

func orUnknown(s registry.HealthStatus) registry.HealthStatus {
	if s == registry.HealthUnknown {
		return "unknown"
	}
	return s
}

// heartbeatOf is when tenant id's unchanged health is next rewritten: in
// the last third of the heartbeat interval, by a stable hash of its id.
func (r *Recorder) heartbeatOf(id string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	third := r.opts.Heartbeat / 3
	if third <= 0 {
		return r.opts.Heartbeat
	}
	return r.opts.Heartbeat - third + time.Duration(h.Sum32())%third
}

// add sums one verdict into its tenant's open hour. Callers hold mu.
func (r *Recorder) add(res Result, now time.Time) {
	hour := now.Truncate(time.Hour)
	b := r.open[res.TenantID]
	if b == nil || !b.hour.Equal(hour) {
		b = &bucket{hour: hour}
		r.open[res.TenantID] = b
	}
	b.checks++
	if !res.Up {
		b.failures++
	}
	b.latencies = append(b.latencies, res.Latency.Milliseconds())
}

// closeHours takes every open hour before now's out of memory as a
// roll-up, keeping the last day of them for Uptime24h. Callers hold mu.
func (r *Recorder) closeHours(now time.Time) []registry.Rollup {
	hour := now.Truncate(time.Hour)
	var out []registry.Rollup
	for id, b := range r.open {
		if b.hour.Before(hour) {
			ru := b.rollup(id)
			out = append(out, ru)
			r.history[id] = append(r.history[id], ru)
			delete(r.open, id)
		}
	}
	dayAgo := hour.Add(-23 * time.Hour)
	for id, h := range r.history {
		h = slices.DeleteFunc(h, func(ru registry.Rollup) bool { return ru.Hour.Before(dayAgo) })
		if len(h) == 0 {
			delete(r.history, id)
		} else {
			r.history[id] = h
		}
	}
	return out
}

// uptime24h is the tenant's share of up checks over the closed hours of the
// last day this recorder saw, plus the open hour. Callers hold mu.
func (r *Recorder) uptime24h(id string, now time.Time) (float64, bool) {
	rs := slices.Clone(r.history[id])
	if b := r.open[id]; b != nil {
		rs = append(rs, registry.Rollup{Hour: b.hour, Checks: b.checks, Failures: b.failures})
	}
	return registry.Uptime(rs, now.Add(-23*time.Hour))
}

// Flush writes every open hour's partial roll-up (at shutdown; a later
// flush of the same hour replaces it).
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	var out []registry.Rollup
	for id, b := range r.open {
		out = append(out, b.rollup(id))
	}
	r.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	return r.store.PutRollups(ctx, out)
}

// wantsVerdict reports whether t asks for a verdict (registry.AttrProbeAfter)
// that a probe taken at probed gives and its recorded health does not.
func wantsVerdict(t *registry.Tenant, probed time.Time) bool {
	after, ok := t.ProbeAfter()
	return ok && !probed.Before(after) && !t.FreshHealth()
}
