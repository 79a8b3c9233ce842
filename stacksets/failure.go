package stacksets

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Why a stack instance failed is in its member stack, not in the stack set
// operation: AWS reports the instance with the stack's own status reason
// ("The following resource(s) failed to create: [Bucket]. Delete requested
// by user."), and only the stack's events say what the service refused.

// Bounds of StackFailure's answer. It becomes a tenant's failure reason,
// shown in a CLI line and a console cell, and with the reconciler's prefix
// stays within the 1000 characters the API allows an operator's reason;
// AWS's reasons can run to kilobytes (a refused IAM policy quotes it).
const (
	// maxFailure bounds the whole answer.
	maxFailure = 900
	// maxResourceReason bounds one resource's reason, so that one long
	// reason leaves room for the next: two fit whole, with their resources'
	// names and the count of the rest.
	maxResourceReason = 360
	// maxEventPages bounds how far back the events are read (100 a page):
	// the latest operation's start is normally on the first page.
	maxEventPages = 10
)

// stackType is a stack's own events' (and nested stacks') resource type.
const stackType = "AWS::CloudFormation::Stack"

// StackFailure returns why the member stack of the instance in account and
// region failed, read from the stack's events with the member account's
// own credentials: the ResourceStatusReason of each resource that failed
// to create, update or delete in the stack's latest operation, as
// "LogicalId (Type): reason", most relevant first (a create or update
// failure before a delete failure, a cancelled resource last, otherwise
// the earliest first), each reason once, the whole bounded in length. It
// returns "" when no resource failed. The stack is looked up by the
// instance's StackId: a stack StackSets deleted after a failed creation
// can be read only by its id. A missing instance or stack is an error
// wrapping ErrNotFound.
func (m *Manager) StackFailure(ctx context.Context, account, region string) (string, error) {
	inst, found, err := m.instance(ctx, account, region)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("failure of stack instance %s/%s: %w", account, region, ErrNotFound)
	}
	stacks := m.members(account, region)
	// The emulator reports the id of a stack that failed; for others its
	// ids name no stack (see instanceStack), so its name is the fallback.
	for _, name := range []string{aws.ToString(inst.StackId), m.memberStack()} {
		if name == "" {
			continue
		}
		events, err := latestEvents(ctx, stacks, name)
		if awsx.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("failure of stack instance %s/%s: events of stack %s: %w", account, region, name, err)
		}
		return failureReason(events), nil
	}
	return "", fmt.Errorf("failure of stack instance %s/%s: stack %s: %w", account, region, aws.ToString(inst.StackId), ErrNotFound)
}

// latestEvents reads the stack's events, newest first, back to the start
// of its latest operation (or maxEventPages pages).
func latestEvents(ctx context.Context, stacks stacksAPI, name string) ([]cfntypes.StackEvent, error) {
	var out []cfntypes.StackEvent
	p := cloudformation.NewDescribeStackEventsPaginator(stacks, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	for pages := 0; p.HasMorePages() && pages < maxEventPages; pages++ {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.StackEvents...)
		if slices.ContainsFunc(page.StackEvents, operationStart) {
			break
		}
	}
	return out, nil
}

// operationStart reports whether e is the stack's own event that starts an
// operation (a create or an update; a rollback or a deletion after a
// failure belongs to the operation that failed).
func operationStart(e cfntypes.StackEvent) bool {
	return isStackItself(e) && (e.ResourceStatus == cfntypes.ResourceStatusCreateInProgress || e.ResourceStatus == cfntypes.ResourceStatusUpdateInProgress)
}

// isStackItself reports whether e is the stack's own event rather than a
// resource's (a nested stack is a resource of type stackType too).
func isStackItself(e cfntypes.StackEvent) bool {
	if aws.ToString(e.ResourceType) != stackType {
		return false
	}
	id, physical := aws.ToString(e.StackId), aws.ToString(e.PhysicalResourceId)
	return physical == id || aws.ToString(e.LogicalResourceId) == aws.ToString(e.StackName)
}

// failureReason summarizes events (newest first, as DescribeStackEvents
// gives them) as StackFailure describes.
func failureReason(events []cfntypes.StackEvent) string {
	type failure struct {
		what, reason string
		rank, age    int
	}
	var found []failure
	for i, e := range events {
		if isStackItself(e) {
			if operationStart(e) {
				break // what came before is an earlier operation's
			}
			continue
		}
		rank := 0
		switch e.ResourceStatus {
		case cfntypes.ResourceStatusCreateFailed, cfntypes.ResourceStatusUpdateFailed:
		case cfntypes.ResourceStatusDeleteFailed:
			rank = 1 // often a rollback's trouble after the real failure
		default:
			continue
		}
		reason := strings.TrimSpace(aws.ToString(e.ResourceStatusReason))
		if reason == "" {
			continue
		}
		if cancelled(reason) {
			rank = 2 // stopped because another resource failed
		}
		what := aws.ToString(e.LogicalResourceId)
		if t := aws.ToString(e.ResourceType); t != "" {
			what += " (" + t + ")"
		}
		found = append(found, failure{what: what, reason: reason, rank: rank, age: i})
	}
	// Events are newest first: a larger index is an earlier event.
	slices.SortStableFunc(found, func(a, b failure) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return b.age - a.age
	})
	var parts []string
	seen := map[string]bool{}
	for _, f := range found {
		if seen[f.reason] {
			continue
		}
		seen[f.reason] = true
		parts = append(parts, f.what+": "+truncate(f.reason, maxResourceReason))
	}
	return join(parts, "; ", maxFailure)
}

// cancelled reports whether reason is CloudFormation's "Resource creation
// cancelled" (or update, deletion): a consequence, not a cause.
func cancelled(reason string) bool {
	r := strings.ToLower(reason)
	return strings.HasPrefix(r, "resource ") && strings.HasSuffix(r, " cancelled")
}

// join joins parts with sep into at most limit bytes: the parts that do
// not fit are counted in a "(+N more)" suffix; a first part too long is
// cut to leave room for it.
func join(parts []string, sep string, limit int) string {
	var b strings.Builder
	for i, p := range parts {
		more := ""
		if rest := len(parts) - i - 1; rest > 0 {
			more = " (+" + strconv.Itoa(rest) + " more)"
		}
		add := p
		if i > 0 {
			add = sep + p
		}
		if b.Len()+len(add)+len(more) <= limit {
			b.WriteString(add)
			continue
		}
		if i == 0 {
			b.WriteString(truncate(p, limit-len(more)) + more)
			break
		}
		b.WriteString(" (+" + strconv.Itoa(len(parts)-i) + " more)")
		break
	}
	return b.String()
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	const mark = "…"
	if len(s) <= n {
		return s
	}
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
