package grants

import (
	"maps"
	"slices"
	"strings"
	"sync"
)

// Ledger gathers runs (journeys, each in a stack of its own) of the same
// template: which grants each run's calls used, and which calls no grant
// allowed. Grants are told apart across runs by Grant.Key, since each
// stack's generated names differ. It is safe for concurrent use.
type Ledger struct {
	mu        sync.Mutex
	journeys  []string
	failed    []string
	grants    map[string]Grant // by Key, the first run's
	used      map[string]bool  // by Key
	ungranted map[string]map[Access]int64
}

// Add records one run: whether the journey passed, the grants of its
// stack (as synthesized, for the comparison to mean the template) and its
// calls by function. A failed journey's calls count all the same (a call
// it made without a grant is one), but it may have stopped before making
// others: Failed tells.
func (l *Ledger) Add(journey string, passed bool, granted []Grant, calls map[string]map[Access]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.grants == nil {
		l.grants, l.used, l.ungranted = map[string]Grant{}, map[string]bool{}, map[string]map[Access]int64{}
	}
	l.journeys = append(l.journeys, journey)
	if !passed {
		l.failed = append(l.failed, journey)
	}
	for _, g := range granted {
		if _, ok := l.grants[g.Key()]; !ok {
			l.grants[g.Key()] = g
		}
	}
	for fn, accesses := range calls {
		for a, n := range accesses {
			allowed := false
			for _, g := range granted {
				if g.Function == fn && g.Allows(a) {
					allowed = true
					l.used[g.Key()] = true
				}
			}
			if !allowed {
				if l.ungranted[fn] == nil {
					l.ungranted[fn] = map[Access]int64{}
				}
				l.ungranted[fn][a] += n
			}
		}
	}
}

// Grants returns every grant the runs' stacks held, as the first run to
// hold each resolved it, sorted by function, statement, action and
// resource as written.
func (l *Ledger) Grants() []Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Collect(maps.Values(l.grants))
	slices.SortFunc(out, func(a, b Grant) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// Journeys lists the journeys added so far, in order.
func (l *Ledger) Journeys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.journeys)
}

// Failed lists the journeys added that did not pass, in order.
func (l *Ledger) Failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failed)
}

// Ran reports whether journey was added, passed or not.
func (l *Ledger) Ran(journey string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.journeys, journey)
}

// Findings compares everything added: every call some grant of its
// function must allow (or it is Ungranted), every grant some call must
// use unless a justification names its function (or "*") and its action
// as written (or it is Unexercised), and every justification must cover a
// grant left unexercised (or it is Stale). Findings come sorted by kind,
// then function, then what they say.
func (l *Ledger) Findings(justified []Justification) []Finding {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Finding
	for fn, accesses := range l.ungranted {
		for a, n := range accesses {
			out = append(out, Finding{Kind: Ungranted, Function: fn, Access: a, Calls: n})
		}
	}
	needed := make([]bool, len(justified))
	for key, g := range l.grants {
		if l.used[key] {
			continue
		}
		ok := false
		for k, j := range justified {
			if (j.Function == AnyFunction || j.Function == g.Function) && j.Action == g.Action {
				ok, needed[k] = true, true
			}
		}
		if !ok {
			out = append(out, Finding{Kind: Unexercised, Function: g.Function, Grant: g})
		}
	}
	for k, j := range justified {
		if !needed[k] {
			out = append(out, Finding{Kind: Stale, Function: j.Function, Justification: j})
		}
	}
	order := map[Kind]int{Ungranted: 0, Unexercised: 1, Stale: 2}
	slices.SortFunc(out, func(a, b Finding) int {
		if d := order[a.Kind] - order[b.Kind]; d != 0 {
			return d
		}
		if c := strings.Compare(a.Function, b.Function); c != 0 {
			return c
		}
		return strings.Compare(a.String(), b.String())
	})
	return out
}
