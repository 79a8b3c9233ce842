package stacksets

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/awsx"
)

// cfnAPI lists the CloudFormation calls the manager makes in the
// administrator (management or delegated admin) account;
// *cloudformation.Client satisfies it.
type cfnAPI interface {
	CreateStackSet(ctx context.Context, in *cloudformation.CreateStackSetInput, opts ...func(*cloudformation.Options)) (*cloudformation.CreateStackSetOutput, error)
	UpdateStackSet(ctx context.Context, in *cloudformation.UpdateStackSetInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateStackSetOutput, error)
	DescribeStackSet(ctx context.Context, in *cloudformation.DescribeStackSetInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStackSetOutput, error)
	CreateStackInstances(ctx context.Context, in *cloudformation.CreateStackInstancesInput, opts ...func(*cloudformation.Options)) (*cloudformation.CreateStackInstancesOutput, error)
	UpdateStackInstances(ctx context.Context, in *cloudformation.UpdateStackInstancesInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateStackInstancesOutput, error)
	DeleteStackInstances(ctx context.Context, in *cloudformation.DeleteStackInstancesInput, opts ...func(*cloudformation.Options)) (*cloudformation.DeleteStackInstancesOutput, error)
	ListStackInstances(ctx context.Context, in *cloudformation.ListStackInstancesInput, opts ...func(*cloudformation.Options)) (*cloudformation.ListStackInstancesOutput, error)
	DescribeStackSetOperation(ctx context.Context, in *cloudformation.DescribeStackSetOperationInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStackSetOperationOutput, error)
	ListStackSetOperations(ctx context.Context, in *cloudformation.ListStackSetOperationsInput, opts ...func(*cloudformation.Options)) (*cloudformation.ListStackSetOperationsOutput, error)
	ListStackSetOperationResults(ctx context.Context, in *cloudformation.ListStackSetOperationResultsInput, opts ...func(*cloudformation.Options)) (*cloudformation.ListStackSetOperationResultsOutput, error)
}

// stacksAPI is what is done in a member account: reading the instance's
// stack (outputs, and the events of a failure), and, on the emulator only,
// applying an instance update (see Options.ApplyUpdates).
// *cloudformation.Client satisfies it.
type stacksAPI interface {
	DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
	DescribeStackEvents(ctx context.Context, in *cloudformation.DescribeStackEventsInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error)
	UpdateStack(ctx context.Context, in *cloudformation.UpdateStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error)
}

// MemberStacks returns a CloudFormation client acting in account and region.
type MemberStacks func(account, region string) stacksAPI

// Sentinels callers branch on; returned errors wrap them (errors.Is).
var (
	// ErrNotFound: the operation, stack set or stack instance does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBusy: another operation is running on the stack set (StackSets run
	// one at a time); try again after it finished.
	ErrBusy = errors.New("stack set busy")
)

// PermissionModel says who deploys into member accounts.
type PermissionModel string

const (
	// SelfManaged: the administration role assumes ExecutionRoleName in each
	// target account. Targets are account ids. Works in moto.
	SelfManaged PermissionModel = "SELF_MANAGED"
	// ServiceManaged: Organizations' trusted access deploys. Targets are OUs
	// narrowed to the given accounts (AccountFilterType INTERSECTION).
	ServiceManaged PermissionModel = "SERVICE_MANAGED"
)

// Preferences bound how an operation fans out. The defaults deploy one
// account at a time and stop at the first failure; rollout waves raise them.
type Preferences struct {
	// MaxConcurrentCount is how many accounts deploy at once (1 when zero;
	// StackSets allow at most 100 concurrent instances per stack set).
	MaxConcurrentCount int32
	// FailureToleranceCount is how many accounts may fail before the
	// operation stops (0: stop at the first).
	FailureToleranceCount int32
	// SoftFailureTolerance runs MaxConcurrentCount accounts at once
	// whatever the tolerance (StackSets' SOFT_FAILURE_TOLERANCE mode); in
	// the default strict mode at most FailureToleranceCount+1 run at once,
	// which would make a wave allowed no failures one account at a time.
	SoftFailureTolerance bool
}

// DefaultStackSetName is the tenant app's stack set when Options name none.
const DefaultStackSetName = "silo-tenant-app"

// Options configure a Manager. Quotas and names are configuration, not
// constants: the zero values get the documented defaults.
type Options struct {
	// Accounts, when set, supplies member-account credentials (shared with
	// the rest of the control plane, so each account is assumed once).
	Accounts *awsx.Accounts
	// StackSetName names the tenant app's one stack set ("silo-tenant-app").
	StackSetName string
	// Bucket is the artifact bucket (required for Publish).
	Bucket string
	// CreateBucket makes Publish ensure the bucket exists with its settings
	// (local mode; in AWS the control-plane stack creates it).
	CreateBucket bool
	// URLSuffix is the partition's domain in S3 URLs ("amazonaws.com").
	URLSuffix string
	// Partition of ARNs ("aws").
	Partition string
	// ManagementAccountID is the administrator account, for the
	// self-managed administration role's ARN.
	ManagementAccountID string
	// PermissionModel is SelfManaged when empty.
	PermissionModel PermissionModel
	// AdministrationRoleName is the self-managed administration role in
	// the management account ("AWSCloudFormationStackSetAdministrationRole").
	AdministrationRoleName string
	// ExecutionRoleName is the self-managed role in each member account
	// (awsx.MemberRole, "OrganizationAccountAccessRole").
	ExecutionRoleName string
	// OrganizationalUnits are the service-managed deployment targets; each
	// call narrows them to one account.
	OrganizationalUnits []string
	// CallAs is sent with service-managed calls (DELEGATED_ADMIN when silo
	// runs in a delegated administrator account); empty means SELF.
	CallAs cfntypes.CallAs
	// Parameters are the stack set's own parameter values. Every instance
	// overrides all of them, but AWS wants values for parameters without
	// defaults when the stack set is created.
	Parameters map[string]string
	// Preferences for every operation.
	Preferences Preferences
	// PollMin and PollMax bound Wait's backoff (1s and 30s when zero).
	PollMin, PollMax time.Duration
	// ConcurrencyLimit is the most accounts one operation may deploy at
	// once (StackSets' quota: 100 instances per stack set; 100 when zero).
	// UpdateInstances refuses a higher MaxConcurrentCount.
	ConcurrencyLimit int32
	// ApplyUpdates makes UpdateInstance and UpdateInstances also update the
	// instances' stacks in the member accounts with the new parameters.
	// Only for the emulator: moto records an UpdateStackInstances but
	// changes no resources (AWS-FACTS.md), while its plain UpdateStack
	// does, so local mode really runs the build a preview or a rollout
	// deployed.
	ApplyUpdates bool
	// Progress, when set, is called by Wait on every status change.
	Progress func(Result)
}

// Manager publishes releases and manages the tenant app's stack set and its
// instances, one per tenant account.
type Manager struct {
	cfn     cfnAPI
	s3      s3API
	members MemberStacks
	log     *slog.Logger
	opts    Options
	region  string

	mu sync.Mutex
	// applyFailures holds, by operation id, why accounts failed in the
	// batched updates the manager applied itself (ApplyUpdates); Wait
	// reports them as AWS reports an operation's failed instances.
	applyFailures map[string]map[string]string
}

// New returns a Manager for region (the stack set's home region) using the
// given clients; see NewFromConfig for the usual wiring.
func New(cfn cfnAPI, store s3API, members MemberStacks, region string, log *slog.Logger, o Options) *Manager {
	if o.StackSetName == "" {
		o.StackSetName = DefaultStackSetName
	}
	if o.URLSuffix == "" {
		o.URLSuffix = "amazonaws.com"
	}
	if o.Partition == "" {
		o.Partition = "aws"
	}
	if o.PermissionModel == "" {
		o.PermissionModel = SelfManaged
	}
	if o.AdministrationRoleName == "" {
		o.AdministrationRoleName = "AWSCloudFormationStackSetAdministrationRole"
	}
	if o.ExecutionRoleName == "" {
		o.ExecutionRoleName = awsx.MemberRole
	}
	if o.Preferences.MaxConcurrentCount == 0 {
		o.Preferences.MaxConcurrentCount = 1
	}
	if o.ConcurrencyLimit == 0 {
		o.ConcurrencyLimit = 100
	}
	if o.PollMin == 0 {
		o.PollMin = time.Second
	}
	if o.PollMax == 0 {
		o.PollMax = 30 * time.Second
	}
	return &Manager{cfn: cfn, s3: store, members: members, log: log, opts: o, region: region}
}

// NewFromConfig wires a Manager with real clients: cfg acts as the
// administrator account, member stacks are read through
// OrganizationAccountAccessRole.
func NewFromConfig(cfg aws.Config, log *slog.Logger, o Options) *Manager {
	accounts := o.Accounts
	if accounts == nil {
		accounts = awsx.NewAccounts(cfg, sts.NewFromConfig(cfg), awsx.AccountsOptions{Partition: o.Partition})
	}
	store := s3.NewFromConfig(cfg, func(so *s3.Options) { so.UsePathStyle = awsx.Emulated(cfg) })
	members := func(account, region string) stacksAPI {
		mc := accounts.Config(account)
		mc.Region = region
		return cloudformation.NewFromConfig(mc)
	}
	return New(cloudformation.NewFromConfig(cfg), store, members, cfg.Region, log, o)
}

// StackSetName is the managed stack set's name.
func (m *Manager) StackSetName() string { return m.opts.StackSetName }
