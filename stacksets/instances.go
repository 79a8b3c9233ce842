package stacksets

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Every instance call passes all of the tenant's parameters as overrides:
// in AWS an override list replaces nothing it does not name, but moto
// replaces the stack set's parameters with it, and a complete list is the
// one request both read the same way.

// AddInstance deploys the stack set into account and region with params
// and returns the operation's id. opID is the caller's deterministic id
// (see OperationID): re-issuing it after a crash returns the same
// operation. An instance that exists already is not an error: its
// parameters are brought to params by an update instead.
func (m *Manager) AddInstance(ctx context.Context, opID, account, region string, params map[string]string) (string, error) {
	if opID == "" {
		return "", fmt.Errorf("add stack instance %s/%s: no operation id", account, region)
	}
	if _, found, err := m.instance(ctx, account, region); err != nil {
		return "", err
	} else if found {
		m.log.InfoContext(ctx, "stack instance exists, updating it", "account", account, "region", region, "operation", opID)
		return m.UpdateInstance(ctx, opID, account, region, params)
	}
	in := &cloudformation.CreateStackInstancesInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		Regions:              []string{region},
		ParameterOverrides:   parameters(params),
		OperationId:          aws.String(opID),
		OperationPreferences: m.preferences(),
		CallAs:               m.opts.CallAs,
	}
	in.Accounts, in.DeploymentTargets = m.targetOf(account)
	return m.issue(ctx, opID, "add stack instance "+account+"/"+region, func(ctx context.Context) (*string, error) {
		out, err := m.cfn.CreateStackInstances(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.OperationId, nil
	})
}

// UpdateInstance sets the parameters of the instance in account and region
// to params (all of them) and returns the operation's id. In AWS this also
// brings the instance to the stack set's current template.
func (m *Manager) UpdateInstance(ctx context.Context, opID, account, region string, params map[string]string) (string, error) {
	if opID == "" {
		return "", fmt.Errorf("update stack instance %s/%s: no operation id", account, region)
	}
	in := &cloudformation.UpdateStackInstancesInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		Regions:              []string{region},
		ParameterOverrides:   parameters(params),
		OperationId:          aws.String(opID),
		OperationPreferences: m.preferences(),
		CallAs:               m.opts.CallAs,
	}
	in.Accounts, in.DeploymentTargets = m.targetOf(account)
	id, err := m.issue(ctx, opID, "update stack instance "+account+"/"+region, func(ctx context.Context) (*string, error) {
		out, err := m.cfn.UpdateStackInstances(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.OperationId, nil
	})
	if err != nil || !m.opts.ApplyUpdates {
		return id, err
	}
	return id, m.applyUpdate(ctx, id, account, region, params)
}

// applyUpdate does on the emulator what StackSets do in AWS after an
// instance update: update the member stack with the new parameters. As in
// AWS, a member stack that refuses the update fails the operation, not the
// call: Wait reports the account's reason (as applyBatch does). A member
// stack that is missing failed to be created again (the emulator creates
// a failed instance's stack on its update), and the operation reports that
// itself. Only the caller's context ending or throttling is an error, for
// the caller to issue the same operation again.
func (m *Manager) applyUpdate(ctx context.Context, opID, account, region string, params map[string]string) error {
	_, err := m.applyParams(ctx, account, region, params, nil)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil || awsx.IsThrottled(err):
		return err
	case errors.Is(err, ErrNotFound):
		m.log.InfoContext(ctx, "no member stack to apply the update to", "account", account, "region", region, "operation", opID)
		return nil
	}
	m.log.WarnContext(ctx, "member stack refused the update", "account", account, "region", region, "operation", opID, "error", err)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.applyFailures == nil {
		m.applyFailures = map[string]map[string]string{}
	}
	if m.applyFailures[opID] == nil {
		m.applyFailures[opID] = map[string]string{}
	}
	m.applyFailures[opID][account] = region + ": " + err.Error()
	return nil
}

// applyParams brings the member stack of account in region to params, the
// way StackSets bring an instance to its overrides; the parameters in keep
// hold their present value instead (UsePreviousValue). It reads the stack
// first and leaves it alone when it runs those parameters already: an
// operation re-issued after a crash must not update an account twice. It
// reports whether it updated the stack. Emulator only (Options.ApplyUpdates).
func (m *Manager) applyParams(ctx context.Context, account, region string, params map[string]string, keep map[string]bool) (bool, error) {
	stacks := m.members(account, region)
	name := m.memberStack()
	present, err := m.memberParameters(ctx, stacks, account, region)
	if err != nil {
		return false, fmt.Errorf("apply the update to %s/%s: %w", account, region, err)
	}
	want := maps.Clone(params)
	for k := range keep {
		if v, ok := present[k]; ok && v != want[k] {
			// What AWS does with UsePreviousValue; the caller asked for a
			// change that one batched operation cannot make.
			m.log.WarnContext(ctx, "batched update keeps the instance's present value", "account", account, "region", region,
				"parameter", k, "present", v, "requested", want[k])
			want[k] = v
		}
	}
	if maps.Equal(present, want) {
		m.log.DebugContext(ctx, "member stack already has the parameters", "account", account, "region", region, "stack", name)
		return false, nil
	}
	_, err = stacks.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName: aws.String(name), UsePreviousTemplate: aws.Bool(true), Parameters: parameters(want),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityNamedIam},
	})
	if err != nil && !strings.Contains(err.Error(), "No updates are to be performed") {
		return false, fmt.Errorf("apply the update to stack %s in %s/%s: %w", name, account, region, err)
	}
	return err == nil, nil
}

// memberStack is what the emulator names a self-managed instance's stack in
// its account. In AWS the name is StackSet-<name>-<uuid>, given by the
// instance's StackId.
func (m *Manager) memberStack() string { return "StackSet:" + m.opts.StackSetName }

// memberParameters reads the parameters of the member stack (memberStack)
// through stacks, which act in account and region.
func (m *Manager) memberParameters(ctx context.Context, stacks stacksAPI, account, region string) (map[string]string, error) {
	name := m.memberStack()
	out, err := stacks.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	switch {
	case awsx.IsNotFound(err):
		return nil, fmt.Errorf("stack %s in %s/%s: %w: %w", name, account, region, ErrNotFound, err)
	case err != nil:
		return nil, fmt.Errorf("describe stack %s in %s/%s: %w", name, account, region, err)
	case len(out.Stacks) == 0:
		return nil, fmt.Errorf("stack %s in %s/%s: %w", name, account, region, ErrNotFound)
	}
	params := make(map[string]string, len(out.Stacks[0].Parameters))
	for _, p := range out.Stacks[0].Parameters {
		params[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	return params, nil
}

// InstanceParameters returns the parameters the instance in account and
// region runs with, read from its stack in the member account. It reads the
// stack the emulator makes ("StackSet:<stack set name>"): its user is local
// mode's app host, which loads the code package the instance's CodeBucket
// and CodeKey name. A missing stack is an error wrapping ErrNotFound.
func (m *Manager) InstanceParameters(ctx context.Context, account, region string) (map[string]string, error) {
	params, err := m.memberParameters(ctx, m.members(account, region), account, region)
	if err != nil {
		return nil, fmt.Errorf("parameters of instance %s/%s: %w", account, region, err)
	}
	return params, nil
}

// RemoveInstance deletes the instance in account and region and returns the
// operation's id. With retainStacks the stack and its resources stay in the
// account (detached from the stack set), for example to keep a tenant's
// data while the account is handed back.
func (m *Manager) RemoveInstance(ctx context.Context, opID, account, region string, retainStacks bool) (string, error) {
	if opID == "" {
		return "", fmt.Errorf("remove stack instance %s/%s: no operation id", account, region)
	}
	in := &cloudformation.DeleteStackInstancesInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		Regions:              []string{region},
		RetainStacks:         aws.Bool(retainStacks),
		OperationId:          aws.String(opID),
		OperationPreferences: m.preferences(),
		CallAs:               m.opts.CallAs,
	}
	in.Accounts, in.DeploymentTargets = m.targetOf(account)
	return m.issue(ctx, opID, "remove stack instance "+account+"/"+region, func(ctx context.Context) (*string, error) {
		out, err := m.cfn.DeleteStackInstances(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.OperationId, nil
	})
}

// instance finds the stack instance of account in region. It lists rather
// than describes: the list answers "none" for a missing instance where
// moto's DescribeStackInstance fails with a 500 that the SDK retries.
func (m *Manager) instance(ctx context.Context, account, region string) (cfntypes.StackInstanceSummary, bool, error) {
	p := cloudformation.NewListStackInstancesPaginator(m.cfn, &cloudformation.ListStackInstancesInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		StackInstanceAccount: aws.String(account),
		StackInstanceRegion:  aws.String(region),
		CallAs:               m.opts.CallAs,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return cfntypes.StackInstanceSummary{}, false, fmt.Errorf("list stack instances of %s in %s: %w", account, region, err)
		}
		// The filters are applied here too: moto ignores them.
		for _, s := range page.Summaries {
			if aws.ToString(s.Account) == account && aws.ToString(s.Region) == region {
				return s, true, nil
			}
		}
	}
	return cfntypes.StackInstanceSummary{}, false, nil
}

// InstanceOutputs reads the outputs of the instance's stack in account and
// region, with the member account's own credentials. The tenant's endpoint
// is output "ApiUrl".
func (m *Manager) InstanceOutputs(ctx context.Context, account, region string) (map[string]string, error) {
	stack, err := m.instanceStack(ctx, account, region)
	if err != nil {
		return nil, fmt.Errorf("outputs of %s/%s: %w", account, region, err)
	}
	outputs := make(map[string]string, len(stack.Outputs))
	for _, o := range stack.Outputs {
		outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return outputs, nil
}

// InstanceStack returns the id of the instance's stack in account and
// region (what DescribeStackResources in the member account takes), for
// those who inspect what the instance made (the isolation audit). A missing
// instance or stack is an error wrapping ErrNotFound.
func (m *Manager) InstanceStack(ctx context.Context, account, region string) (string, error) {
	stack, err := m.instanceStack(ctx, account, region)
	if err != nil {
		return "", fmt.Errorf("stack of %s/%s: %w", account, region, err)
	}
	if id := aws.ToString(stack.StackId); id != "" {
		return id, nil
	}
	return aws.ToString(stack.StackName), nil
}

// instanceStack describes the instance's stack in account and region with
// the member account's own credentials.
func (m *Manager) instanceStack(ctx context.Context, account, region string) (*cfntypes.Stack, error) {
	inst, found, err := m.instance(ctx, account, region)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("stack instance: %w", ErrNotFound)
	}
	stacks := m.members(account, region)
	// In AWS the instance's StackId names its stack. moto reports an id
	// that names no stack and calls a self-managed instance's stack
	// "StackSet:<stack set name>", so that name is the fallback.
	for _, name := range []string{aws.ToString(inst.StackId), m.memberStack()} {
		if name == "" {
			continue
		}
		out, err := stacks.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if awsx.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe stack %s: %w", name, err)
		}
		if len(out.Stacks) > 0 {
			return &out.Stacks[0], nil
		}
	}
	return nil, fmt.Errorf("stack %s: %w", aws.ToString(inst.StackId), ErrNotFound)
}

// targetOf names one account the way the permission model wants it: by id
// (self-managed) or as a deployment target within the OUs (service-managed).
func (m *Manager) targetOf(account string) ([]string, *cfntypes.DeploymentTargets) {
	return m.targetsOf([]string{account})
}

// targetsOf names accounts the way the permission model wants them.
func (m *Manager) targetsOf(accounts []string) ([]string, *cfntypes.DeploymentTargets) {
	if m.opts.PermissionModel == ServiceManaged {
		return nil, m.targets(accounts)
	}
	return slices.Clone(accounts), nil
}

// HasInstance reports whether the stack set has an instance in account and
// region (a reset checks that a released preview left none behind).
func (m *Manager) HasInstance(ctx context.Context, account, region string) (bool, error) {
	_, found, err := m.instance(ctx, account, region)
	return found, err
}
