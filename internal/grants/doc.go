package grants

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The tables of docs/security.md this package reads, by their headings
// (a level-2 heading, "## ...") and their header rows.
const (
	GrantsHeading         = "Grants of the control-plane functions"
	JustificationsHeading = "Grants no test exercises"
)

var (
	grantsHeader         = []string{"function", "actions", "on", "why"}
	justificationsHeader = []string{"function", "action", "why it is granted though no test calls it"}
)

// AnyFunction in a justification's function column stands for every
// function (a grant all of them hold for the same reason).
const AnyFunction = "*"

// Justification says, in one line, why a function is granted an action
// no test exercises.
type Justification struct {
	// Function is the function ("silo-reconciler") or AnyFunction.
	Function string
	// Action is the action exactly as the grant writes it.
	Action string
	Why    string
	// Line is the line of the document it is on.
	Line int
}

// Documented is one row of the grants table: a function's (or, as
// AnyFunction, every function's) actions on what, and why.
type Documented struct {
	Function string
	Actions  []string
	On, Why  string
	Line     int
}

// actionRE is an IAM action as a policy writes it: a service prefix and an
// action name, which may hold wildcards.
var actionRE = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9*?]+$`)

// functionRE is a function's name.
var functionRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseJustifications reads the table under "## Grants no test
// exercises": one row per function and action, each with its reason.
func ParseJustifications(doc []byte) ([]Justification, error) {
	rows, err := readTable(doc, JustificationsHeading, justificationsHeader)
	if err != nil {
		return nil, err
	}
	var out []Justification
	seen := map[[2]string]int{}
	for _, r := range rows {
		j := Justification{Function: r.cells[0], Action: r.cells[1], Why: r.cells[2], Line: r.line}
		switch {
		case j.Function != AnyFunction && !functionRE.MatchString(j.Function):
			return nil, fmt.Errorf("line %d: function %q is neither a function's name nor %q", r.line, j.Function, AnyFunction)
		case !actionRE.MatchString(j.Action):
			return nil, fmt.Errorf("line %d: action %q is not an IAM action (service:Action)", r.line, j.Action)
		case j.Why == "":
			return nil, fmt.Errorf("line %d: %s's %s says no reason", r.line, j.Function, j.Action)
		}
		key := [2]string{j.Function, j.Action}
		if first, ok := seen[key]; ok {
			return nil, fmt.Errorf("line %d: %s's %s is justified already on line %d", r.line, j.Function, j.Action, first)
		}
		seen[key] = r.line
		out = append(out, j)
	}
	return out, nil
}

// ParseDocumented reads the table under "## Grants of the control-plane
// functions": per row a function (or "*" for every one), its actions
// (comma-separated), on what and why.
func ParseDocumented(doc []byte) ([]Documented, error) {
	rows, err := readTable(doc, GrantsHeading, grantsHeader)
	if err != nil {
		return nil, err
	}
	var out []Documented
	for _, r := range rows {
		d := Documented{Function: r.cells[0], On: r.cells[2], Why: r.cells[3], Line: r.line}
		if d.Function != AnyFunction && !functionRE.MatchString(d.Function) {
			return nil, fmt.Errorf("line %d: function %q is neither a function's name nor %q", r.line, d.Function, AnyFunction)
		}
		for _, a := range strings.Split(r.cells[1], ",") {
			a = strings.Trim(strings.TrimSpace(a), "`")
			if !actionRE.MatchString(a) {
				return nil, fmt.Errorf("line %d: action %q is not an IAM action (service:Action)", r.line, a)
			}
			d.Actions = append(d.Actions, a)
		}
		if d.On == "" || d.Why == "" {
			return nil, fmt.Errorf("line %d: %s's row says neither on what nor why", r.line, d.Function)
		}
		out = append(out, d)
	}
	return out, nil
}

type row struct {
	line  int
	cells []string
}

// readTable returns the rows of the first table under the level-2
// heading, which must have exactly header as its columns.
func readTable(doc []byte, heading string, header []string) ([]row, error) {
	sc := bufio.NewScanner(bytes.NewReader(doc))
	in, started := false, false
	var rows []row
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			if started {
				return rows, nil
			}
			in = strings.TrimPrefix(line, "## ") == heading
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			if started {
				return rows, nil // the table ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case !started:
			if !slices.Equal(cells, header) {
				return nil, fmt.Errorf("line %d: the table under %q must have the columns %q, not %q", n, heading, header, cells)
			}
			started = true
			continue
		case strings.Trim(strings.Join(cells, ""), "-: ") == "":
			continue // the separator row
		}
		if len(cells) != len(header) {
			return nil, fmt.Errorf("line %d: %d cells, the header has %d", n, len(cells), len(header))
		}
		// Names are written as code; reasons keep theirs.
		cells[0], cells[1] = strings.Trim(cells[0], "`"), strings.Trim(cells[1], "`")
		rows = append(rows, row{line: n, cells: cells})
	}
	if !started {
		return nil, fmt.Errorf("no table under \"## %s\"", heading)
	}
	return rows, sc.Err()
}
