package probe_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/probe"
	"github.com/silo-saas/silo/internal/sim"
	"github.com/silo-saas/silo/registry"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// published records bus events.
type published struct {
	mu     sync.Mutex
	events []string
}

func (p *published) Publish(_ context.Context, kind string, t *registry.Tenant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("%s %s %s", kind, t.ID, t.Health.Status))
}

func (p *published) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.events
	p.events = nil
	return out
}

// clock runs at real speed from one minute into an hour, so that a test
// decides which hour its checks fall in, whatever the time of day.
type clock struct {
	mu    sync.Mutex
	start time.Time
	base  time.Time
	off   time.Duration
}

func newClock() *clock {
	now := time.Now()
	return &clock{start: now, base: now.Truncate(time.Hour).Add(time.Minute)}
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.start) + c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

type recordFixture struct {
	store   *registry.Store
	counter *awsx.Counter
	fleet   *sim.Fleet
	bus     *published
	clock   *clock
	sweeper *probe.Sweeper
}

// newRecordFixture seeds n ACTIVE tenants whose endpoints are a simulated
// fleet, and a sweeper over them.
func newRecordFixture(t *testing.T, n int) *recordFixture {
	t.Helper()
	ctx := t.Context()
	org := emu.ResetT(t)
	counter := awsx.NewCounter()
	cfg, err := org.Config(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	store := registry.New(dynamodb.NewFromConfig(cfg), "probe-test")
	if err := store.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	fleet, err := sim.Start(ctx, sim.Options{Endpoints: n, Latency: fast})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	var tenants []*registry.Tenant
	for i, id := range fleet.IDs() {
		tenants = append(tenants, &registry.Tenant{
			Spec:  registry.Spec{ID: id, Name: "Tenant " + id, Email: id + "@example.com", Tier: registry.TierBasic, Region: "us-east-1"},
			State: registry.StateActive, AccountID: fmt.Sprintf("%012d", 200000000000+i), Endpoint: fleet.Endpoint(id),
		})
	}
	if err := store.ImportTenants(ctx, tenants); err != nil {
		t.Fatal(err)
	}
	f := &recordFixture{store: store, counter: counter, fleet: fleet, bus: &published{}, clock: newClock()}
	// These tests count what recording writes, not how the prober classifies
	// latency: a threshold far above the fleet's latency keeps a loaded
	// machine (1,000 probes on 2 cores beside other test packages) from
	// turning a few healthy endpoints "slow" and adding changes the test
	// did not make.
	p := probe.New(probe.Options{Concurrency: 50, Timeout: 10 * time.Second, SlowThreshold: 5 * time.Second, ConfirmDelay: 10 * time.Millisecond}, discard())
	t.Cleanup(p.Close)
	f.sweeper = &probe.Sweeper{
		Registry: store, Prober: p, Shards: 1, Log: discard(),
		Recorder: probe.NewRecorder(store, f.bus, probe.RecorderOptions{Heartbeat: 15 * time.Minute, Now: f.clock.now}, discard()),
	}
	return f
}

// writes is the number of DynamoDB write calls since the last reset.
func (f *recordFixture) writes() int64 {
	var n int64
	for _, op := range []string{"TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"} {
		n += f.counter.Calls("DynamoDB", op)
	}
	return n
}

func (f *recordFixture) sweep(t *testing.T) probe.SweepStats {
	t.Helper()
	f.counter.Reset()
	st, err := f.sweeper.Once(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Record.Errors > 0 {
		t.Fatalf("sweep had %d recording errors", st.Record.Errors)
	}
	return st
}

// TestSecondSweepWritesNothing: the first sweep over 1,000 healthy
// endpoints records each one's health once; the second changes nothing and
// writes nothing at all; a tenant going down is one write with its events.
func TestSecondSweepWritesNothing(t *testing.T) {
	const n = 1000
	f := newRecordFixture(t, n)
	first := f.sweep(t)
	if first.Up != n || first.Record.Changes != n || f.writes() != n {
		t.Fatalf("first sweep: up %d, changes %d, writes %d; want %d each", first.Up, first.Record.Changes, f.writes(), n)
	}
	if got := len(f.bus.take()); got != n {
		t.Errorf("first sweep published %d events, want %d", got, n)
	}

	second := f.sweep(t)
	if second.Up != n || second.Record.Writes() != 0 || f.writes() != 0 {
		t.Fatalf("second sweep: up %d, recorded writes %d, DynamoDB write calls %d; want %d up and no writes",
			second.Up, second.Record.Writes(), f.writes(), n)
	}
	if got := f.bus.take(); len(got) != 0 {
		t.Errorf("second sweep published %v", got)
	}

	down := f.fleet.IDs()[7]
	if err := f.fleet.SetBehaviour(down, sim.Behaviour{Mode: sim.Down}); err != nil {
		t.Fatal(err)
	}
	third := f.sweep(t)
	if third.Down != 1 || third.Record.Changes != 1 || f.writes() != 1 {
		t.Fatalf("third sweep: down %d, changes %d, writes %d; want 1 each", third.Down, third.Record.Changes, f.writes())
	}
	if got := f.bus.take(); len(got) != 1 || got[0] != probe.EventHealthChanged+" "+down+" down" {
		t.Errorf("third sweep published %v", got)
	}
	tn, err := f.store.Get(t.Context(), down)
	if err != nil {
		t.Fatal(err)
	}
	if h := tn.Health; h == nil || h.Status != registry.HealthDown || h.Class != probe.ClassStatus || h.Detail != "status == 200: status 503" {
		t.Fatalf("stored health %+v", tn.Health)
	}
	events, err := f.store.Events(t.Context(), down)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Type != probe.EventHealthChanged || last.Actor != probe.Actor || last.Reason != "up → down (status)" || last.Detail["from"] != "up" {
		t.Errorf("last audit event %+v", last)
	}
	// Still down: nothing more to write.
	if fourth := f.sweep(t); fourth.Record.Writes() != 0 {
		t.Errorf("fourth sweep wrote %d", fourth.Record.Writes())
	}
}

// TestHeartbeatAndRollups: unchanged health is rewritten once its
// heartbeat is due (no events); a closed hour becomes one roll-up per
// tenant, from which uptime is derived.
func TestHeartbeatAndRollups(t *testing.T) {
	const n = 40
	f := newRecordFixture(t, n)
	flapper := f.fleet.IDs()[3]
	f.sweep(t)
	f.bus.take()
	before, err := f.store.Get(t.Context(), flapper)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.sweep(t); st.Record.Writes() != 0 {
		t.Fatalf("unchanged sweep wrote %d", st.Record.Writes())
	}
	// Past the heartbeat: every tenant is rewritten, with no event.
	f.clock.advance(16 * time.Minute)
	st := f.sweep(t)
	if st.Record.Heartbeats != n || st.Record.Changes != 0 {
		t.Fatalf("after 16 minutes: heartbeats %d changes %d, want %d and 0", st.Record.Heartbeats, st.Record.Changes, n)
	}
	if got := f.bus.take(); len(got) != 0 {
		t.Errorf("heartbeats published %v", got)
	}
	tn, err := f.store.Get(t.Context(), flapper)
	if err != nil {
		t.Fatal(err)
	}
	// Since stays when the health entered "up"; CheckedAt moves on.
	if !tn.Health.Since.Equal(before.Health.Since) || !tn.Health.CheckedAt.After(before.Health.CheckedAt) {
		t.Errorf("heartbeat: before %+v, after %+v", before.Health, tn.Health)
	}
	events, _ := f.store.Events(t.Context(), flapper)
	if n := len(events); events[n-1].Type != probe.EventHealthChanged {
		t.Errorf("heartbeat left an audit event %+v", events[n-1])
	}

	// One failing check in this hour for the flapper, then the hour closes.
	if err := f.fleet.SetBehaviour(flapper, sim.Behaviour{Mode: sim.Down}); err != nil {
		t.Fatal(err)
	}
	f.sweep(t)
	if err := f.fleet.SetBehaviour(flapper, sim.Behaviour{Mode: sim.Up}); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(time.Hour)
	st = f.sweep(t)
	if st.Record.Rollups != n {
		t.Fatalf("closing the hour wrote %d roll-ups, want %d", st.Record.Rollups, n)
	}
	rs, err := f.store.Rollups(t.Context(), flapper, f.clock.now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Checks != 4 || rs[0].Failures != 1 || rs[0].MaxMS < rs[0].P50MS {
		t.Fatalf("flapper's roll-ups %+v", rs)
	}
	if u, ok := registry.Uptime(rs, f.clock.now().Add(-24*time.Hour)); !ok || u != 0.75 {
		t.Errorf("uptime from roll-ups %v %v, want 0.75", u, ok)
	}
	// The flapper came back up in the new hour: its record carries the
	// recorder's 24-hour uptime (4 closed checks + 1 open, 1 failed).
	tn, _ = f.store.Get(t.Context(), flapper)
	if tn.Health.Status != registry.HealthUp || tn.Health.Uptime24h == nil || *tn.Health.Uptime24h != 0.8 {
		t.Errorf("flapper's health %+v uptime %v", tn.Health, tn.Health.Uptime24h)
	}
	// Flush writes the open hour.
	f.counter.Reset()
	if err := f.sweeper.Recorder.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := f.counter.Calls("DynamoDB", "BatchWriteItem"); got != 2 { // 40 items: 25 + 15
		t.Errorf("flush made %d batch writes, want 2", got)
	}
}

// TestSweeperSkipsWhatStoppedServing: a tenant suspended between the
// sweep's read and its write is left alone.
func TestRecorderLeavesSuspendedTenant(t *testing.T) {
	f := newRecordFixture(t, 3)
	ctx := t.Context()
	id := f.fleet.IDs()[0]
	snap, err := f.store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Transition(ctx, snap, registry.StateSuspended, registry.Change{Actor: "operator:x", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	results := []probe.Result{{TenantID: id, Up: true, Checked: time.Now(), Latency: time.Millisecond}}
	st := f.sweeper.Recorder.Record(ctx, map[string]*registry.Tenant{id: snap}, results)
	if st.Gone != 1 || st.Changes != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v, want the tenant gone", st)
	}
	cur, _ := f.store.Get(ctx, id)
	if cur.State != registry.StateSuspended || cur.Health != nil {
		t.Errorf("suspended tenant written: %+v", cur)
	}
}

// TestFreshVerdictAsked: a tenant that asks for a verdict from after a
// time (a rollout wave updated it) gets its health written by the next
// sweep even though nothing changed, once; a verdict the sweep cannot give
// (asked for after the probe) is not written as one.
func TestFreshVerdictAsked(t *testing.T) {
	f := newRecordFixture(t, 3)
	// The rollout's clock and the recorder's must be one clock here.
	f.sweeper.Recorder = probe.NewRecorder(f.store, f.bus, probe.RecorderOptions{Heartbeat: 15 * time.Minute, Now: time.Now}, discard())
	f.sweep(t)
	if st := f.sweep(t); st.Record.Writes() != 0 {
		t.Fatalf("unchanged fleet: %d writes", st.Record.Writes())
	}
	id := f.fleet.IDs()[1]
	ask := func(at time.Time) {
		t.Helper()
		tn, err := f.store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Update(t.Context(), tn, registry.Change{Mutate: func(n *registry.Tenant) {
			n.Attributes = map[string]string{registry.AttrProbeAfter: at.UTC().Format(time.RFC3339Nano)}
		}}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := func() bool {
		t.Helper()
		tn, err := f.store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return tn.FreshHealth()
	}
	asked := time.Now()
	ask(asked)
	if fresh() {
		t.Fatal("health recorded before the request counts as fresh")
	}
	if st := f.sweep(t); st.Record.Heartbeats != 1 || st.Record.Changes != 0 || f.writes() != 1 {
		t.Fatalf("sweep after the request: %+v, %d writes; want one heartbeat", st.Record, f.writes())
	}
	if !fresh() {
		t.Fatal("the verdict asked for was not recorded as fresh")
	}
	if st := f.sweep(t); st.Record.Writes() != 0 {
		t.Fatalf("after the fresh verdict: %d writes", st.Record.Writes())
	}
	// Asked for a verdict from later than any probe of the next sweep.
	ask(time.Now().Add(time.Hour))
	if st := f.sweep(t); st.Record.Writes() != 0 || fresh() {
		t.Fatalf("a verdict from before the request was written (%d writes) or counts as fresh", st.Record.Writes())
	}
}
