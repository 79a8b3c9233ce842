package stacksets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Rollout scopes a stack set update to some accounts, in some regions. An
// empty Accounts list updates every instance.
type Rollout struct {
	// OperationID makes the update idempotent; see OperationID.
	OperationID string
	Accounts    []string
	Regions     []string
}

// EnsureStackSet makes the stack set exist with rel's template. It creates
// the stack set when missing (synchronous, no operation: it returns ""),
// does nothing when the template is already rel's (""), and otherwise
// updates the template of the instances r targets and returns the
// operation's id to Wait on. Instances outside r keep running the old
// template until a later rollout reaches them: that is how waves work.
func (m *Manager) EnsureStackSet(ctx context.Context, rel Release, r Rollout) (string, error) {
	out, err := m.cfn.DescribeStackSet(ctx, &cloudformation.DescribeStackSetInput{
		StackSetName: aws.String(m.opts.StackSetName), CallAs: m.opts.CallAs,
	})
	switch {
	case awsx.IsNotFound(err):
		return "", m.createStackSet(ctx, rel)
	case err != nil:
		return "", fmt.Errorf("describe stack set %s: %w", m.opts.StackSetName, err)
	}
	ss := out.StackSet
	if aws.ToString(ss.Description) == describe(rel) || sha([]byte(aws.ToString(ss.TemplateBody))) == rel.TemplateSHA256 {
		m.log.DebugContext(ctx, "stack set up to date", "stack_set", m.opts.StackSetName, "release", rel.ID)
		return "", nil
	}
	if r.OperationID == "" {
		return "", fmt.Errorf("update stack set %s to release %s: no operation id", m.opts.StackSetName, rel.ID)
	}
	in := &cloudformation.UpdateStackSetInput{
		StackSetName:         aws.String(m.opts.StackSetName),
		Description:          aws.String(describe(rel)),
		Capabilities:         capabilities,
		Parameters:           parameters(m.opts.Parameters),
		OperationId:          aws.String(r.OperationID),
		OperationPreferences: m.preferences(),
		CallAs:               m.opts.CallAs,
	}
	m.setTemplate(&in.TemplateURL, &in.TemplateBody, rel)
	if len(r.Accounts) > 0 {
		in.Regions = r.Regions
		if len(in.Regions) == 0 {
			in.Regions = []string{m.region}
		}
		if m.opts.PermissionModel == ServiceManaged {
			in.DeploymentTargets = m.targets(r.Accounts)
		} else {
			in.Accounts = r.Accounts
		}
	}
	if m.opts.PermissionModel == SelfManaged {
		in.AdministrationRoleARN = aws.String(m.adminRoleARN())
		in.ExecutionRoleName = aws.String(m.opts.ExecutionRoleName)
	}
	return m.issue(ctx, r.OperationID, "update stack set to release "+rel.ID, func(ctx context.Context) (*string, error) {
		out, err := m.cfn.UpdateStackSet(ctx, in)
		if err != nil {
			return nil, err
		}
		return out.OperationId, nil
	})
}

func (m *Manager) createStackSet(ctx context.Context, rel Release) error {
	in := &cloudformation.CreateStackSetInput{
		StackSetName:     aws.String(m.opts.StackSetName),
		Description:      aws.String(describe(rel)),
		Capabilities:     capabilities,
		Parameters:       parameters(m.opts.Parameters),
		PermissionModel:  cfntypes.PermissionModels(m.opts.PermissionModel),
		ManagedExecution: &cfntypes.ManagedExecution{Active: aws.Bool(true)},
		CallAs:           m.opts.CallAs,
	}
	m.setTemplate(&in.TemplateURL, &in.TemplateBody, rel)
	if m.opts.PermissionModel == ServiceManaged {
		// silo places every account itself; joining an OU must not deploy.
		in.AutoDeployment = &cfntypes.AutoDeployment{Enabled: aws.Bool(false)}
	} else {
		in.AdministrationRoleARN = aws.String(m.adminRoleARN())
		in.ExecutionRoleName = aws.String(m.opts.ExecutionRoleName)
	}
	// A create retried after a lost answer fails with NameAlreadyExists:
	// the stack set is there, which is all this call promises.
	if _, err := m.cfn.CreateStackSet(ctx, in); err != nil && !awsx.IsAlreadyExists(err) {
		return fmt.Errorf("create stack set %s: %w", m.opts.StackSetName, err)
	}
	m.log.InfoContext(ctx, "stack set created", "stack_set", m.opts.StackSetName, "release", rel.ID,
		"permission_model", string(m.opts.PermissionModel))
	return nil
}

// capabilities: the tenant stack names its IAM role.
var capabilities = []cfntypes.Capability{cfntypes.CapabilityCapabilityNamedIam}

// describe is the stack set's description; it records the release.
func describe(rel Release) string {
	return "silo tenant application, release " + rel.ID + " (template sha256 " + rel.TemplateSHA256 + ")"
}

// setTemplate passes the template by URL when the release has one (no size
// limit worth the name), inline otherwise.
func (m *Manager) setTemplate(url, body **string, rel Release) {
	if rel.TemplateURL != "" {
		*url = aws.String(rel.TemplateURL)
		return
	}
	*body = aws.String(rel.TemplateBody)
}

func (m *Manager) adminRoleARN() string {
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", m.opts.Partition, m.opts.ManagementAccountID, m.opts.AdministrationRoleName)
}

// preferences: accounts in parallel up to MaxConcurrentCount, regions one
// after the other.
func (m *Manager) preferences() *cfntypes.StackSetOperationPreferences {
	return operationPreferences(m.opts.Preferences)
}

func operationPreferences(p Preferences) *cfntypes.StackSetOperationPreferences {
	out := &cfntypes.StackSetOperationPreferences{
		MaxConcurrentCount:    aws.Int32(p.MaxConcurrentCount),
		FailureToleranceCount: aws.Int32(p.FailureToleranceCount),
		RegionConcurrencyType: cfntypes.RegionConcurrencyTypeSequential,
	}
	if p.SoftFailureTolerance {
		out.ConcurrencyMode = cfntypes.ConcurrencyModeSoftFailureTolerance
	}
	return out
}

// targets narrows the service-managed OUs to accounts.
func (m *Manager) targets(accounts []string) *cfntypes.DeploymentTargets {
	return &cfntypes.DeploymentTargets{
		OrganizationalUnitIds: slices.Clone(m.opts.OrganizationalUnits),
		Accounts:              slices.Clone(accounts),
		AccountFilterType:     cfntypes.AccountFilterTypeIntersection,
	}
}

// parameters turns a map into CloudFormation parameters, sorted by key so
// requests are stable.
func parameters(p map[string]string) []cfntypes.Parameter {
	out := make([]cfntypes.Parameter, 0, len(p))
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(p[k])})
	}
	return out
}

// issue starts an operation under the caller's id. When the id was used
// before (the caller crashed after issuing it and is now re-issuing), AWS
// answers OperationIdAlreadyExists: the operation exists, and the caller
// waits on it like on a new one.
func (m *Manager) issue(ctx context.Context, opID, what string, call func(context.Context) (*string, error)) (string, error) {
	id, err := call(ctx)
	switch {
	case err == nil:
	case awsx.IsDuplicateOperation(err):
		m.log.InfoContext(ctx, "stack set operation already issued", "stack_set", m.opts.StackSetName, "operation", opID, "what", what)
		return opID, nil
	case awsx.IsOperationInProgress(err):
		return "", fmt.Errorf("%s (operation %s): %w: %w", what, opID, ErrBusy, err)
	case awsx.IsNotFound(err):
		return "", fmt.Errorf("%s (operation %s): %w: %w", what, opID, ErrNotFound, err)
	default:
		return "", fmt.Errorf("%s (operation %s): %w", what, opID, err)
	}
	got := aws.ToString(id)
	if got != opID {
		// moto ignores caller-supplied ids on instance operations; AWS
		// always echoes them.
		m.log.DebugContext(ctx, "operation id assigned by the service", "requested", opID, "operation", got)
	}
	m.log.InfoContext(ctx, "stack set operation started", "stack_set", m.opts.StackSetName, "operation", got, "what", what)
	return got, nil
}

// OperationID returns a deterministic StackSet operation id for one step of
// one tenant's work, such as OperationID("acme", "deploy", 1). The reconciler
// records it before issuing the call; after a crash it issues the call again
// with the same id and gets the same operation. A new attempt (after a
// failure) takes a new attempt number. Ids satisfy StackSets' pattern
// [a-zA-Z0-9][-a-zA-Z0-9]* and its 128-character limit.
func OperationID(tenant, step string, attempt int) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '-'
		}, s)
	}
	id := "silo-" + clean(tenant) + "-" + clean(step) + "-" + strconv.Itoa(attempt)
	if len(id) > 128 {
		// Keep it unique: a hash of the whole input replaces the tail.
		h := sha([]byte(tenant + "\x00" + step + "\x00" + strconv.Itoa(attempt)))[:16]
		id = id[:128-17] + "-" + h
	}
	return id
}
