package vending

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// What happens when a tenant is past its state's deadline (deadlines.go):
// the reconciler asks AWS where the work stands and moves the tenant to
// FAILED with that as the reason, in a conditional write like any other.
// A Drive still waiting on the tenant then loses its next write, reads the
// tenant again and stops; retry resumes it in the state it failed in, and
// decommission takes it to CLOSED from whatever exists.

// Bounds on what is written to the registry for an operator to read.
const (
	maxLastError = 500
	maxReason    = 1500
)

// errPastDeadline is the cause of a wait cut off at the tenant's deadline.
var errPastDeadline = errors.New("past the state's deadline")

// Deadlines returns the reconciler's deadlines, with their defaults.
func (r *Reconciler) Deadlines() Deadlines { return r.cfg.Deadlines }

// Judge decides whether t is past its state's deadline now, counting only
// the time since this reconciler started (Verdict.WatchedFrom).
func (r *Reconciler) Judge(t *registry.Tenant) Verdict {
	now := r.now()
	return r.cfg.Deadlines.Judge(t, now).WatchedFrom(r.started, now)
}

// bounded returns ctx cut off at t's deadline, for the Drive's own waits on
// AWS (a creation, the readiness gate, a StackSet operation, a cleaning):
// a Drive stops waiting once the tenant is past it. Waits behind a quota
// are not bounded: they keep a quota note instead.
func (r *Reconciler) bounded(ctx context.Context, t *registry.Tenant) (context.Context, context.CancelFunc) {
	v := r.Judge(t)
	if v.Due.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, v.Due, errPastDeadline)
}

// cutOff reports whether a wait on bctx (from bounded) ended because the
// tenant reached its deadline, rather than because ctx ended.
func cutOff(ctx, bctx context.Context) bool {
	return ctx.Err() == nil && errors.Is(context.Cause(bctx), errPastDeadline)
}

// overdue ends a Drive's wait that was cut off at the deadline: the tenant
// goes to FAILED with what AWS says (expire), with cause, the error the
// wait ended on, as the last step error when the registry has none.
func (r *Reconciler) overdue(ctx context.Context, t *registry.Tenant, cause error) (*registry.Tenant, error) {
	v := r.Judge(t)
	if !v.Overdue {
		// The deadline was computed from this very record; a clock that
		// stepped back can still make it early. Look again.
		return t, nil
	}
	return r.expire(ctx, t, v, cause)
}

// Expire moves t, past its state's deadline by verdict v, to FAILED with
// the reason AWS gives for where its work stands. It returns t unchanged
// when AWS says the work is in fact done (a creation that succeeded since),
// for the Drive to carry on. A lost race is registry.ErrConflict.
func (r *Reconciler) Expire(ctx context.Context, t *registry.Tenant, v Verdict) (*registry.Tenant, error) {
	return r.expire(ctx, t, v, nil)
}

func (r *Reconciler) expire(ctx context.Context, t *registry.Tenant, v Verdict, cause error) (*registry.Tenant, error) {
	if !v.Overdue {
		return t, nil
	}
	last := t.LastError
	if last == "" && cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
		last = awsx.Brief(cause, maxLastError)
	}
	var (
		what string
		done bool
	)
	switch t.State {
	case registry.StateRequested:
		what = "the reconciler never moved it on"
	case registry.StateCreatingAccount:
		what, done = r.creationReason(ctx, t)
	case registry.StatePreparing:
		what = fmt.Sprintf("account %s was not moved into its OU and proved usable", t.AccountID)
		if last == "" {
			what += " (no readiness check has finished)"
		}
	case registry.StateDeploying, registry.StateUpdating:
		what = r.deployReason(ctx, t, t.Operation, nil)
	case registry.StateDecommissioning:
		what = r.decommissionReason(ctx, t)
	default:
		return t, nil
	}
	if done {
		return t, nil
	}
	reason := v.Summary() + ": " + what
	if last != "" {
		reason += "; last error: " + last
	}
	if len(reason) > maxReason {
		reason = awsx.Brief(errors.New(reason), maxReason)
	}
	next, err := r.d.Registry.Transition(ctx, t, registry.StateFailed, registry.Change{
		Actor: r.cfg.Actor, Reason: reason, Type: "deadline_exceeded",
		Detail: map[string]string{"state": string(t.State), "idle": v.Idle.Round(time.Second).String(), "deadline": v.Limit.String()},
		Mutate: func(n *registry.Tenant) { n.Operation = "" },
	})
	if err != nil {
		return nil, err
	}
	r.d.Log.WarnContext(ctx, "tenant past its deadline", "tenant", t.ID, "state", t.State, "idle", v.Idle.Round(time.Second), "deadline", v.Limit, "reason", reason)
	r.d.Events.Publish(ctx, "tenant.failed", next)
	return next, nil
}

// creationReason says where the tenant's account creation stands, from
// DescribeCreateAccountStatus. done is true when it has ended since (the
// Drive then takes it on: to PREPARING, or FAILED with AWS's reason).
func (r *Reconciler) creationReason(ctx context.Context, t *registry.Tenant) (what string, done bool) {
	if t.AccountID != "" {
		return fmt.Sprintf("account %s exists but the tenant was not moved on", t.AccountID), false
	}
	if t.Operation == "" {
		return "no create-account request was recorded", false
	}
	out, err := r.d.Org.DescribeCreateAccountStatus(ctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(t.Operation)})
	if err != nil {
		return fmt.Sprintf("create-account request %s: DescribeCreateAccountStatus failed: %s", t.Operation, awsx.Brief(err, maxLastError)), false
	}
	st := out.CreateAccountStatus
	if st.State == orgtypes.CreateAccountStateSucceeded || st.State == orgtypes.CreateAccountStateFailed {
		return "", true
	}
	what = fmt.Sprintf("create-account request %s is %s", t.Operation, st.State)
	if at := st.RequestedTimestamp; at != nil {
		what += " since " + at.UTC().Format(time.RFC3339)
	}
	if st.FailureReason != "" {
		what += " (" + string(st.FailureReason) + ")"
	}
	return what, false
}

// deployReason says why a deploy or an update did not end, from the
// StackSet operation op and, for an instance that failed, its member
// stack. It is the one place the DEPLOYING and UPDATING reasons are
// collected: for a failed operation and for a tenant past its deadline.
//
// oe is the operation's failure when the caller waited for it to end; nil
// makes it read the operation's status from the Deployer.
func (r *Reconciler) deployReason(ctx context.Context, t *registry.Tenant, op string, oe *stacksets.OperationError) string {
	if oe != nil {
		// The operation ended: the member stack says why (instanceFailure
		// reads it, and says so when it cannot).
		reason, err := r.instanceFailure(ctx, t, oe)
		if err != nil {
			reason = fmt.Sprintf("stack instance %s: %s (member stack not read: %s)", strings.ToLower(oe.Status), operationReason(t, oe), awsx.Brief(err, maxLastError))
		}
		return reason
	}
	var parts []string
	switch {
	case op == "":
		parts = append(parts, "no stack set operation was recorded")
	default:
		res, err := r.d.Deployer.OperationStatus(ctx, op)
		switch {
		case errors.Is(err, stacksets.ErrNotFound):
			parts = append(parts, fmt.Sprintf("stack set operation %s is unknown to CloudFormation (never issued, or gone)", op))
		case err != nil:
			parts = append(parts, fmt.Sprintf("stack set operation %s: %s", op, awsx.Brief(err, maxLastError)))
		default:
			s := fmt.Sprintf("stack set operation %s is %s", op, res.Status)
			if res.Reason != "" {
				s += ": " + res.Reason
			}
			parts = append(parts, s)
			if res.Status == "FAILED" || res.Status == "STOPPED" {
				if failures, err := r.d.Deployer.OperationFailures(ctx, op); err == nil && failures[t.AccountID] != "" {
					parts = append(parts, "stack instance: "+failures[t.AccountID])
				}
			}
		}
	}
	if s := r.stackFailure(ctx, t); s != "" {
		parts = append(parts, "member stack: "+s)
	}
	return strings.Join(parts, "; ")
}

// stackFailure returns why t's member stack failed (its failing resources'
// events), "" when nothing failed or there is no stack yet, or why it could
// not be read.
func (r *Reconciler) stackFailure(ctx context.Context, t *registry.Tenant) string {
	if t.AccountID == "" {
		return ""
	}
	s, err := r.d.Deployer.StackFailure(ctx, t.AccountID, t.Region)
	switch {
	case errors.Is(err, stacksets.ErrNotFound):
		return ""
	case err != nil:
		return "not readable: " + awsx.Brief(err, maxLastError)
	}
	return s
}

// decommissionReason names the decommission step a tenant was in, and
// for a stack instance's removal, where its operation stands.
func (r *Reconciler) decommissionReason(ctx context.Context, t *registry.Tenant) string {
	if t.AccountID == "" {
		if t.Operation != "" {
			return fmt.Sprintf("waiting for create-account request %s to end, to decommission its account", t.Operation)
		}
		return "looking for an account created for it"
	}
	switch t.Attributes[attrDecomStep] {
	case "":
		what := fmt.Sprintf("removing the stack instance from account %s", t.AccountID)
		if op := t.Operation; op != "" && op == t.Attributes[attrRemoveOp] {
			what += ": " + r.deployReason(ctx, t, op, nil)
		}
		return what
	case stepInstanceRemoved:
		return fmt.Sprintf("deleting and inventorying what remains in account %s", t.AccountID)
	case stepCleaned:
		return fmt.Sprintf("moving account %s to the Suspended OU", t.AccountID)
	case stepSuspended:
		return fmt.Sprintf("closing account %s", t.AccountID)
	}
	return "in step " + t.Attributes[attrDecomStep]
}

// noteError records err as t's last step error, when it differs from the
// one recorded: an operator sees what a tenant is stuck on before its
// deadline, and the deadline's reason quotes it. A lost race reads the
// tenant again once; a write that still fails is only logged (the error
// is also in the log).
func (r *Reconciler) noteError(ctx context.Context, t *registry.Tenant, err error) {
	text := awsx.Brief(err, maxLastError)
	state := t.State
	for attempt := 0; attempt < 2; attempt++ {
		if t.State != state || stable(t.State) || t.LastError == text {
			return
		}
		now := r.now()
		_, werr := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
			n.LastError, n.LastErrorAt = text, &now
		}})
		if !errors.Is(werr, registry.ErrConflict) {
			if werr != nil && ctx.Err() == nil {
				r.d.Log.WarnContext(ctx, "last error not recorded", "tenant", t.ID, "error", werr)
			}
			return
		}
		if t, werr = r.d.Registry.Get(ctx, t.ID); werr != nil {
			return
		}
	}
}

// noteWaiting records (or renews) a quota note on t: it waits its turn for
// a quota AWS enforces, which does not count against its deadline while
// the note holds. It writes only when the note is new or less than half of
// Deadlines.QuotaNote is left.
func (r *Reconciler) noteWaiting(ctx context.Context, t *registry.Tenant, what string) (*registry.Tenant, error) {
	now := r.now()
	lease := r.cfg.Deadlines.QuotaNote
	if t.Waiting == what && t.WaitingUntil != nil && t.WaitingUntil.Sub(now) > lease/2 {
		return t, nil
	}
	until := now.Add(lease)
	next, err := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
		n.Waiting, n.WaitingUntil = what, &until
	}})
	if err != nil {
		return nil, err
	}
	if t.Waiting != what {
		r.d.Log.InfoContext(ctx, "tenant waiting for a quota", "tenant", t.ID, "state", t.State, "waiting", what)
	}
	return next, nil
}

// waitStackSet waits a while for the stack set, which refused a call
// because it runs another operation (AWS allows one at a time) or
// throttled it, with a quota note on the tenant, then returns it for the
// Drive to look again.
func (r *Reconciler) waitStackSet(ctx context.Context, t *registry.Tenant, cause error) (*registry.Tenant, error) {
	what := "stack set: another operation is running (one at a time per stack set)"
	switch {
	case awsx.IsThrottled(cause):
		what = "stack set: CloudFormation throttled the call"
	case awsx.IsAlreadyExists(cause):
		what = "stack set: the instance is being created by another operation"
	}
	noted, err := r.noteWaiting(ctx, t, what)
	if err != nil {
		return nil, err
	}
	return noted, awsx.Sleep(ctx, r.cfg.PollInterval+jitter(r.cfg.PollInterval))
}

// isStackSetBusy reports whether a StackSet call was refused because the
// stack set runs another operation (one at a time), or throttled.
func isStackSetBusy(err error) bool {
	return errors.Is(err, stacksets.ErrBusy) || awsx.IsThrottled(err)
}
