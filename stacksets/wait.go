package stacksets

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Result is what became of a stack set operation.
type Result struct {
	ID     string
	Action string
	Status string
	// Reason is the operation's own status reason, when it gave one.
	Reason     string
	Started    time.Time
	Ended      time.Time
	StackSetID string
}

// OperationError is a stack set operation that ended FAILED or STOPPED. The
// reconciler records Accounts[account] as the tenant's failure reason.
type OperationError struct {
	ID     string
	Status string
	Reason string
	// Accounts maps each account whose instance did not succeed to why
	// (reasons of several regions are joined with "; ").
	Accounts map[string]string
}

func (e *OperationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stack set operation %s %s", e.ID, e.Status)
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	for _, a := range slices.Sorted(maps.Keys(e.Accounts)) {
		fmt.Fprintf(&b, "; %s: %s", a, e.Accounts[a])
	}
	return b.String()
}

// Wait polls the operation until it ends and returns its result. It backs
// off exponentially from PollMin to PollMax with jitter, slows down further
// while CloudFormation throttles, and returns ctx's error as soon as ctx
// ends. A FAILED or STOPPED operation returns its result and an
// *OperationError; an unknown id returns an error wrapping ErrNotFound.
// With Options.ApplyUpdates, an update whose member stacks the manager
// failed to update (UpdateInstance, UpdateInstances) ends FAILED, with
// those accounts in the *OperationError, though moto reports it SUCCEEDED.
func (m *Manager) Wait(ctx context.Context, opID string) (Result, error) {
	delay := m.opts.PollMin
	last := ""
	for {
		out, err := m.cfn.DescribeStackSetOperation(ctx, &cloudformation.DescribeStackSetOperationInput{
			StackSetName: aws.String(m.opts.StackSetName), OperationId: aws.String(opID), CallAs: m.opts.CallAs,
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return Result{}, fmt.Errorf("wait for stack set operation %s: %w", opID, ctx.Err())
		case awsx.IsThrottled(err):
			// The SDK's retries gave up; keep waiting, but slower.
			m.log.WarnContext(ctx, "stack set operation poll throttled", "operation", opID, "error", err)
			delay = min(2*delay, m.opts.PollMax)
		case awsx.IsNotFound(err):
			return Result{}, fmt.Errorf("wait for stack set operation %s: %w: %w", opID, ErrNotFound, err)
		case awsx.IsInvalid(err):
			// moto answers ValidationError, not OperationNotFound, for an
			// unknown id: the operation list settles it.
			if known, lerr := m.operationListed(ctx, opID); lerr == nil && !known {
				return Result{}, fmt.Errorf("wait for stack set operation %s: %w: %w", opID, ErrNotFound, err)
			}
			return Result{}, fmt.Errorf("wait for stack set operation %s: %w", opID, err)
		default:
			return Result{}, fmt.Errorf("wait for stack set operation %s: %w", opID, err)
		}
		if err == nil {
			r := result(out.StackSetOperation)
			applied := m.appliedFailures(opID)
			if len(applied) > 0 && r.Status == string(cfntypes.StackSetOperationStatusSucceeded) {
				// moto succeeded; the update the manager applied to the
				// member stacks did not (Options.ApplyUpdates).
				r.Status = string(cfntypes.StackSetOperationStatusFailed)
			}
			if r.Status != last {
				last = r.Status
				m.log.InfoContext(ctx, "stack set operation status", "stack_set", m.opts.StackSetName,
					"operation", opID, "action", r.Action, "status", r.Status)
				if m.opts.Progress != nil {
					m.opts.Progress(r)
				}
			}
			switch cfntypes.StackSetOperationStatus(r.Status) {
			case cfntypes.StackSetOperationStatusSucceeded:
				return r, nil
			case cfntypes.StackSetOperationStatusFailed, cfntypes.StackSetOperationStatusStopped:
				accounts, err := m.failures(ctx, opID)
				if err != nil {
					return r, err
				}
				maps.Copy(accounts, applied)
				return r, &OperationError{ID: opID, Status: r.Status, Reason: r.Reason, Accounts: accounts}
			}
		}
		t := time.NewTimer(jitter(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, fmt.Errorf("wait for stack set operation %s: %w", opID, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, m.opts.PollMax)
	}
}

// jitter spreads d over [d/2, d) so that many waiters do not poll in step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func result(op *cfntypes.StackSetOperation) Result {
	if op == nil {
		return Result{}
	}
	return Result{
		ID:         aws.ToString(op.OperationId),
		Action:     string(op.Action),
		Status:     string(op.Status),
		Reason:     aws.ToString(op.StatusReason),
		Started:    aws.ToTime(op.CreationTimestamp),
		Ended:      aws.ToTime(op.EndTimestamp),
		StackSetID: aws.ToString(op.StackSetId),
	}
}

// OperationFailures returns why each account of an operation did not
// succeed. AWS reports an operation whose failures stayed within its
// failure tolerance SUCCEEDED, and names the failed accounts only here; a
// batched update's caller reads them after Wait returns without error.
func (m *Manager) OperationFailures(ctx context.Context, opID string) (map[string]string, error) {
	out, err := m.failures(ctx, opID)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, m.appliedFailures(opID))
	return out, nil
}

// failures collects why each account's instance did not succeed.
func (m *Manager) failures(ctx context.Context, opID string) (map[string]string, error) {
	out := map[string]string{}
	p := cloudformation.NewListStackSetOperationResultsPaginator(m.cfn, &cloudformation.ListStackSetOperationResultsInput{
		StackSetName: aws.String(m.opts.StackSetName), OperationId: aws.String(opID), CallAs: m.opts.CallAs,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("results of stack set operation %s: %w", opID, err)
		}
		for _, s := range page.Summaries {
			if s.Status == cfntypes.StackSetOperationResultStatusSucceeded {
				continue
			}
			reason := aws.ToString(s.StatusReason)
			if g := s.AccountGateResult; g != nil && g.Status == cfntypes.AccountGateStatusFailed {
				reason = strings.TrimPrefix(reason+"; account gate: "+aws.ToString(g.StatusReason), "; ")
			}
			if reason == "" {
				reason = string(s.Status)
			}
			if r := aws.ToString(s.Region); r != "" {
				reason = r + ": " + reason
			}
			a := aws.ToString(s.Account)
			if prev, ok := out[a]; ok {
				reason = prev + "; " + reason
			}
			out[a] = reason
		}
	}
	return out, nil
}

// operationListed reports whether the stack set lists the operation.
func (m *Manager) operationListed(ctx context.Context, opID string) (bool, error) {
	p := cloudformation.NewListStackSetOperationsPaginator(m.cfn, &cloudformation.ListStackSetOperationsInput{
		StackSetName: aws.String(m.opts.StackSetName), CallAs: m.opts.CallAs,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return false, err
		}
		for _, s := range page.Summaries {
			if aws.ToString(s.OperationId) == opID {
				return true, nil
			}
		}
	}
	return false, nil
}
