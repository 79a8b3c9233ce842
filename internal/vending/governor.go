package vending

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Quotas are the AWS Organizations limits the governor keeps silo under.
// Defaults follow AWS's documented figures (AWS-FACTS.md); they are
// configuration because AWS raises them per organization on request.
type Quotas struct {
	// MaxCreateInProgress: create-account requests IN_PROGRESS at once (AWS: 5).
	MaxCreateInProgress int
	// CreateRate and CreateBurst bound the CreateAccount call itself.
	CreateRate  rate.Limit
	CreateBurst int
	// MaxConcurrentClosures: CloseAccount requests at once (AWS: 3).
	MaxConcurrentClosures int
	// Closures per rolling ClosureWindow: the larger of ClosureFloor and
	// ClosurePercent of member accounts, at most ClosureCap (AWS: 30 days,
	// 250, 20%, 1,000).
	ClosureWindow  time.Duration
	ClosureFloor   int
	ClosurePercent int
	ClosureCap     int
}

// DefaultQuotas returns AWS's default quotas.
func DefaultQuotas() Quotas {
	return Quotas{
		MaxCreateInProgress: 5, CreateRate: 0.1, CreateBurst: 5,
		MaxConcurrentClosures: 3,
		ClosureWindow:         30 * 24 * time.Hour, ClosureFloor: 250, ClosurePercent: 20, ClosureCap: 1000,
	}
}

func (q Quotas) withDefaults() Quotas {
	d := DefaultQuotas()
	orDefault(&q.MaxCreateInProgress, d.MaxCreateInProgress)
	orDefault(&q.CreateRate, d.CreateRate)
	orDefault(&q.CreateBurst, d.CreateBurst)
	orDefault(&q.MaxConcurrentClosures, d.MaxConcurrentClosures)
	orDefault(&q.ClosureWindow, d.ClosureWindow)
	orDefault(&q.ClosureFloor, d.ClosureFloor)
	orDefault(&q.ClosurePercent, d.ClosurePercent)
	orDefault(&q.ClosureCap, d.ClosureCap)
	return q
}

// orDefault sets an unset (zero or negative) setting to its default.
func orDefault[T int | int32 | float64 | rate.Limit | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// ClosureLimit is how many closures the rolling window allows for an
// organization of members accounts.
func (q Quotas) ClosureLimit(members int) int {
	n := max(q.ClosureFloor, int(math.Floor(float64(members)*float64(q.ClosurePercent)/100)))
	return min(n, q.ClosureCap)
}

// Governor keeps account creation and closure within the quotas. Work
// beyond a quota waits its turn, first come first served; it never fails
// because of a quota.
type Governor struct {
	q        Quotas
	creates  *fifo
	limiter  *rate.Limiter
	closures *fifo

	mu         sync.Mutex
	inProgress int
	peak       int
}

// NewGovernor returns a governor for the quotas (zero fields take defaults).
func NewGovernor(q Quotas) *Governor {
	q = q.withDefaults()
	return &Governor{
		q:        q,
		creates:  newFIFO(q.MaxCreateInProgress),
		limiter:  rate.NewLimiter(q.CreateRate, q.CreateBurst),
		closures: newFIFO(q.MaxConcurrentClosures),
	}
}

// Quotas returns the governor's effective quotas.
func (g *Governor) Quotas() Quotas { return g.q }

// AcquireCreate waits for a create-account slot. The caller holds it from
// before CreateAccount until the request leaves IN_PROGRESS, then calls
// ReleaseCreate. callNow says whether the caller is about to call
// CreateAccount (and so also waits for the call rate) or only resumes
// watching a request made earlier.
func (g *Governor) AcquireCreate(ctx context.Context, callNow bool) error {
	return g.AcquireCreateNoting(ctx, callNow, 0, nil)
}

// AcquireCreateNoting is AcquireCreate for a caller that records its wait:
// when no slot is free at once, waiting is called at once and then every
// interval while the caller keeps its place in the queue (the reconciler
// renews the tenant's quota note). An error from waiting gives the place
// up and is returned.
func (g *Governor) AcquireCreateNoting(ctx context.Context, callNow bool, every time.Duration, waiting func(ctx context.Context) error) error {
	if err := g.creates.acquire(ctx, every, waiting); err != nil {
		return err
	}
	if callNow {
		if err := g.limiter.Wait(ctx); err != nil {
			g.creates.release()
			return fmt.Errorf("wait for the create-account rate: %w", err)
		}
	}
	g.mu.Lock()
	g.inProgress++
	g.peak = max(g.peak, g.inProgress)
	g.mu.Unlock()
	return nil
}

// ReleaseCreate returns a create-account slot.
func (g *Governor) ReleaseCreate() {
	g.mu.Lock()
	g.inProgress--
	g.mu.Unlock()
	g.creates.release()
}

// PeakCreates is the most create-account slots ever held at once.
func (g *Governor) PeakCreates() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// AcquireClose waits for a closure slot; ReleaseClose returns it. The
// rolling-window ledger is checked by the caller, which knows the registry.
// waiting (optional) is called as AcquireCreateNoting calls it.
func (g *Governor) AcquireClose(ctx context.Context, every time.Duration, waiting func(ctx context.Context) error) error {
	return g.closures.acquire(ctx, every, waiting)
}

// InProgress returns how many create-account slots are held now.
func (g *Governor) InProgress() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inProgress
}

// ReleaseClose returns a closure slot.
func (g *Governor) ReleaseClose() { g.closures.release() }

// fifo is a counting semaphore that serves waiters in arrival order.
type fifo struct {
	mu      sync.Mutex
	free    int
	waiters list.List // of chan struct{}
}

func newFIFO(n int) *fifo { return &fifo{free: n} }

// acquire waits for a unit. When it has to wait and tick is set, tick is
// called at once and then every interval, in the waiter's goroutine; an
// error from tick gives the place up and is returned.
func (f *fifo) acquire(ctx context.Context, every time.Duration, tick func(context.Context) error) error {
	f.mu.Lock()
	if f.free > 0 && f.waiters.Len() == 0 {
		f.free--
		f.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	el := f.waiters.PushBack(ch)
	f.mu.Unlock()
	giveUp := func(err error) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		select {
		case <-ch: // granted while we gave up: pass it on
			f.releaseLocked()
		default:
			f.waiters.Remove(el)
		}
		return err
	}
	var ticks <-chan time.Time
	if tick != nil {
		if err := tick(ctx); err != nil {
			return giveUp(err)
		}
		if every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			ticks = t.C
		}
	}
	for {
		select {
		case <-ch:
			return nil
		case <-ticks:
			if err := tick(ctx); err != nil {
				return giveUp(err)
			}
		case <-ctx.Done():
			return giveUp(ctx.Err())
		}
	}
}

func (f *fifo) release() {
	f.mu.Lock()
	f.releaseLocked()
	f.mu.Unlock()
}

func (f *fifo) releaseLocked() {
	if front := f.waiters.Front(); front != nil {
		f.waiters.Remove(front)
		close(front.Value.(chan struct{}))
		return
	}
	f.free++
}
