package registry

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bookkeeping is what a write does to the fields deadlines are judged on.
type bookkeeping struct {
	State        State
	StateSince   time.Time
	ProgressAt   time.Time
	LastError    string
	Waiting      string
	WaitingUntil *time.Time
}

func keep(t *Tenant) bookkeeping {
	return bookkeeping{t.State, t.StateSince, t.ProgressAt, t.LastError, t.Waiting, t.WaitingUntil}
}

// TestProgressBookkeeping: the registry keeps StateSince and ProgressAt
// itself (a state change moves both, Change.Progress moves ProgressAt,
// nothing else moves either, a caller's Mutate cannot), clears the last
// error and the quota note on progress, and stores all of it (read back
// through Get, as another process would).
func TestProgressBookkeeping(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.store
	base := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	clock := at(0)
	s.now = func() time.Time { return clock }

	cur, _, err := s.Create(ctx, spec("steady"), "", "signup")
	if err != nil {
		t.Fatal(err)
	}
	until := at(20)
	steps := []struct {
		name   string
		minute int
		to     State // "": an Update
		change Change
		want   bookkeeping
	}{
		{"created", 0, "", Change{}, bookkeeping{StateRequested, at(0), at(0), "", "", nil}},
		{"to CREATING_ACCOUNT", 1, StateCreatingAccount, Change{}, bookkeeping{StateCreatingAccount, at(1), at(1), "", "", nil}},
		{"an error noted is not progress", 2, "", Change{Mutate: func(n *Tenant) { n.LastError = "throttled" }},
			bookkeeping{StateCreatingAccount, at(1), at(1), "throttled", "", nil}},
		{"a quota note is not progress", 3, "", Change{Mutate: func(n *Tenant) { n.Waiting, n.WaitingUntil = "slot", &until }},
			bookkeeping{StateCreatingAccount, at(1), at(1), "throttled", "slot", &until}},
		{"a caller cannot move the bookkeeping", 4, "", Change{Mutate: func(n *Tenant) { n.StateSince, n.ProgressAt = at(50), at(50) }},
			bookkeeping{StateCreatingAccount, at(1), at(1), "throttled", "slot", &until}},
		{"progress moves ProgressAt and clears error and note", 5, "", Change{Progress: true, Mutate: func(n *Tenant) { n.Operation = "car-1" }},
			bookkeeping{StateCreatingAccount, at(1), at(5), "", "", nil}},
		{"an error noted again", 6, "", Change{Mutate: func(n *Tenant) { n.LastError = "AccessDenied" }},
			bookkeeping{StateCreatingAccount, at(1), at(5), "AccessDenied", "", nil}},
		{"a state change moves both and clears the error", 7, StatePreparing, Change{},
			bookkeeping{StatePreparing, at(7), at(7), "", "", nil}},
		{"FAILED is a state too", 8, StateFailed, Change{Reason: "stuck"}, bookkeeping{StateFailed, at(8), at(8), "", "", nil}},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock = at(st.minute)
			if i > 0 {
				if st.to != "" {
					cur, err = s.Transition(ctx, cur, st.to, st.change)
				} else {
					cur, err = s.Update(ctx, cur, st.change)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(st.want, keep(cur)); diff != "" {
				t.Errorf("returned tenant (-want +got):\n%s", diff)
			}
			stored, err := s.Get(ctx, "steady")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(st.want, keep(stored)); diff != "" {
				t.Errorf("stored tenant (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgressOfOldRecords: a record written before StateSince and
// ProgressAt existed reads with its last update as both (Since,
// LastProgress), and its next write stores that time in them, so that
// writes which are not progress no longer move its clock.
func TestProgressOfOldRecords(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.store
	old := time.Date(2029, 6, 1, 12, 0, 0, 0, time.UTC)
	if err := s.ImportTenants(ctx, []*Tenant{{Spec: spec("vintage"), State: StateDeploying, AccountID: "111122223333",
		CreatedAt: old.Add(-time.Hour), UpdatedAt: old}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "vintage")
	if err != nil {
		t.Fatal(err)
	}
	if !got.StateSince.IsZero() || !got.ProgressAt.IsZero() {
		t.Fatalf("imported record has StateSince %v ProgressAt %v, want none", got.StateSince, got.ProgressAt)
	}
	if !got.Since().Equal(old) || !got.LastProgress().Equal(old) {
		t.Errorf("Since %v LastProgress %v, want the last update %v", got.Since(), got.LastProgress(), old)
	}
	later := old.Add(3 * time.Hour)
	s.now = func() time.Time { return later }
	next, err := s.Update(ctx, got, Change{Mutate: func(n *Tenant) { n.LastError = "the stack has no ApiUrl output" }})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.Get(ctx, "vintage")
	if err != nil {
		t.Fatal(err)
	}
	for name, tn := range map[string]*Tenant{"returned": next, "stored": stored} {
		if !tn.StateSince.Equal(old) || !tn.ProgressAt.Equal(old) {
			t.Errorf("%s: StateSince %v ProgressAt %v, want both %v (the previous write)", name, tn.StateSince, tn.ProgressAt, old)
		}
		if !tn.UpdatedAt.Equal(later) {
			t.Errorf("%s: UpdatedAt %v, want %v", name, tn.UpdatedAt, later)
		}
	}
}
