package deployed

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/grants"
)

// Grants returns what the execution role of the function named name is
// granted in the stack as created (after Options.Edit): every statement
// of every policy attached to the role, one grants.Grant per action and
// resource, its references resolved against the stack's resources.
func (h *Harness) Grants(name string) ([]grants.Grant, error) {
	return h.template.Grants(name, h.refs)
}

// SynthesizedGrants is Grants for the template as `cdk synth` made it,
// before Options.Edit: what the stack grants in AWS. A run that took a
// grant away still tells which of the stack's grants its calls needed.
func (h *Harness) SynthesizedGrants(name string) ([]grants.Grant, error) {
	return h.synthesized.Grants(name, h.refs)
}

// Accesses returns the IAM authorizations the calls made with the
// function's execution role needed, by authorization, refused or not:
// its own calls and its event source mappings' (which Lambda makes with
// the same role). A resource the request named by name is in the
// function's account.
func (h *Harness) Accesses(name string) map[grants.Access]int64 {
	f := h.functions[name]
	if f == nil {
		return nil
	}
	out := map[grants.Access]int64{}
	for a, n := range h.emu.Proxy.Stats().Accesses[f.creds.AccessKeyID] {
		out[a.InAccount(h.account)] += n
	}
	return out
}

// Grants returns the grants of the execution role of the function named
// name, its references resolved by refs (nil leaves every resource as
// written). It refuses what it cannot judge as IAM would: a managed
// policy that is not in the template (its statements are not here), and
// a statement that denies, uses NotAction or NotResource, or has a
// condition.
func (t *Template) Grants(name string, refs Refs) ([]grants.Grant, error) {
	_, props, err := t.function(name)
	if err != nil {
		return nil, err
	}
	roleID, err := roleOf(props)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	resources := t.Resources()
	role := resources[roleID]
	if role["Type"] != "AWS::IAM::Role" {
		return nil, fmt.Errorf("function %s: its role %s is a %v, not an AWS::IAM::Role", name, roleID, role["Type"])
	}
	type policy struct {
		where string
		doc   any
	}
	var policies []policy
	roleProps, _ := role["Properties"].(map[string]any)
	inline, _ := roleProps["Policies"].([]any)
	for _, p := range inline {
		pm, _ := p.(map[string]any)
		policies = append(policies, policy{where: roleID + "/" + fmt.Sprint(pm["PolicyName"]), doc: pm["PolicyDocument"]})
	}
	attached, _ := roleProps["ManagedPolicyArns"].([]any)
	for _, m := range attached {
		ref, _ := m.(map[string]any)
		id, _ := ref["Ref"].(string)
		if r := resources[id]; r["Type"] != "AWS::IAM::ManagedPolicy" {
			w, _ := render(m)
			return nil, fmt.Errorf("function %s: its role %s has the managed policy %s, whose statements are not in the template: grant what the function needs inline", name, roleID, w)
		}
		mp, _ := resources[id]["Properties"].(map[string]any)
		policies = append(policies, policy{where: id, doc: mp["PolicyDocument"]})
	}
	for _, id := range slices.Sorted(maps.Keys(resources)) {
		r := resources[id]
		p, _ := r["Properties"].(map[string]any)
		if (r["Type"] != "AWS::IAM::Policy" && r["Type"] != "AWS::IAM::ManagedPolicy") || !refersTo(p["Roles"], roleID) {
			continue
		}
		// A managed policy may name the role and be named by it: once.
		if slices.ContainsFunc(policies, func(q policy) bool { return q.where == id }) {
			continue
		}
		policies = append(policies, policy{where: id, doc: p["PolicyDocument"]})
	}
	var out []grants.Grant
	for _, p := range policies {
		doc, _ := p.doc.(map[string]any)
		stmts, ok := doc["Statement"].([]any)
		if !ok {
			if one, isOne := doc["Statement"].(map[string]any); isOne {
				stmts = []any{one}
			}
		}
		for i, s := range stmts {
			st, _ := s.(map[string]any)
			where := p.where + "/" + strconv.Itoa(i)
			if sid, _ := st["Sid"].(string); sid != "" {
				where = p.where + "/" + sid
			}
			for _, k := range []string{"NotAction", "NotResource", "Condition"} {
				if _, ok := st[k]; ok {
					return nil, fmt.Errorf("function %s: statement %s has %s, which the grants check does not evaluate", name, where, k)
				}
			}
			if st["Effect"] != "Allow" {
				return nil, fmt.Errorf("function %s: statement %s has Effect %v; the grants check evaluates Allow statements only", name, where, st["Effect"])
			}
			actions := asStrings(st["Action"])
			if len(actions) == 0 {
				return nil, fmt.Errorf("function %s: statement %s has no Action", name, where)
			}
			written, err := resourcesOf(st["Resource"])
			if err != nil {
				return nil, fmt.Errorf("function %s: statement %s: %w", name, where, err)
			}
			for _, w := range written {
				res := w
				if refs != nil {
					if res, err = refs.Resolve(w); err != nil {
						return nil, fmt.Errorf("function %s: statement %s: %w", name, where, err)
					}
				}
				for _, a := range actions {
					out = append(out, grants.Grant{Function: name, Action: a, Resource: res, Written: w, Where: where})
				}
			}
		}
	}
	return out, nil
}

// roleOf returns the logical id of the role a function's properties name.
func roleOf(props map[string]any) (string, error) {
	var role struct {
		GetAtt []string `json:"Fn::GetAtt"`
	}
	if b, err := json.Marshal(props["Role"]); err != nil || json.Unmarshal(b, &role) != nil || len(role.GetAtt) != 2 {
		return "", fmt.Errorf("its role %v is not a role of the template", props["Role"])
	}
	return role.GetAtt[0], nil
}

// resourcesOf renders a statement's Resource: one or a list, each a string
// or an intrinsic function.
func resourcesOf(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		if v == nil {
			return nil, fmt.Errorf("no Resource")
		}
		list = []any{v}
	}
	var out []string
	for _, r := range list {
		w, err := render(r)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// render writes a template value as Fn::Sub would: references as
// ${LogicalId}, ${LogicalId.Attribute} and ${AWS::Region}, literal text
// with any "${" escaped as "${!".
func render(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "${", "${!"), nil
	case map[string]any:
		if len(x) != 1 {
			break
		}
		for fn, arg := range x {
			switch fn {
			case "Ref":
				if s, ok := arg.(string); ok {
					return "${" + s + "}", nil
				}
			case "Fn::GetAtt":
				switch a := arg.(type) {
				case string:
					return "${" + a + "}", nil
				case []any:
					if len(a) == 2 {
						return fmt.Sprintf("${%v.%v}", a[0], a[1]), nil
					}
				}
			case "Fn::Join":
				a, _ := arg.([]any)
				if len(a) != 2 {
					break
				}
				sep, _ := a[0].(string)
				parts, _ := a[1].([]any)
				var out []string
				for _, p := range parts {
					w, err := render(p)
					if err != nil {
						return "", err
					}
					out = append(out, w)
				}
				return strings.Join(out, strings.ReplaceAll(sep, "${", "${!")), nil
			case "Fn::Sub":
				switch a := arg.(type) {
				case string:
					return a, nil
				case []any:
					if len(a) != 2 {
						break
					}
					s, _ := a[0].(string)
					vars, _ := a[1].(map[string]any)
					for k, val := range vars {
						w, err := render(val)
						if err != nil {
							return "", err
						}
						s = strings.ReplaceAll(s, "${"+k+"}", w)
					}
					return s, nil
				}
			}
			return "", fmt.Errorf("cannot read %s %v in a policy resource", fn, arg)
		}
	}
	b, _ := json.Marshal(v)
	return "", fmt.Errorf("cannot read %s in a policy resource", b)
}

// Refs resolves the references a rendered template value holds.
type Refs interface {
	// Resolve replaces each ${...} of s with its value ("${!" is a
	// literal "${").
	Resolve(s string) (string, error)
}

// stackRefs resolves references against a created stack: its pseudo
// parameters, parameters and resources.
type stackRefs struct {
	partition, region, account string
	parameters                 map[string]string
	// resources by logical id: type and physical id.
	resources map[string]cfntypes.StackResourceSummary
}

func (s *stackRefs) Resolve(in string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(in, "${")
		if i < 0 {
			b.WriteString(in)
			return b.String(), nil
		}
		b.WriteString(in[:i])
		in = in[i+2:]
		if strings.HasPrefix(in, "!") {
			b.WriteString("${")
			in = in[1:]
			continue
		}
		j := strings.IndexByte(in, '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", in)
		}
		v, err := s.value(in[:j])
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		in = in[j+1:]
	}
}

// value is the value of one reference: a pseudo parameter, a parameter,
// a resource's Ref or its Arn.
func (s *stackRefs) value(ref string) (string, error) {
	switch ref {
	case "AWS::Partition":
		return s.partition, nil
	case "AWS::Region":
		return s.region, nil
	case "AWS::AccountId":
		return s.account, nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	}
	if v, ok := s.parameters[ref]; ok {
		return v, nil
	}
	id, attr, _ := strings.Cut(ref, ".")
	r, ok := s.resources[id]
	if !ok {
		return "", fmt.Errorf("the stack has no resource or parameter %s", id)
	}
	typ, phys := aws.ToString(r.ResourceType), aws.ToString(r.PhysicalResourceId)
	if attr == "" {
		return phys, nil // Ref: the physical id, for every type the stack's policies name
	}
	if attr != "Arn" {
		return "", fmt.Errorf("cannot resolve %s: only the Arn attribute is known (of %s)", ref, typ)
	}
	arn := func(service, resource string) string {
		return "arn:" + s.partition + ":" + service + ":" + s.region + ":" + s.account + ":" + resource
	}
	switch typ {
	case "AWS::DynamoDB::Table":
		return arn("dynamodb", "table/"+phys), nil
	case "AWS::SQS::Queue":
		// The physical id is the queue's URL; its name is its last part.
		return arn("sqs", phys[strings.LastIndexByte(phys, '/')+1:]), nil
	case "AWS::Events::EventBus":
		return arn("events", "event-bus/"+phys), nil
	case "AWS::S3::Bucket":
		return "arn:" + s.partition + ":s3:::" + phys, nil
	case "AWS::Logs::LogGroup":
		return arn("logs", "log-group:"+phys+":*"), nil
	case "AWS::IAM::Role":
		return "arn:" + s.partition + ":iam::" + s.account + ":role/" + phys, nil
	case "AWS::Lambda::Function":
		return arn("lambda", "function:"+phys), nil
	}
	return "", fmt.Errorf("cannot resolve %s: the ARN of a %s is not known here (add it to deployed.stackRefs)", ref, typ)
}
