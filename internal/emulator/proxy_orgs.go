package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Create-account request states, as Organizations spells them.
const (
	stateInProgress = "IN_PROGRESS"
	stateSucceeded  = "SUCCEEDED"
	stateFailed     = "FAILED"
)

// orgState is what the proxy knows about account creation. Guarded by
// Proxy.mu.
type orgState struct {
	// creates are the create-account requests the proxy answered itself,
	// by the id it gave them.
	creates map[string]*createRequest
	order   []*createRequest
	// replayed are moto's request ids of the creations the proxy replayed,
	// hidden from ListCreateAccountStatus (the proxy lists its own id).
	replayed map[string]bool
	// created is when the proxy saw each account's creation complete.
	created    map[string]time.Time
	inProgress int
	counter    int64
}

func newOrgState() orgState {
	return orgState{creates: map[string]*createRequest{}, replayed: map[string]bool{}, created: map[string]time.Time{}}
}

// createRequest is one asynchronous CreateAccount.
type createRequest struct {
	// replay serializes completion between the timer and an observer that
	// finds the request due.
	replay sync.Mutex

	id, name  string
	requested time.Time
	due       time.Time
	failure   string // FailureReason it will end with; "" to succeed
	// The original request, replayed to moto when due.
	host, uri string
	header    http.Header
	body      []byte

	// Guarded by Proxy.mu.
	state     string
	accountID string
	reason    string
	completed time.Time
}

// serveOrganizations handles the Organizations calls the proxy changes and
// reports whether it answered.
func (p *Proxy) serveOrganizations(w http.ResponseWriter, r *http.Request, c *call, f *Faults) bool {
	switch c.op.Operation {
	case "CreateAccount":
		if !f.interceptsCreate() {
			return p.createAccountNow(w, r, c)
		}
		return p.createAccountLater(w, r, c, f)
	case "DescribeCreateAccountStatus":
		var in struct{ CreateAccountRequestId string }
		_ = json.Unmarshal(c.body, &in)
		p.mu.Lock()
		cr := p.orgs.creates[in.CreateAccountRequestId]
		p.mu.Unlock()
		if cr == nil {
			return false
		}
		p.completeIfDue(r.Context(), cr)
		p.mu.Lock()
		out := map[string]any{"CreateAccountStatus": cr.statusLocked()}
		p.mu.Unlock()
		writeJSON(w, out)
		return true
	case "ListCreateAccountStatus":
		return p.listCreateAccountStatus(w, r, c)
	}
	return false
}

// createAccountNow forwards a CreateAccount (moto creates the account at
// once) and notes when the account was created, for NewAccountUnusable.
func (p *Proxy) createAccountNow(w http.ResponseWriter, r *http.Request, c *call) bool {
	resp, err := p.forwardCall(r, c.body)
	if err != nil {
		http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
		return true
	}
	if resp.status == http.StatusOK {
		if st, ok := parseCreateStatus(resp.body); ok && st.AccountId != "" {
			p.mu.Lock()
			p.orgs.created[st.AccountId] = time.Now()
			p.mu.Unlock()
		}
	}
	resp.write(w)
	return true
}

// createAccountLater answers IN_PROGRESS, as Organizations does, and
// replays the request to moto when its delay is over, so that the account
// exists in moto (ListAccounts, DescribeAccount, AssumeRole) only from then
// on.
func (p *Proxy) createAccountLater(w http.ResponseWriter, r *http.Request, c *call, f *Faults) bool {
	var in struct{ Email, AccountName string }
	if err := json.Unmarshal(c.body, &in); err != nil || in.Email == "" || in.AccountName == "" {
		return false // let moto report the bad input, synchronously as AWS does
	}
	now := time.Now()
	cr := &createRequest{
		name: in.AccountName, requested: now, due: now.Add(f.CreateAccountDelay), state: stateInProgress,
		host: r.Host, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: c.body,
	}
	if f.CreateAccountFailure != nil {
		cr.failure = f.CreateAccountFailure(in.Email, in.AccountName)
	}

	p.mu.Lock()
	if f.MaxCreateInProgress > 0 && p.orgs.inProgress >= f.MaxCreateInProgress {
		p.stats.CreateLimitViolations++
		p.mu.Unlock()
		writeError(w, c, awsError{status: http.StatusBadRequest, code: "ConstraintViolationException",
			message: "You have exceeded the allowed number of accounts that can be in the process of being created at the same time.",
			extra:   map[string]string{"Reason": "ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"}})
		return true
	}
	p.orgs.counter++
	// car- and 8 to 32 lowercase letters or digits, as AWS's pattern says.
	cr.id = fmt.Sprintf("car-%08x%016x", p.orgs.counter, p.rng.Uint64())
	p.orgs.creates[cr.id] = cr
	p.orgs.order = append(p.orgs.order, cr)
	p.orgs.inProgress++
	p.stats.CreateRequests++
	p.stats.MaxCreateInProgress = max(p.stats.MaxCreateInProgress, p.orgs.inProgress)
	status := cr.statusLocked()
	ep := p.ep
	ep.wg.Add(1)
	p.mu.Unlock()

	go func() {
		defer ep.wg.Done()
		t := time.NewTimer(time.Until(cr.due))
		defer t.Stop()
		select {
		case <-ep.ctx.Done():
		case <-t.C:
			p.complete(ep.ctx, cr)
		}
	}()
	writeJSON(w, map[string]any{"CreateAccountStatus": status})
	return true
}

// completeIfDue completes cr now if its delay is over, so that whoever sees
// it SUCCEEDED can use the account, even when the timer has not run yet.
func (p *Proxy) completeIfDue(ctx context.Context, cr *createRequest) {
	if !time.Now().Before(cr.due) {
		p.complete(ctx, cr)
	}
}

// complete ends cr: FAILED with its reason, or replayed to moto and
// SUCCEEDED with moto's new account id.
func (p *Proxy) complete(ctx context.Context, cr *createRequest) {
	cr.replay.Lock()
	defer cr.replay.Unlock()
	p.mu.Lock()
	done := cr.state != stateInProgress
	p.mu.Unlock()
	if done {
		return
	}
	if cr.failure != "" {
		p.settle(cr, stateFailed, "", cr.failure, "")
		return
	}
	resp, err := p.forward(ctx, http.MethodPost, cr.host, cr.uri, cr.header, cr.body)
	if err != nil {
		return // still IN_PROGRESS; the timer or the next observer tries again
	}
	st, ok := parseCreateStatus(resp.body)
	if resp.status != http.StatusOK || !ok || st.AccountId == "" {
		p.settle(cr, stateFailed, "", "INTERNAL_FAILURE", "")
		return
	}
	p.settle(cr, stateSucceeded, st.AccountId, "", st.Id)
}

func (p *Proxy) settle(cr *createRequest, state, account, reason, motoID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	cr.state, cr.accountID, cr.reason, cr.completed = state, account, reason, now
	if p.orgs.creates[cr.id] != cr {
		return // the proxy was reset meanwhile
	}
	p.orgs.inProgress--
	if state == stateFailed {
		p.stats.CreateFailures[reason]++
	}
	if motoID != "" {
		p.orgs.replayed[motoID] = true
	}
	if account != "" {
		p.orgs.created[account] = now
	}
}

// statusLocked is cr as a CreateAccountStatus. Timestamps are epoch
// seconds, as the JSON protocol sends them.
func (cr *createRequest) statusLocked() map[string]any {
	out := map[string]any{
		"Id": cr.id, "AccountName": cr.name, "State": cr.state,
		"RequestedTimestamp": epochSeconds(cr.requested),
	}
	if cr.state != stateInProgress {
		out["CompletedTimestamp"] = epochSeconds(cr.completed)
	}
	if cr.accountID != "" {
		out["AccountId"] = cr.accountID
	}
	if cr.reason != "" {
		out["FailureReason"] = cr.reason
	}
	return out
}

// listCreateAccountStatus lists moto's requests (those the proxy did not
// replay) and the proxy's own, filtered by States.
func (p *Proxy) listCreateAccountStatus(w http.ResponseWriter, r *http.Request, c *call) bool {
	p.mu.Lock()
	mine := slices.Clone(p.orgs.order)
	p.mu.Unlock()
	if len(mine) == 0 {
		return false
	}
	for _, cr := range mine {
		p.completeIfDue(r.Context(), cr)
	}
	var in struct {
		States    []string
		NextToken string
	}
	_ = json.Unmarshal(c.body, &in)
	resp, err := p.forwardCall(r, c.body)
	if err != nil {
		http.Error(w, "emulator unavailable: "+err.Error(), http.StatusBadGateway)
		return true
	}
	var out struct {
		CreateAccountStatuses []map[string]any
		NextToken             string `json:",omitempty"`
	}
	if resp.status != http.StatusOK || json.Unmarshal(resp.body, &out) != nil {
		resp.write(w)
		return true
	}
	p.mu.Lock()
	statuses := slices.DeleteFunc(out.CreateAccountStatuses, func(s map[string]any) bool {
		id, _ := s["Id"].(string)
		return p.orgs.replayed[id]
	})
	if in.NextToken == "" {
		for _, cr := range mine {
			if len(in.States) == 0 || slices.Contains(in.States, cr.state) {
				statuses = append(statuses, cr.statusLocked())
			}
		}
	}
	p.mu.Unlock()
	if statuses == nil {
		statuses = []map[string]any{}
	}
	out.CreateAccountStatuses = statuses
	writeJSON(w, out)
	return true
}

// createStatus is the part of moto's CreateAccountStatus the proxy reads.
type createStatus struct{ Id, AccountId, State string }

func parseCreateStatus(body []byte) (createStatus, bool) {
	var out struct{ CreateAccountStatus createStatus }
	if err := json.Unmarshal(body, &out); err != nil {
		return createStatus{}, false
	}
	return out.CreateAccountStatus, true
}

// serveSTS refuses AssumeRole into accounts younger than
// NewAccountUnusable, as IAM in a new account is not ready at once.
func (p *Proxy) serveSTS(w http.ResponseWriter, _ *http.Request, c *call, f *Faults) bool {
	if c.op.Operation != "AssumeRole" || f.NewAccountUnusable <= 0 {
		return false
	}
	arn := c.form.Get("RoleArn")
	// arn:aws:iam::<account>:role/<name>
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return false
	}
	p.mu.Lock()
	created, ok := p.orgs.created[parts[4]]
	young := ok && time.Since(created) < f.NewAccountUnusable
	if young {
		p.stats.AssumeRoleDenied++
	}
	p.mu.Unlock()
	if !young {
		return false
	}
	writeError(w, c, awsError{status: http.StatusForbidden, code: "AccessDenied",
		message: "User is not authorized to perform: sts:AssumeRole on resource: " + arn})
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", fmt.Sprintf("%x", time.Now().UnixNano()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func epochSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
