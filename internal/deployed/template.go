package deployed

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// Template is the synthesized control-plane template, which a harness's
// Options.Edit may change before the stack is created: a test takes a
// grant away to see the call it guards fail, or shortens a timeout.
type Template struct {
	doc map[string]any
}

func parseTemplate(b []byte) (*Template, error) {
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read the control-plane template: %w", err)
	}
	return &Template{doc: doc}, nil
}

func (t *Template) bytes() ([]byte, error) { return json.Marshal(t.doc) }

// Resources are the template's resources by logical id, each with its
// Type and Properties; changes to them are changes to the template.
func (t *Template) Resources() map[string]map[string]any {
	rs, _ := t.doc["Resources"].(map[string]any)
	out := map[string]map[string]any{}
	for id, r := range rs {
		if m, ok := r.(map[string]any); ok {
			out[id] = m
		}
	}
	return out
}

// function returns the logical id and properties of the function named
// name (its FunctionName property, "silo-prober").
func (t *Template) function(name string) (string, map[string]any, error) {
	for id, r := range t.Resources() {
		props, _ := r["Properties"].(map[string]any)
		if r["Type"] == "AWS::Lambda::Function" && props["FunctionName"] == name {
			return id, props, nil
		}
	}
	return "", nil, fmt.Errorf("the template has no function named %s", name)
}

// SetFunctionTimeout sets the timeout of the function named name.
func (t *Template) SetFunctionTimeout(name string, seconds int) error {
	_, props, err := t.function(name)
	if err != nil {
		return err
	}
	props["Timeout"] = seconds
	return nil
}

// SetFunctionEnvironment sets one environment variable of the function
// named name.
func (t *Template) SetFunctionEnvironment(name, key, value string) error {
	_, props, err := t.function(name)
	if err != nil {
		return err
	}
	env, _ := props["Environment"].(map[string]any)
	if env == nil {
		env = map[string]any{}
		props["Environment"] = env
	}
	vars, _ := env["Variables"].(map[string]any)
	if vars == nil {
		vars = map[string]any{}
		env["Variables"] = vars
	}
	vars[key] = value
	return nil
}

// RemoveGrant takes action ("events:PutEvents") out of every statement of
// the policies attached to the execution role of the function named name,
// dropping a statement left with no action. It fails when no statement
// granted it, so a test cannot remove a grant that was never there.
func (t *Template) RemoveGrant(name, action string) error {
	_, props, err := t.function(name)
	if err != nil {
		return err
	}
	roleID, err := roleOf(props)
	if err != nil {
		return fmt.Errorf("function %s: %w", name, err)
	}
	removed := 0
	for _, r := range t.Resources() {
		if r["Type"] != "AWS::IAM::Policy" {
			continue
		}
		p, _ := r["Properties"].(map[string]any)
		if !refersTo(p["Roles"], roleID) {
			continue
		}
		doc, _ := p["PolicyDocument"].(map[string]any)
		stmts, _ := doc["Statement"].([]any)
		kept := stmts[:0]
		for _, s := range stmts {
			st, _ := s.(map[string]any)
			actions := asStrings(st["Action"])
			if i := slices.Index(actions, action); i >= 0 {
				actions = slices.Delete(actions, i, i+1)
				removed++
				if len(actions) == 0 {
					continue
				}
				st["Action"] = actions
			}
			kept = append(kept, s)
		}
		doc["Statement"] = kept
	}
	if removed == 0 {
		return fmt.Errorf("no policy of function %s's role grants %s", name, action)
	}
	return nil
}

// AddGrant adds a statement allowing action on resource (a string or an
// intrinsic function, as a template writes it) to the first policy
// attached to the execution role of the function named name: a test
// grants more than the function needs and sees the grants check say so.
func (t *Template) AddGrant(name, action string, resource any) error {
	_, props, err := t.function(name)
	if err != nil {
		return err
	}
	roleID, err := roleOf(props)
	if err != nil {
		return fmt.Errorf("function %s: %w", name, err)
	}
	resources := t.Resources()
	for _, id := range slices.Sorted(maps.Keys(resources)) {
		r := resources[id]
		p, _ := r["Properties"].(map[string]any)
		if r["Type"] != "AWS::IAM::Policy" || !refersTo(p["Roles"], roleID) {
			continue
		}
		doc, _ := p["PolicyDocument"].(map[string]any)
		stmts, _ := doc["Statement"].([]any)
		doc["Statement"] = append(stmts, map[string]any{"Sid": "Added", "Effect": "Allow", "Action": action, "Resource": resource})
		return nil
	}
	return fmt.Errorf("no policy is attached to function %s's role %s", name, roleID)
}

// refersTo reports whether v (a list of {"Ref": id}) names id.
func refersTo(v any, id string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok && m["Ref"] == id {
			return true
		}
	}
	return false
}

// asStrings reads an IAM Action element: one string or a list of them.
func asStrings(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
