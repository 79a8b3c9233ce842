package vending

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// What the reconciler does when a tenant's stack instance fails in its
// member account: it fails the tenant with what the member stack says, and
// a retry of the first deployment starts again from a clean account.

// instanceFailure says why t's stack instance did not succeed in the
// operation oe: the member stack's failed resources (Deployer.StackFailure:
// "Bucket (AWS::S3::Bucket): <what S3 said>"), which AWS gives only in the
// member account, the operation reporting just "The following resource(s)
// failed to create". When the member stack records no failed resource or
// cannot be read, the operation's own reason stands, and the reason says
// why. Throttling and the end of ctx are errors: the caller retries, and
// waits on the same finished operation again.
func (r *Reconciler) instanceFailure(ctx context.Context, t *registry.Tenant, oe *stacksets.OperationError) (string, error) {
	status := strings.ToLower(oe.Status)
	member, err := r.d.Deployer.StackFailure(ctx, t.AccountID, t.Region)
	if err == nil && member != "" {
		return "stack instance " + status + ": " + member, nil
	}
	if ctx.Err() != nil || awsx.IsThrottled(err) {
		return "", fmt.Errorf("read why the stack instance in %s failed: %w", t.AccountID, err)
	}
	why := "the member stack records no failed resource"
	switch {
	case errors.Is(err, stacksets.ErrNotFound):
		why = "no member stack to read"
	case err != nil:
		r.d.Log.WarnContext(ctx, "member stack not readable", "tenant", t.ID, "account", t.AccountID, "error", err)
		why = "member stack not readable: " + awsx.Classify(err).String()
		if code := awsx.ErrorCode(err); code != "" {
			why += " (" + code + ")"
		}
	}
	return fmt.Sprintf("stack instance %s: %s (%s)", status, operationReason(t, oe), why), nil
}

// operationReason is what the operation oe says about t's account.
func operationReason(t *registry.Tenant, oe *stacksets.OperationError) string {
	reason := oe.Accounts[t.AccountID]
	if reason == "" {
		reason = oe.Reason
	}
	if reason == "" {
		reason = "no reason given"
	}
	return reason
}

// attrDeployReset records the deploy attempt whose account resetDeploy
// made ready.
const attrDeployReset = "deploy_reset"

// ReportDeployReset is the kind of the report of what a retried first
// deployment removed from the account before deploying again.
const ReportDeployReset = "deploy_reset"

// needsReset reports whether t retries its first deployment (a retry
// counts attempts) and its account was not made ready for this attempt yet.
// A tenant retried from an earlier step gets the reset too, which finds
// nothing to remove in its new account.
func needsReset(t *registry.Tenant) bool {
	attempt := attemptOf(t)
	return attempt > 1 && t.Attributes[attrDeployReset] != strconv.Itoa(attempt)
}

// resetDeploy makes the account of a tenant retrying its first deployment
// ready for a fresh one, once per attempt, before the deploy is issued: it
// removes the stack instance the failed attempt left (in AWS an instance
// whose creation failed stays, OUTDATED, with its stack deleted), then
// removes what the failed stack kept (CloudFormation keeps resources with
// DeletionPolicy Retain when it rolls back a creation, and the tenant
// template retains its table, bucket and key, whose names the next
// attempt needs). The tenant was never ACTIVE, so the account holds no
// customer data; the same guard as a decommission's proves the account is
// the tenant's. What is removed is reported (ReportDeployReset); what
// cannot be removed fails the tenant. A step AWS makes wait (another
// operation on the stack set, throttling), or another reconciler's live
// claim on the reset, returns t unchanged, to be driven again.
func (r *Reconciler) resetDeploy(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	attempt := attemptOf(t)
	// One reconciler clears the account: one still cleaning while another
	// deploys again would delete the new stack. The claim is a conditional
	// write, as for an account's creation; a lost race is a conflict, and
	// Drive looks again.
	if owner, until := t.Attributes[attrClaim], claimUntil(t); owner != "" && owner != r.id && r.now().Before(until) {
		return t, awsx.Sleep(ctx, until.Sub(r.now())+jitter(r.cfg.PollInterval))
	}
	if t.Attributes[attrClaim] != r.id || claimUntil(t).Sub(r.now()) < r.cfg.ClaimTTL/2 {
		claimed, err := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
			setAttr(n, attrClaim, r.id)
			setAttr(n, attrClaimUntil, r.now().Add(r.cfg.ClaimTTL).Format(time.RFC3339Nano))
		}})
		if err != nil {
			return nil, err
		}
		t = claimed
	}
	if err := r.checkOwner(ctx, t); err != nil {
		if errors.Is(err, ErrRefused) {
			return r.fail(ctx, t, err.Error())
		}
		return nil, err
	}
	op := fmt.Sprintf("silo-%s-reset-%d", t.ID, attempt)
	got, err := r.d.Deployer.RemoveInstance(ctx, op, t.AccountID, t.Region, false)
	switch {
	case awsx.IsNotFound(err) || isNotFound(err):
		// No instance: the attempt failed before creating one.
	case errors.Is(err, stacksets.ErrBusy) || awsx.IsThrottled(err):
		return t, awsx.Sleep(ctx, r.cfg.PollInterval+jitter(r.cfg.PollInterval))
	case err != nil:
		return nil, fmt.Errorf("remove the failed stack instance: %w", err)
	default:
		if _, err := r.d.Deployer.Wait(ctx, got); err != nil && !isNotFound(err) {
			var oe *stacksets.OperationError
			if errors.As(err, &oe) {
				reason, err := r.instanceFailure(ctx, t, oe)
				if err != nil {
					return nil, err
				}
				return r.fail(ctx, t, "remove the failed deployment's "+reason)
			}
			return nil, fmt.Errorf("wait for the failed stack instance's removal: %w", err)
		}
	}
	report, err := r.d.Cleaner.Clean(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("clean account %s for a new deployment: %w", t.AccountID, err)
	}
	if err := r.d.Registry.PutReport(ctx, t.ID, ReportDeployReset, report); err != nil {
		return nil, err
	}
	if len(report.Remaining) > 0 {
		return r.fail(ctx, t, fmt.Sprintf("the failed deployment left %d resources in %s that could not be removed (see the %s report)",
			len(report.Remaining), t.AccountID, ReportDeployReset))
	}
	r.d.Log.InfoContext(ctx, "account ready for a new deployment", "tenant", t.ID, "account", t.AccountID, "attempt", attempt, "removed", len(report.Found))
	return r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "deploy_reset",
		Detail: map[string]string{"attempt": strconv.Itoa(attempt), "removed": strconv.Itoa(len(report.Found))},
		Mutate: func(n *registry.Tenant) {
			setAttr(n, attrDeployReset, strconv.Itoa(attempt))
			delete(n.Attributes, attrClaim)
			delete(n.Attributes, attrClaimUntil)
			n.Operation = ""
		}})
}
