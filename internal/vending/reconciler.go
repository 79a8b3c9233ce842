package vending

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// orgAPI lists the Organizations calls the reconciler makes.
type orgAPI interface {
	guardAPI
	CreateAccount(ctx context.Context, in *organizations.CreateAccountInput, opts ...func(*organizations.Options)) (*organizations.CreateAccountOutput, error)
	DescribeCreateAccountStatus(ctx context.Context, in *organizations.DescribeCreateAccountStatusInput, opts ...func(*organizations.Options)) (*organizations.DescribeCreateAccountStatusOutput, error)
	ListCreateAccountStatus(ctx context.Context, in *organizations.ListCreateAccountStatusInput, opts ...func(*organizations.Options)) (*organizations.ListCreateAccountStatusOutput, error)
	ListAccounts(ctx context.Context, in *organizations.ListAccountsInput, opts ...func(*organizations.Options)) (*organizations.ListAccountsOutput, error)
	MoveAccount(ctx context.Context, in *organizations.MoveAccountInput, opts ...func(*organizations.Options)) (*organizations.MoveAccountOutput, error)
	CloseAccount(ctx context.Context, in *organizations.CloseAccountInput, opts ...func(*organizations.Options)) (*organizations.CloseAccountOutput, error)
	TagResource(ctx context.Context, in *organizations.TagResourceInput, opts ...func(*organizations.Options)) (*organizations.TagResourceOutput, error)
}

// Deployer manages the tenant's stack instance; *stacksets.Manager is one.
type Deployer interface {
	// AddInstance starts (or, with the same opID, finds) the operation that
	// creates the account's stack instance with params, and returns its id.
	AddInstance(ctx context.Context, opID, account, region string, params map[string]string) (string, error)
	// UpdateInstance starts (or finds) the operation that sets the
	// instance's parameters to params.
	UpdateInstance(ctx context.Context, opID, account, region string, params map[string]string) (string, error)
	// RemoveInstance starts (or finds) the operation deleting the instance.
	RemoveInstance(ctx context.Context, opID, account, region string, retainStacks bool) (string, error)
	// Wait blocks until the operation ends; a failure is a
	// *stacksets.OperationError naming each account's reason.
	Wait(ctx context.Context, opID string) (stacksets.Result, error)
	// InstanceOutputs returns the outputs of the account's stack.
	InstanceOutputs(ctx context.Context, account, region string) (map[string]string, error)
	// StackFailure returns why the account's member stack failed, from its
	// events: each failed resource's ResourceStatusReason, most relevant
	// first, or "" when none failed; a missing instance or stack wraps
	// stacksets.ErrNotFound.
	StackFailure(ctx context.Context, account, region string) (string, error)
	// OperationStatus describes an operation once, without waiting.
	OperationStatus(ctx context.Context, opID string) (stacksets.Result, error)
	// OperationFailures says why each account of an operation did not
	// succeed.
	OperationFailures(ctx context.Context, opID string) (map[string]string, error)
}

// Prober checks that a new account is usable (package vending's readiness
// gate; see Readiness).
type Prober interface {
	Ready(ctx context.Context, account string) error
}

// Cleaner removes and inventories what a tenant owned in its account.
type Cleaner interface {
	Clean(ctx context.Context, t *registry.Tenant) (*DeletionReport, error)
}

// EndpointFunc turns a deployed tenant's stack outputs into its endpoint.
// In AWS it is the ApiUrl output; local mode serves the app itself.
type EndpointFunc func(ctx context.Context, t *registry.Tenant, outputs map[string]string) (string, error)

// Publisher sends tenant events (EventBridge in AWS and locally).
type Publisher interface {
	Publish(ctx context.Context, kind string, t *registry.Tenant)
}

// Deps are the reconciler's collaborators.
type Deps struct {
	Registry  *registry.Store
	Org       orgAPI
	Deployer  Deployer
	Readiness Prober
	Cleaner   Cleaner
	Endpoint  EndpointFunc
	Events    Publisher
	Governor  *Governor
	// DNS writes tenants' DNS records (Route 53 in the management
	// account); used only with Config.HostedZoneID and TenantDomain.
	DNS dnsAPI
	Log *slog.Logger
}

// Reconciler drives tenants through their lifecycle.
type Reconciler struct {
	cfg   Config
	d     Deps
	guard *Guard
	id    string
	now   func() time.Time
	// started is when this reconciler was made: deadlines count from no
	// earlier (Judge).
	started time.Time
}

// New returns a reconciler. Governor may be shared by several reconcilers
// in one process; nil makes one from cfg.Quotas.
func New(cfg Config, d Deps) (*Reconciler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Governor == nil {
		d.Governor = NewGovernor(cfg.Quotas)
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Endpoint == nil {
		d.Endpoint = StackOutputEndpoint
	}
	if d.Events == nil {
		d.Events = nopPublisher{}
	}
	ous := cfg.SiloOUs
	if len(ous) == 0 {
		ous = []string{cfg.ProductionOU, cfg.PreviewOU, cfg.SuspendedOU, cfg.PoolOU}
	}
	return &Reconciler{
		cfg: cfg, d: d,
		guard:   NewGuard(d.Org, cfg.ManagementAccount, ous),
		id:      fmt.Sprintf("%s-%08x", cfg.Actor, rand.Uint32()),
		now:     func() time.Time { return time.Now().UTC() },
		started: time.Now().UTC(),
	}, nil
}

// Governor returns the reconciler's quota governor.
func (r *Reconciler) Governor() *Governor { return r.d.Governor }

// StackOutputEndpoint is the endpoint in AWS: the stack's ApiUrl output.
func StackOutputEndpoint(_ context.Context, t *registry.Tenant, outputs map[string]string) (string, error) {
	url := outputs["ApiUrl"]
	if url == "" {
		return "", fmt.Errorf("tenant %s: the stack has no ApiUrl output", t.ID)
	}
	return url, nil
}

// stable states need nothing from the reconciler.
func stable(s registry.State) bool {
	switch s {
	case registry.StateActive, registry.StateSuspended, registry.StateClosed, registry.StateFailed:
		return true
	}
	return false
}

// Drive takes one tenant as far as it can go: to ACTIVE, CLOSED or FAILED.
// It returns when the tenant is stable, or with an error the caller may
// retry (an AWS outage, ctx cancelled). Safe to run on the same tenant from
// several reconcilers at once: every write is conditional and account
// creation is claimed first.
func (r *Reconciler) Drive(ctx context.Context, id string) (*registry.Tenant, error) {
	t, err := r.d.Registry.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	for {
		if stable(t.State) {
			// An ACTIVE tenant whose target release differs from the one it
			// runs (a preview given a new build while it deployed) updates.
			if t.State != registry.StateActive || t.TargetVersion == "" || t.TargetVersion == t.AppVersion {
				break
			}
			next, err := r.transition(ctx, t, registry.StateUpdating, "", nil)
			if err != nil {
				if errors.Is(err, registry.ErrConflict) {
					if t, err = r.d.Registry.Get(ctx, id); err != nil {
						return nil, err
					}
					continue
				}
				return t, err
			}
			t = next
		}
		if parked(t) || heldByRollout(t) {
			// A parked preview waits for an account; a rollout's tenant is
			// updated by the rollout's wave.
			break
		}
		var next *registry.Tenant
		if v := r.Judge(t); v.Overdue {
			// Past its deadline before this step even starts (a Drive
			// resumed by a sweep, say): AWS says where it stands.
			next, err = r.expire(ctx, t, v, nil)
			if err == nil && next == t {
				next, err = r.step(ctx, t) // AWS says the work is done: carry on
			}
		} else {
			next, err = r.step(ctx, t)
		}
		switch {
		case errors.Is(err, registry.ErrConflict):
			// Someone else moved the tenant: look again.
			if t, err = r.d.Registry.Get(ctx, id); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			if ctx.Err() == nil {
				// What the tenant is stuck on, for an operator to read and
				// for the deadline's reason to quote.
				r.noteError(ctx, t, err)
			}
			return t, fmt.Errorf("tenant %s in %s: %w", id, t.State, err)
		}
		t = next
	}
	return t, nil
}

func (r *Reconciler) step(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	switch t.State {
	case registry.StateRequested:
		r.d.Events.Publish(ctx, "tenant.requested", t)
		return r.transition(ctx, t, registry.StateCreatingAccount, "", nil)
	case registry.StateCreatingAccount:
		return r.createAccount(ctx, t)
	case registry.StatePreparing:
		return r.prepare(ctx, t)
	case registry.StateDeploying:
		return r.deploy(ctx, t)
	case registry.StateUpdating:
		return r.update(ctx, t)
	case registry.StateDecommissioning:
		return r.decommission(ctx, t)
	}
	return nil, fmt.Errorf("the reconciler has no step for state %s", t.State)
}

func (r *Reconciler) transition(ctx context.Context, t *registry.Tenant, to registry.State, reason string, mutate func(*registry.Tenant)) (*registry.Tenant, error) {
	next, err := r.d.Registry.Transition(ctx, t, to, registry.Change{Actor: r.cfg.Actor, Reason: reason, Mutate: mutate})
	if err != nil {
		return nil, err
	}
	r.d.Log.InfoContext(ctx, "tenant state changed", "tenant", t.ID, "from", t.State, "to", to, "reason", reason)
	return next, nil
}

func (r *Reconciler) fail(ctx context.Context, t *registry.Tenant, reason string) (*registry.Tenant, error) {
	if len(reason) > maxReason {
		reason = awsx.Brief(errors.New(reason), maxReason)
	}
	next, err := r.transition(ctx, t, registry.StateFailed, reason, func(n *registry.Tenant) { n.Operation = "" })
	if err != nil {
		return nil, err
	}
	r.d.Events.Publish(ctx, "tenant.failed", next)
	return next, nil
}

// Attributes the reconciler keeps on a tenant.
const (
	attrClaim         = "claim"
	attrClaimUntil    = "claim_until"
	attrDeployAttempt = "deploy_attempt"
	attrDecomStep     = "decommission_step"
	// attrDeployRelease is the release an in-flight deploy or update
	// operation carries, recorded with its operation id: a new target set
	// meanwhile is deployed by the next update, never mistaken for this one.
	attrDeployRelease = "deploy_release"
	attrUpdateAttempt = "update_attempt"
	// attrRemoveAttempt numbers a decommission's stack-instance removals,
	// and attrRemoveOp is the removal recorded in Operation: a removal is
	// resumed only when the recorded operation is this one.
	attrRemoveAttempt = "remove_attempt"
	attrRemoveOp      = "remove_op"
)

// createAccount runs CREATING_ACCOUNT to its end: it finds or makes the
// tenant's one create-account request, waits for it under the governor, and
// moves on to PREPARING with the account id, or to FAILED with AWS's reason.
func (r *Reconciler) createAccount(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	if t.AccountID != "" {
		return r.transition(ctx, t, registry.StatePreparing, "", nil)
	}
	if t.Operation == "" {
		var err error
		if t, err = r.requestAccount(ctx, t); err != nil || t.State != registry.StateCreatingAccount || t.AccountID != "" {
			return t, err
		}
	}
	if t.Operation == "" { // adopted an existing account: nothing to watch
		return t, nil
	}
	return r.watchCreation(ctx, t, false)
}

// requestAccount makes sure exactly one create-account request exists for
// the tenant and that the registry knows its id.
func (r *Reconciler) requestAccount(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	for {
		// Another reconciler holds a live claim: it is creating the account.
		if owner, until := t.Attributes[attrClaim], claimUntil(t); owner != "" && owner != r.id && r.now().Before(until) {
			if err := awsx.Sleep(ctx, until.Sub(r.now())+jitter(r.cfg.PollInterval)); err != nil {
				return nil, err
			}
			fresh, err := r.d.Registry.Get(ctx, t.ID)
			if err != nil {
				return nil, err
			}
			if fresh.Operation != "" || fresh.State != registry.StateCreatingAccount || fresh.AccountID != "" {
				return fresh, nil
			}
			t = fresh
			continue
		}
		// Before creating anything, look for what an earlier attempt (ours
		// or a crashed reconciler's) may have created already.
		op, account, err := r.findCreation(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		if op != "" || account != "" {
			r.d.Log.InfoContext(ctx, "adopted account request", "tenant", t.ID, "request", op, "account", account)
			return r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "account_adopted", Progress: true,
				Detail: map[string]string{"request": op, "account": account},
				Mutate: func(n *registry.Tenant) {
					n.Operation = op
					delete(n.Attributes, attrClaim)
					delete(n.Attributes, attrClaimUntil)
					if account != "" && op == "" {
						n.AccountID = account
					}
				}})
		}
		// Claim the creation, so no other reconciler creates a second account.
		claimed, err := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
			if n.Attributes == nil {
				n.Attributes = map[string]string{}
			}
			n.Attributes[attrClaim] = r.id
			n.Attributes[attrClaimUntil] = r.now().Add(r.cfg.ClaimTTL).Format(time.RFC3339Nano)
		}})
		if err != nil {
			return nil, err
		}
		t = claimed
		if err := r.d.Governor.AcquireCreateNoting(ctx, true, r.cfg.Deadlines.QuotaNote/4, func(ctx context.Context) error {
			// Every slot is taken: the wait is the quota's, and the tenant
			// says so (the note is renewed only when it runs low).
			noted, err := r.noteWaiting(ctx, t, r.createQuotaNote())
			if err == nil {
				t = noted
			}
			return err
		}); err != nil {
			return nil, err
		}
		// Waiting for a slot can outlast the claim, and another reconciler
		// may then take the tenant over. Renew a claim that is running out
		// (conditional on the version, so a takeover shows as a conflict)
		// before creating anything.
		if claimUntil(t).Sub(r.now()) < r.cfg.ClaimTTL/2 {
			renewed, err := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
				n.Attributes[attrClaimUntil] = r.now().Add(r.cfg.ClaimTTL).Format(time.RFC3339Nano)
			}})
			if err != nil {
				r.d.Governor.ReleaseCreate()
				return nil, err
			}
			t = renewed
		}
		out, err := r.d.Org.CreateAccount(ctx, &organizations.CreateAccountInput{
			AccountName: aws.String(r.cfg.AccountName(t.ID)),
			Email:       aws.String(r.cfg.Email(t.ID)),
			Tags:        []orgtypes.Tag{{Key: aws.String(TagTenant), Value: aws.String(t.ID)}},
		})
		if err != nil {
			r.d.Governor.ReleaseCreate()
			switch {
			case awsx.IsQuota(err) || awsx.IsThrottled(err) || awsx.IsConflict(err):
				// Over a quota or rate AWS enforces: wait our turn, never
				// fail, and say so on the tenant.
				r.d.Log.WarnContext(ctx, "create account deferred", "tenant", t.ID, "error", err)
				noted, nerr := r.noteWaiting(ctx, t, "create-account quota: AWS refused the request ("+awsx.ErrorCode(err)+")")
				if nerr != nil {
					return nil, nerr
				}
				t = noted
				if err := awsx.Sleep(ctx, r.cfg.PollInterval+jitter(r.cfg.PollInterval)); err != nil {
					return nil, err
				}
				continue
			case awsx.IsInvalid(err):
				return r.fail(ctx, t, "create account refused: "+awsx.ErrorCode(err))
			}
			return nil, fmt.Errorf("create account: %w", err)
		}
		reqID := aws.ToString(out.CreateAccountStatus.Id)
		// Record the handle before waiting on it. If this write is lost to a
		// crash, the next attempt adopts the request by its account name.
		recorded, err := r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "account_requested", Progress: true,
			Detail: map[string]string{"request": reqID},
			Mutate: func(n *registry.Tenant) {
				n.Operation = reqID
				delete(n.Attributes, attrClaim)
				delete(n.Attributes, attrClaimUntil)
			}})
		if err != nil {
			r.d.Governor.ReleaseCreate()
			return nil, err
		}
		return r.watchCreation(ctx, recorded, true)
	}
}

func claimUntil(t *registry.Tenant) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, t.Attributes[attrClaimUntil])
	return at
}

// findCreation looks for a create-account request or an account that
// belongs to the tenant: by the account name silo gives it (requests
// in progress or succeeded) and by its email (accounts).
func (r *Reconciler) findCreation(ctx context.Context, tenant string) (request, account string, err error) {
	name, email := r.cfg.AccountName(tenant), r.cfg.Email(tenant)
	p := organizations.NewListCreateAccountStatusPaginator(r.d.Org, &organizations.ListCreateAccountStatusInput{
		States: []orgtypes.CreateAccountState{orgtypes.CreateAccountStateInProgress, orgtypes.CreateAccountStateSucceeded},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", "", fmt.Errorf("list create-account requests: %w", err)
		}
		for _, st := range page.CreateAccountStatuses {
			if aws.ToString(st.AccountName) == name {
				return aws.ToString(st.Id), "", nil
			}
		}
	}
	ap := organizations.NewListAccountsPaginator(r.d.Org, &organizations.ListAccountsInput{})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return "", "", fmt.Errorf("list accounts: %w", err)
		}
		for _, a := range page.Accounts {
			if aws.ToString(a.Email) == email || aws.ToString(a.Name) == name {
				return "", aws.ToString(a.Id), nil
			}
		}
	}
	return "", "", nil
}

// watchCreation polls the recorded create-account request until it ends.
// holding says whether the caller already holds a governor slot for it.
func (r *Reconciler) watchCreation(ctx context.Context, t *registry.Tenant, holding bool) (*registry.Tenant, error) {
	if !holding {
		// A request made before a crash still counts against the quota.
		if err := r.d.Governor.AcquireCreateNoting(ctx, false, r.cfg.Deadlines.QuotaNote/4, func(ctx context.Context) error {
			noted, err := r.noteWaiting(ctx, t, r.createQuotaNote())
			if err == nil {
				t = noted
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	// The creation is waited for until the tenant's deadline at most.
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	released := false
	release := func() {
		if !released {
			released = true
			r.d.Governor.ReleaseCreate()
		}
	}
	defer release()
	delay := r.cfg.PollInterval
	var lastErr error
	for {
		out, err := r.d.Org.DescribeCreateAccountStatus(bctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(t.Operation)})
		if err != nil && cutOff(ctx, bctx) {
			release()
			return r.overdue(ctx, t, lastErr)
		}
		if err != nil {
			if awsx.IsNotFound(err) {
				// The handle is unknown to AWS (a lost request): forget it and
				// let the next pass adopt or create.
				return r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "account_request_lost",
					Detail: map[string]string{"request": t.Operation}, Mutate: func(n *registry.Tenant) { n.Operation = "" }})
			}
			if !awsx.IsThrottled(err) {
				return nil, fmt.Errorf("describe create-account request %s: %w", t.Operation, err)
			}
			lastErr = err
		} else {
			st := out.CreateAccountStatus
			switch st.State {
			case orgtypes.CreateAccountStateSucceeded:
				release()
				account := aws.ToString(st.AccountId)
				next, err := r.transition(ctx, t, registry.StatePreparing, "", func(n *registry.Tenant) {
					n.AccountID, n.Operation = account, ""
				})
				if err != nil {
					return nil, err
				}
				r.d.Events.Publish(ctx, "tenant.account_created", next)
				return next, nil
			case orgtypes.CreateAccountStateFailed:
				release()
				return r.fail(ctx, t, "account creation failed: "+string(st.FailureReason))
			}
		}
		if err := awsx.Sleep(bctx, delay+jitter(delay)); err != nil {
			if cutOff(ctx, bctx) {
				release()
				return r.overdue(ctx, t, lastErr)
			}
			return nil, err
		}
		delay = min(delay*2, r.cfg.MaxPollInterval)
	}
}

// createQuotaNote is the quota note of a tenant waiting for a
// create-account slot.
func (r *Reconciler) createQuotaNote() string {
	return fmt.Sprintf("create-account slot: %d of %d requests in progress", r.d.Governor.InProgress(), r.d.Governor.Quotas().MaxCreateInProgress)
}

// prepare moves the account into its OU and waits until it is usable.
func (r *Reconciler) prepare(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	// A leased preview account is proved a pool account (and retagged)
	// before it is moved; a new pool account once it sits in the Pool OU.
	if t.Kind == registry.KindPreview {
		if next, err := r.claimOrFail(ctx, t); err != nil || next != nil {
			return next, err
		}
	}
	target := r.cfg.targetOU(t)
	parents, err := r.d.Org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(t.AccountID)})
	if err != nil {
		return nil, fmt.Errorf("read parent of %s: %w", t.AccountID, err)
	}
	if len(parents.Parents) == 1 && aws.ToString(parents.Parents[0].Id) != target {
		_, err := r.d.Org.MoveAccount(ctx, &organizations.MoveAccountInput{
			AccountId: aws.String(t.AccountID), SourceParentId: parents.Parents[0].Id, DestinationParentId: aws.String(target),
		})
		if err != nil && !awsx.IsAlreadyExists(err) {
			return nil, fmt.Errorf("move %s to %s: %w", t.AccountID, target, err)
		}
	}
	if t.Kind == registry.KindPool {
		if next, err := r.claimOrFail(ctx, t); err != nil || next != nil {
			return next, err
		}
	}
	// Readiness gate: a new account is not usable for a while. Retry with
	// backoff until the PREPARING deadline, recording each new kind of
	// refusal on the tenant (the deadline's reason quotes the last).
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	delay := r.cfg.PollInterval / 2
	for attempt := 1; ; attempt++ {
		err := r.d.Readiness.Ready(bctx, t.AccountID)
		if err == nil {
			break
		}
		if cutOff(ctx, bctx) {
			return r.overdue(ctx, t, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.d.Log.DebugContext(ctx, "account not ready yet", "tenant", t.ID, "account", t.AccountID, "attempt", attempt, "error", err)
		if text := awsx.Brief(err, maxLastError); text != t.LastError {
			now := r.now()
			noted, nerr := r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) { n.LastError, n.LastErrorAt = text, &now }})
			if nerr != nil {
				return nil, nerr
			}
			t = noted
		}
		if err := awsx.Sleep(bctx, delay+jitter(delay)); err != nil {
			if cutOff(ctx, bctx) {
				return r.overdue(ctx, t, err)
			}
			return nil, err
		}
		delay = min(delay*2, r.cfg.MaxPollInterval)
	}
	if t.Kind == registry.KindPool {
		return r.handToPool(ctx, t)
	}
	// The deploy operation's id is fixed before it is issued, and recorded
	// with the move to DEPLOYING, with the release it deploys: a crash
	// before or after issuing it finds the same operation again.
	attempt := attemptOf(t)
	rel, err := r.targetRelease(ctx, t)
	if err != nil {
		return nil, err
	}
	return r.transition(ctx, t, registry.StateDeploying, "", func(n *registry.Tenant) {
		n.Operation = deployOpID(n.ID, attempt)
		setAttr(n, attrDeployRelease, rel)
	})
}

func attemptOf(t *registry.Tenant) int {
	n, err := strconv.Atoi(t.Attributes[attrDeployAttempt])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func deployOpID(tenant string, attempt int) string {
	return registry.DeployOperationID(tenant, attempt)
}
func removeOpID(tenant string, attempt int) string {
	return registry.RemoveOperationID(tenant, attempt)
}

// Params returns the stack instance parameters of a tenant on a release.
func (r *Reconciler) Params(t *registry.Tenant, rel Release) map[string]string {
	return map[string]string{
		"TenantId": t.ID, "AppVersion": rel.Version, "Tier": string(t.Tier),
		"CodeBucket": rel.CodeBucket, "CodeKey": rel.CodeKey,
		"JwtIssuer": r.cfg.JWTIssuer, "JwtAudience": r.cfg.JWTAudience,
	}
}

// deploy creates the stack instance, waits for it, and records the endpoint.
// A retried deployment first clears what the failed one left (resetDeploy).
func (r *Reconciler) deploy(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	if needsReset(t) {
		return r.resetDeploy(ctx, t)
	}
	op := t.Operation
	if op == "" || t.Attributes[attrDeployRelease] == "" {
		attempt := attemptOf(t)
		want, err := r.targetRelease(ctx, t)
		if err != nil {
			return nil, err
		}
		recorded, err := r.d.Registry.Update(ctx, t, registry.Change{Progress: true, Mutate: func(n *registry.Tenant) {
			if n.Operation == "" {
				n.Operation = deployOpID(n.ID, attempt)
			}
			setAttr(n, attrDeployRelease, want)
		}})
		if err != nil {
			return nil, err
		}
		t, op = recorded, recorded.Operation
	}
	rel, err := r.Release(ctx, t.Attributes[attrDeployRelease])
	if err != nil {
		if errors.Is(err, ErrUnknownRelease) {
			return r.fail(ctx, t, err.Error())
		}
		return nil, err
	}
	got, err := r.d.Deployer.AddInstance(ctx, op, t.AccountID, t.Region, r.Params(t, rel))
	if err != nil {
		if isStackSetBusy(err) || awsx.IsAlreadyExists(err) {
			// One operation per stack set at a time, or another reconciler
			// is creating this very instance: wait, then look again.
			return r.waitStackSet(ctx, t, err)
		}
		return nil, fmt.Errorf("deploy stack instance: %w", err)
	}
	if got != op {
		// AWS keeps the id silo chose; an emulator may hand out its own.
		// Either way the id waited on is the one recorded.
		if t, err = r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) { n.Operation = got }}); err != nil {
			return nil, err
		}
		op = got
	}
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	if _, err := r.d.Deployer.Wait(bctx, op); err != nil {
		var oe *stacksets.OperationError
		if errors.As(err, &oe) {
			reason, err := r.instanceFailure(ctx, t, oe)
			if err != nil {
				return nil, err
			}
			return r.fail(ctx, t, reason)
		}
		if cutOff(ctx, bctx) {
			return r.overdue(ctx, t, err)
		}
		if errors.Is(err, stacksets.ErrNotFound) {
			// The recorded operation is unknown: issue the deploy again.
			return r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) { n.Operation = "" }})
		}
		return nil, fmt.Errorf("wait for stack instance: %w", err)
	}
	outputs, err := r.d.Deployer.InstanceOutputs(ctx, t.AccountID, t.Region)
	if err != nil {
		return nil, fmt.Errorf("read stack outputs: %w", err)
	}
	endpoint, err := r.d.Endpoint(ctx, t, outputs)
	if err != nil {
		return nil, err
	}
	// The DNS name points at the endpoint before the tenant is ACTIVE: a
	// front end that resolves an ACTIVE tenant finds its name in place.
	dnsName, err := r.serveDNS(ctx, t, endpoint)
	if err != nil {
		return nil, err
	}
	// A tenant without a target of its own runs the fleet's release, read
	// again now: a rollout that completed while this deploy ran made
	// another one current, and the tenant then updates to it (Drive).
	target, err := r.targetRelease(ctx, t)
	if err != nil {
		return nil, err
	}
	next, err := r.transition(ctx, t, registry.StateActive, "", func(n *registry.Tenant) {
		n.Endpoint, n.AppVersion, n.Operation = endpoint, rel.Version, ""
		if dnsName != "" {
			setAttr(n, AttrDNSName, dnsName)
		}
		awaitProbe(n, r.now())
		if n.TargetVersion == "" {
			n.TargetVersion = target
		}
		delete(n.Attributes, attrDeployRelease)
	})
	if err != nil {
		return nil, err
	}
	r.d.Events.Publish(ctx, "tenant.activated", next)
	return next, nil
}

// Retry restarts a FAILED tenant at the step that failed, whether AWS
// failed it or its deadline did. A failed deploy gets a new operation id,
// and a failed first deployment starts from a clean account (resetDeploy);
// a failed account creation first looks for a request or an account made
// for the tenant (one still in progress at the deadline and finished since
// is adopted) and makes a new request only when there is none; a
// decommission resumes at its last checkpoint.
func (r *Reconciler) Retry(ctx context.Context, id, actor, reason string) (*registry.Tenant, error) {
	return Retry(ctx, r.d.Registry, id, actor, reason)
}

// Retry is the retry action on the registry alone, for callers that do not
// run a reconciler (the API Lambda, which then queues the tenant).
func Retry(ctx context.Context, reg *registry.Store, id, actor, reason string) (*registry.Tenant, error) {
	t, err := reg.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.State != registry.StateFailed {
		return nil, fmt.Errorf("tenant %s is %s, not FAILED: %w", id, t.State, registry.ErrInvalidTransition)
	}
	to := t.FailedFrom
	if to == "" {
		to = registry.StateRequested
	}
	return reg.Transition(ctx, t, to, registry.Change{Actor: actor, Reason: reason, Type: "retry", Mutate: func(n *registry.Tenant) {
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Operation = ""
		n.Attributes[attrDeployAttempt] = strconv.Itoa(attemptOf(t) + 1)
	}})
}

// jitter spreads polls of many tenants apart: up to a fifth of d.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)/5 + 1))
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, *registry.Tenant) {}
