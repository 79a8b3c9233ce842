package emulator

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stackState is what the proxy knows about StackSet operations. Guarded by
// Proxy.mu.
type stackState struct {
	ops map[string]*stackOp // by operation id
	// last is the latest operation per stack set, to refuse a second one
	// while it runs.
	last map[string]*stackOp
}

func newStackState() stackState {
	return stackState{ops: map[string]*stackOp{}, last: map[string]*stackOp{}}
}

// stackOp is one StackSet operation the proxy forwarded. moto finished it
// at once; the proxy reports it RUNNING until due, then SUCCEEDED, or FAILED
// when some accounts failed.
type stackOp struct {
	due     time.Time
	failed  map[string]string // account → StatusReason
	regions []string
}

func (o *stackOp) status(now time.Time) string {
	switch {
	case now.Before(o.due):
		return "RUNNING"
	case len(o.failed) > 0:
		return stateFailed
	}
	return stateSucceeded
}

// stackSetOps are the operations that start a StackSet operation.
var stackSetOps = map[string]bool{
	"CreateStackInstances": true, "UpdateStackInstances": true, "DeleteStackInstances": true, "UpdateStackSet": true,
}

// accountParam matches the account lists of StackSet operations, in
// either spelling (self-managed Accounts, or DeploymentTargets.Accounts).
var accountParam = regexp.MustCompile(`^((?:DeploymentTargets\.)?Accounts)\.member\.(\d+)$`)

var (
	operationID = regexp.MustCompile(`<OperationId>([^<]+)</OperationId>`)
	endTime     = regexp.MustCompile(`<EndTimestamp>[^<]*</EndTimestamp>`)
	memberXML   = regexp.MustCompile(`(?s)<member>.*?</member>`)
	succeeded   = "<Status>SUCCEEDED</Status>"
	// ended is a status moto gives an operation or an instance's result:
	// SUCCEEDED, or FAILED when a member stack failed (the emulator's
	// patch 10).
	ended        = regexp.MustCompile(`<Status>(?:SUCCEEDED|FAILED)</Status>`)
	statusReason = regexp.MustCompile(`<StatusReason>[^<]*</StatusReason>`)
	gateXML      = regexp.MustCompile(`(?s)<AccountGateResult>.*?</AccountGateResult>`)
)

// serveStackSets handles the CloudFormation calls the proxy changes and
// reports whether it answered.
func (p *Proxy) serveStackSets(w http.ResponseWriter, r *http.Request, c *call, f *Faults) bool {
	if c.form == nil {
		return false
	}
	switch {
	case stackSetOps[c.op.Operation]:
		if !f.interceptsStackSets() {
			return false
		}
		return p.startStackSetOperation(w, r, c, f)
	case c.op.Operation == "DescribeStackSetOperation" || c.op.Operation == "ListStackSetOperationResults":
		p.mu.Lock()
		op := p.stacks.ops[c.form.Get("OperationId")]
		p.mu.Unlock()
		if op == nil {
			return false
		}
		resp, err := p.forwardCall(r, c.body)
		if err != nil {
			http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
			return true
		}
		if resp.status == http.StatusOK {
			if c.op.Operation == "DescribeStackSetOperation" {
				resp.body = []byte(rewriteOperation(string(resp.body), op.status(time.Now())))
			} else {
				resp.body = []byte(rewriteResults(string(resp.body), op, time.Now()))
			}
		}
		resp.write(w)
		return true
	case c.op.Operation == "ListStackSetOperations":
		p.mu.Lock()
		known := len(p.stacks.ops) > 0
		p.mu.Unlock()
		if !known {
			return false
		}
		resp, err := p.forwardCall(r, c.body)
		if err != nil {
			http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
			return true
		}
		if resp.status == http.StatusOK {
			now := time.Now()
			resp.body = memberXML.ReplaceAllFunc(resp.body, func(m []byte) []byte {
				id := operationID.FindSubmatch(m)
				if id == nil {
					return m
				}
				p.mu.Lock()
				op := p.stacks.ops[string(id[1])]
				p.mu.Unlock()
				if op == nil {
					return m
				}
				return []byte(rewriteOperation(string(m), op.status(now)))
			})
		}
		resp.write(w)
		return true
	}
	return false
}

// startStackSetOperation forwards the operation without the accounts that
// are to fail (so nothing is deployed there) and remembers how to report
// it.
func (p *Proxy) startStackSetOperation(w http.ResponseWriter, r *http.Request, c *call, f *Faults) bool {
	name := c.form.Get("StackSetName")
	now := time.Now()
	p.mu.Lock()
	if last := p.stacks.last[name]; last != nil && now.Before(last.due) {
		p.stats.StackSetConflicts++
		p.mu.Unlock()
		writeError(w, c, awsError{status: http.StatusConflict, code: "OperationInProgressException",
			message: fmt.Sprintf("Another Operation on StackSet %s is in progress", name)})
		return true
	}
	p.mu.Unlock()

	op := &stackOp{due: now.Add(f.StackSetOperationDelay), failed: map[string]string{}}
	form := url.Values{}
	kept := map[string][]string{} // list name → accounts kept, in order
	type member struct {
		list string
		n    int
		acct string
	}
	var members []member
	for k, vs := range c.form {
		if m := accountParam.FindStringSubmatch(k); m != nil {
			n, _ := strconv.Atoi(m[2])
			members = append(members, member{m[1], n, vs[0]})
			continue
		}
		form[k] = vs
	}
	sort.Slice(members, func(i, j int) bool {
		if members[i].list != members[j].list {
			return members[i].list < members[j].list
		}
		return members[i].n < members[j].n
	})
	for _, m := range members {
		if f.StackSetFailure != nil {
			if reason := f.StackSetFailure(m.acct); reason != "" {
				op.failed[m.acct] = reason
				continue
			}
		}
		kept[m.list] = append(kept[m.list], m.acct)
	}
	for list, accts := range kept {
		for i, a := range accts {
			form.Set(list+".member."+strconv.Itoa(i+1), a)
		}
	}
	for i := 1; ; i++ {
		reg := c.form.Get("Regions.member." + strconv.Itoa(i))
		if reg == "" {
			break
		}
		op.regions = append(op.regions, reg)
	}

	resp, err := p.forwardCall(r, []byte(form.Encode()))
	if err != nil {
		http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
		return true
	}
	if resp.status == http.StatusOK {
		if m := operationID.FindSubmatch(resp.body); m != nil {
			p.mu.Lock()
			p.stacks.ops[string(m[1])] = op
			p.stacks.last[name] = op
			p.stats.StackSetOperations++
			p.stats.StackSetAccountFailures += int64(len(op.failed))
			p.mu.Unlock()
		}
	}
	resp.write(w)
	return true
}

// rewriteOperation sets the operation's status in moto's
// StackSetOperation (or operation summary) XML; a running operation has no
// end time yet. A finished operation the proxy failed no account of keeps
// moto's status: FAILED when a member stack failed in moto.
func rewriteOperation(xml, status string) string {
	switch status {
	case stateSucceeded:
		return xml
	case "RUNNING":
		if loc := ended.FindStringIndex(xml); loc != nil {
			xml = xml[:loc[0]] + "<Status>RUNNING</Status>" + xml[loc[1]:]
		}
		return endTime.ReplaceAllString(xml, "")
	}
	return strings.Replace(xml, succeeded, "<Status>"+status+"</Status>", 1)
}

// runningResult makes one result member of moto's say RUNNING: its
// instance status (not its account gate's, which says SKIPPED) and no
// reason yet.
func runningResult(member []byte) []byte {
	gate := gateXML.Find(member)
	rest := gateXML.ReplaceAll(member, []byte("\x00"))
	rest = ended.ReplaceAll(rest, []byte("<Status>RUNNING</Status>"))
	rest = statusReason.ReplaceAll(rest, nil)
	return []byte(strings.Replace(string(rest), "\x00", string(gate), 1))
}

// rewriteResults reports the instances of a running operation as RUNNING
// and adds the failed accounts, which moto never saw.
func rewriteResults(xml string, op *stackOp, now time.Time) string {
	status := op.status(now)
	if status == "RUNNING" {
		xml = string(memberXML.ReplaceAllFunc([]byte(xml), runningResult))
	}
	accts := make([]string, 0, len(op.failed))
	for a := range op.failed {
		accts = append(accts, a)
	}
	sort.Strings(accts)
	var b strings.Builder
	for _, a := range accts {
		for _, reg := range op.regions {
			if status == "RUNNING" {
				fmt.Fprintf(&b, "<member><Account>%s</Account><Region>%s</Region><Status>RUNNING</Status></member>", a, reg)
				continue
			}
			fmt.Fprintf(&b, "<member><Account>%s</Account><Region>%s</Region><Status>FAILED</Status><StatusReason>%s</StatusReason></member>",
				a, reg, html.EscapeString(op.failed[a]))
		}
	}
	if b.Len() == 0 {
		return xml
	}
	if strings.Contains(xml, "<Summaries/>") {
		return strings.Replace(xml, "<Summaries/>", "<Summaries>"+b.String()+"</Summaries>", 1)
	}
	return strings.Replace(xml, "</Summaries>", b.String()+"</Summaries>", 1)
}
