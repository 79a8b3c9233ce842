package stacksets

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
)

// A rollout wave is one batched operation: StackSets run one operation per
// stack set at a time, so updating accounts one call each would serialize
// the fleet behind the slowest instance.

// UpdateInstances starts one operation that brings the instances of several
// accounts in region to their params (account → all of that instance's
// parameters) under prefs, and returns the operation's id. opID is the
// caller's deterministic id (see OperationID): re-issuing it after a crash
// finds the same operation.
//
// One operation sends one list of parameter overrides for all its
// instances. A parameter with the same value for every account is sent with
// that value; a parameter whose value differs between accounts (TenantId)
// is sent with UsePreviousValue, so each instance keeps its present value:
// a batch changes only what is common to its accounts, and params must hold
// each instance's present value of the others (a per-tenant change is an
// UpdateInstance of its own). Every account must list the same parameter
// names.
//
// prefs bound the fan-out: a zero MaxConcurrentCount takes the manager's
// Preferences (and its FailureToleranceCount when that is zero too);
// otherwise MaxConcurrentCount is 1..Options.ConcurrencyLimit and
// FailureToleranceCount at least 0. In StackSets' default concurrency mode
// (STRICT_FAILURE_TOLERANCE) AWS deploys at most FailureToleranceCount+1
// accounts at once, whatever MaxConcurrentCount says.
//
// With Options.ApplyUpdates (the emulator) the manager then updates each
// account's member stack itself, skipping stacks that already run their
// parameters, so re-issuing an operation updates no account twice. An
// account that cannot be updated does not fail this call: Wait on the
// returned id reports the operation FAILED with the account's reason, and
// once more accounts failed than FailureToleranceCount the accounts not
// attempted yet are reported cancelled, as in AWS. (AWS itself calls an
// operation whose failures stay within the tolerance SUCCEEDED and lists
// them only in its results; the emulator, like its proxy, fails it.)
func (m *Manager) UpdateInstances(ctx context.Context, opID, region string, params map[string]map[string]string, prefs Preferences) (string, error) {
	accounts := slices.Sorted(maps.Keys(params))
	what := fmt.Sprintf("update %d stack instances in %s", len(accounts), region)
	prefs, err := m.batchPreferences(prefs)
	if err == nil {
		err = checkBatch(opID, region, accounts, params)
	}
	if err != nil {
		return "", fmt.Errorf("%s (operation %q): %w", what, opID, err)
	}
	overrides, keep := batchOverrides(accounts, params)
	in := &cloudformation.UpdateStackInstancesInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		Regions:              []string{region},
		ParameterOverrides:   overrides,
		OperationId:          aws.String(opID),
		OperationPreferences: operationPreferences(prefs),
		CallAs:               m.opts.CallAs,
	}
	in.Accounts, in.DeploymentTargets = m.targetsOf(accounts)
	id, err := m.issue(ctx, opID, what, func(ctx context.Context) (*string, error) {
		out, err := m.cfn.UpdateStackInstances(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.OperationId, nil
	})
	if err != nil || !m.opts.ApplyUpdates {
		return id, err
	}
	return id, m.applyBatch(ctx, id, region, accounts, params, keep, prefs)
}

// batchPreferences validates prefs and fills in the manager's defaults.
func (m *Manager) batchPreferences(p Preferences) (Preferences, error) {
	if p.FailureToleranceCount < 0 {
		return p, fmt.Errorf("FailureToleranceCount %d is negative", p.FailureToleranceCount)
	}
	if p.MaxConcurrentCount == 0 {
		ft := p.FailureToleranceCount
		p = m.opts.Preferences
		if ft != 0 {
			p.FailureToleranceCount = ft
		}
	}
	if limit := m.opts.ConcurrencyLimit; p.MaxConcurrentCount < 1 || p.MaxConcurrentCount > limit {
		return p, fmt.Errorf("MaxConcurrentCount %d is outside 1..%d (StackSets deploy at most %d instances of a stack set at once)",
			p.MaxConcurrentCount, limit, limit)
	}
	return p, nil
}

var accountID = regexp.MustCompile(`^[0-9]{12}$`)

// checkBatch refuses what StackSets would refuse, or what one list of
// overrides cannot say.
func checkBatch(opID, region string, accounts []string, params map[string]map[string]string) error {
	switch {
	case opID == "":
		return errors.New("no operation id")
	case region == "":
		return errors.New("no region")
	case len(accounts) == 0:
		return errors.New("no accounts")
	}
	first := slices.Sorted(maps.Keys(params[accounts[0]]))
	for _, a := range accounts {
		if !accountID.MatchString(a) {
			return fmt.Errorf("%q is not an account id", a)
		}
		names := slices.Sorted(maps.Keys(params[a]))
		if len(names) == 0 {
			// An empty override list would set every parameter back to
			// the stack set's value.
			return fmt.Errorf("no parameters for account %s", a)
		}
		if !slices.Equal(names, first) {
			return fmt.Errorf("account %s has parameters %s, account %s has %s: one operation sets the same parameters on every instance",
				accounts[0], strings.Join(first, ","), a, strings.Join(names, ","))
		}
	}
	return nil
}

// batchOverrides turns per-account parameters into one override list: a
// value where all accounts agree, UsePreviousValue (listed in keep) where
// they differ. A parameter left out would go back to the stack set's value.
func batchOverrides(accounts []string, params map[string]map[string]string) ([]cfntypes.Parameter, map[string]bool) {
	keep := map[string]bool{}
	first := params[accounts[0]]
	out := make([]cfntypes.Parameter, 0, len(first))
	for _, k := range slices.Sorted(maps.Keys(first)) {
		common := true
		for _, a := range accounts[1:] {
			if params[a][k] != first[k] {
				common = false
				break
			}
		}
		if common {
			out = append(out, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(first[k])})
			continue
		}
		keep[k] = true
		out = append(out, cfntypes.Parameter{ParameterKey: aws.String(k), UsePreviousValue: aws.Bool(true)})
	}
	return out, keep
}

// cancelledReason is what StackSets report for the instances of an
// operation that stopped at its failure tolerance before reaching them.
const cancelledReason = "Cancelled since failure tolerance has exceeded"

// Cancelled reports whether an account's reason in an OperationError (or
// OperationFailures) says the operation never reached the account: it was
// cancelled once the failure tolerance was exceeded. Its member stack then
// tells nothing about this operation.
func Cancelled(reason string) bool { return strings.Contains(reason, cancelledReason) }

// applyBatch does on the emulator what StackSets do with a batched update
// (see applyParams): accounts in order, at most
// min(MaxConcurrentCount, FailureToleranceCount+1) at once, as in the
// default STRICT_FAILURE_TOLERANCE mode, and none started once more than
// FailureToleranceCount have failed. The reasons of failed accounts are
// kept for Wait.
func (m *Manager) applyBatch(ctx context.Context, opID, region string, accounts []string, params map[string]map[string]string, keep map[string]bool, p Preferences) error {
	tolerance := int(p.FailureToleranceCount)
	concurrency := min(int(p.MaxConcurrentCount), tolerance+1)
	if p.SoftFailureTolerance {
		concurrency = int(p.MaxConcurrentCount)
	}
	sem := make(chan struct{}, max(concurrency, 1))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failed  = map[string]string{}
		updated int
		rest    []string // not attempted: the tolerance was exceeded
	)
	tooMany := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failed) > tolerance
	}
	for i, a := range accounts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if tooMany() {
			<-sem
			rest = accounts[i:]
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			changed, err := m.applyParams(ctx, a, region, params[a], keep)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failed[a] = region + ": " + err.Error()
			case changed:
				updated++
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// Not the accounts' fault: the caller re-issues the operation,
		// and the accounts done already are skipped then.
		return fmt.Errorf("apply operation %s: %w", opID, err)
	}
	m.log.InfoContext(ctx, "batched update applied to member stacks", "operation", opID, "region", region,
		"accounts", len(accounts), "updated", updated, "failed", len(failed), "not_attempted", len(rest))
	if len(failed) == 0 {
		return nil
	}
	for _, a := range rest {
		failed[a] = region + ": " + cancelledReason
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.applyFailures == nil {
		m.applyFailures = map[string]map[string]string{}
	}
	m.applyFailures[opID] = failed
	return nil
}

// appliedFailures returns why accounts failed in an operation the manager
// applied itself, or nil.
func (m *Manager) appliedFailures(opID string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.applyFailures[opID])
}
