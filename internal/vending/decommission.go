package vending

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// ReportDeletion is the kind of the decommission report in the registry.
const ReportDeletion = "deletion"

// Decommission steps, recorded on the tenant as each one completes, so a
// crash resumes at the next.
const (
	stepInstanceRemoved = "instance_removed"
	stepCleaned         = "cleaned"
	stepSuspended       = "suspended"
)

// decommission takes a DECOMMISSIONING tenant to CLOSED from whatever
// exists: find the account of a creation still in flight, stop serving,
// delete the stack instance, delete and verify by inventory what remains,
// schedule the key's deletion, park the account in Suspended, and close it
// when the closure quota allows. Every destructive call passes the guard.
// A tenant decommissioned in any working state, or FAILED in one, comes
// here with what that state left: no account yet, an account but no
// stack, half a stack, a half-done decommission.
func (r *Reconciler) decommission(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	if t.AccountID == "" {
		next, found, err := r.findAccount(ctx, t)
		if err != nil || !found {
			return next, err
		}
		t = next
	}
	if err := r.adoptFromRoot(ctx, t); err != nil {
		return nil, err
	}
	if err := r.checkOwner(ctx, t); err != nil {
		return r.fail(ctx, t, err.Error())
	}
	step := t.Attributes[attrDecomStep]
	var err error
	if step == "" {
		if t, err = r.removeInstance(ctx, t); err != nil || t.State != registry.StateDecommissioning {
			return t, err
		}
		if step = t.Attributes[attrDecomStep]; step == "" {
			// The removal waits (the stack set runs another operation, or
			// throttles): look again, never past a step not taken.
			return t, nil
		}
	}
	if step == stepInstanceRemoved && t.Kind == registry.KindPreview {
		// A preview's account goes back to the pool, whose reset cleans it
		// and proves it clean before anyone leases it again.
		return r.returnToPool(ctx, t)
	}
	if step == stepInstanceRemoved {
		bctx, cancel := r.bounded(ctx, t)
		report, err := r.d.Cleaner.Clean(bctx, t)
		cut := cutOff(ctx, bctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("clean account %s: %w", t.AccountID, err)
			if cut {
				return r.overdue(ctx, t, err)
			}
			return nil, err
		}
		if err := r.d.Registry.PutReport(ctx, t.ID, ReportDeletion, report); err != nil {
			return nil, err
		}
		if len(report.Remaining) > 0 {
			return r.fail(ctx, t, fmt.Sprintf("decommission left %d resources in %s (see the deletion report)", len(report.Remaining), t.AccountID))
		}
		if t, err = r.checkpoint(ctx, t, stepCleaned, "account_cleaned", map[string]string{"found": fmt.Sprint(len(report.Found))}); err != nil {
			return nil, err
		}
		step = stepCleaned
	}
	if step == stepCleaned {
		if err := r.moveTo(ctx, t.AccountID, r.cfg.SuspendedOU); err != nil {
			return nil, err
		}
		if t, err = r.checkpoint(ctx, t, stepSuspended, "account_suspended", nil); err != nil {
			return nil, err
		}
		step = stepSuspended
	}
	if step != stepSuspended {
		// Unreachable while the steps above are taken in order; the account
		// is closed only after its stack instance is gone and it is clean.
		return nil, fmt.Errorf("tenant %s: decommission step %q before closing the account", t.ID, step)
	}
	if t, err = r.closeAccount(ctx, t); err != nil {
		return nil, err
	}
	return r.close(ctx, t)
}

// findAccount looks for the account of a tenant decommissioned before it
// had one recorded: a create-account request may still be in flight (or
// have finished after its deadline), or an account may exist that a crash
// kept from the registry. Such an account is recorded on the tenant
// (found) and decommissioned like any other, never orphaned. With nothing
// to find the tenant closes. A creation in progress is waited for, until
// the DECOMMISSIONING deadline; another reconciler's live claim (it may be
// creating the account this moment) is waited out first.
func (r *Reconciler) findAccount(ctx context.Context, t *registry.Tenant) (next *registry.Tenant, found bool, err error) {
	if t.Kind == registry.KindPreview {
		// A preview's account comes from the pool, leased together with
		// the record: without one, it never had an account.
		next, err := r.close(ctx, t)
		return next, false, err
	}
	if owner, until := t.Attributes[attrClaim], claimUntil(t); owner != "" && owner != r.id && r.now().Before(until) {
		return t, false, awsx.Sleep(ctx, until.Sub(r.now())+jitter(r.cfg.PollInterval))
	}
	request := ""
	if strings.HasPrefix(t.Operation, createRequestPrefix) {
		request = t.Operation
	}
	account := ""
	if request == "" {
		if request, account, err = r.findCreation(ctx, t.ID); err != nil {
			return nil, false, err
		}
		if request != "" {
			// Recorded before it is waited on, as everywhere: the reason of
			// a deadline names it, and a crash resumes with it.
			if t, err = r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "account_request_found", Progress: true,
				Detail: map[string]string{"request": request},
				Mutate: func(n *registry.Tenant) { n.Operation = request }}); err != nil {
				return nil, false, err
			}
		}
	}
	if request != "" {
		if account, err = r.creationAccount(ctx, t, request); err != nil {
			if errors.Is(err, errPastDeadline) {
				next, err := r.overdue(ctx, t, nil)
				return next, false, err
			}
			return nil, false, err
		}
	}
	if account == "" {
		// No request and no account, or a request that failed or that AWS
		// does not know: nothing was created.
		next, err := r.close(ctx, t)
		return next, false, err
	}
	r.d.Log.InfoContext(ctx, "account of a decommissioned tenant found", "tenant", t.ID, "account", account, "request", request)
	next, err = r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "account_found", Progress: true,
		Detail: map[string]string{"account": account, "request": request},
		Mutate: func(n *registry.Tenant) {
			n.AccountID, n.Operation = account, ""
			delete(n.Attributes, attrClaim)
			delete(n.Attributes, attrClaimUntil)
		}})
	return next, err == nil, err
}

// adoptFromRoot moves t's account into its OU when it still sits in the
// organization's root, where CreateAccount puts new accounts: a tenant
// stopped before PREPARING moved it (failed, or decommissioned, in
// CREATING_ACCOUNT or PREPARING). The guard accepts destructive calls only
// in a silo OU, so without this such an account could never be closed.
// Only an account tagged for the tenant and in the root is moved; one in
// any other OU was put there by someone, and the guard judges it as it is.
func (r *Reconciler) adoptFromRoot(ctx context.Context, t *registry.Tenant) error {
	parents, err := r.d.Org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(t.AccountID)})
	if err != nil {
		return fmt.Errorf("read parent of %s: %w", t.AccountID, err)
	}
	if len(parents.Parents) != 1 || parents.Parents[0].Type != orgtypes.ParentTypeRoot {
		return nil
	}
	tags, err := r.d.Org.ListTagsForResource(ctx, &organizations.ListTagsForResourceInput{ResourceId: aws.String(t.AccountID)})
	if err != nil {
		return fmt.Errorf("read tags of %s: %w", t.AccountID, err)
	}
	for _, tg := range tags.Tags {
		if aws.ToString(tg.Key) == TagTenant && aws.ToString(tg.Value) == t.ID {
			r.d.Log.InfoContext(ctx, "account of a decommissioned tenant moved out of the root", "tenant", t.ID, "account", t.AccountID)
			return r.moveTo(ctx, t.AccountID, r.cfg.targetOU(t))
		}
	}
	return nil // not tagged for it: the guard refuses, saying why
}

// createRequestPrefix starts every create-account request id ("car-…").
const createRequestPrefix = "car-"

// creationAccount waits for create-account request to end and returns its
// account ("" when it failed or AWS does not know it), until t's deadline.
func (r *Reconciler) creationAccount(ctx context.Context, t *registry.Tenant, request string) (string, error) {
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	delay := r.cfg.PollInterval
	for {
		out, err := r.d.Org.DescribeCreateAccountStatus(bctx, &organizations.DescribeCreateAccountStatusInput{CreateAccountRequestId: aws.String(request)})
		switch {
		case err == nil:
			switch st := out.CreateAccountStatus; st.State {
			case orgtypes.CreateAccountStateSucceeded:
				return aws.ToString(st.AccountId), nil
			case orgtypes.CreateAccountStateFailed:
				return "", nil
			}
		case awsx.IsNotFound(err):
			return "", nil
		case !awsx.IsThrottled(err) && !cutOff(ctx, bctx):
			return "", fmt.Errorf("describe create-account request %s: %w", request, err)
		}
		if err := awsx.Sleep(bctx, delay+jitter(delay)); err != nil {
			if cutOff(ctx, bctx) {
				return "", fmt.Errorf("create-account request %s is still in progress: %w", request, errPastDeadline)
			}
			return "", err
		}
		delay = min(delay*2, r.cfg.MaxPollInterval)
	}
}

func (r *Reconciler) checkpoint(ctx context.Context, t *registry.Tenant, step, event string, detail map[string]string) (*registry.Tenant, error) {
	return r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: event, Detail: detail, Progress: true, Mutate: func(n *registry.Tenant) {
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Attributes[attrDecomStep] = step
		n.Operation = ""
	}})
}

// removeInstance stops serving and deletes the stack instance.
func (r *Reconciler) removeInstance(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	// The DNS name goes first, before the endpoint it points at; always
	// looked for, as a crash between its UPSERT and ACTIVE leaves a record
	// the registry does not name. Idempotent: repeated, it finds nothing.
	if err := r.unserveDNS(ctx, t); err != nil {
		return nil, err
	}
	op := t.Operation
	// The operation recorded may be another state's (a deploy, an update,
	// a create-account request, for a tenant decommissioned mid-way):
	// waiting on that one would take its end for the removal's. Only the
	// removal this decommission recorded is resumed; a new removal takes a
	// new attempt number, so a removal that failed is not found again.
	if op == "" || op != t.Attributes[attrRemoveOp] || t.Endpoint != "" || t.Attributes[AttrDNSName] != "" {
		// Stop serving first (the endpoint goes), then record the removal's
		// operation id before issuing it.
		var err error
		t, err = r.d.Registry.Update(ctx, t, registry.Change{Progress: true, Mutate: func(n *registry.Tenant) {
			n.Endpoint = ""
			delete(n.Attributes, AttrDNSName)
			attempt, _ := strconv.Atoi(n.Attributes[attrRemoveAttempt])
			n.Operation = removeOpID(n.ID, attempt+1)
			setAttr(n, attrRemoveAttempt, strconv.Itoa(attempt+1))
			setAttr(n, attrRemoveOp, n.Operation)
		}})
		if err != nil {
			return nil, err
		}
		op = t.Operation
	}
	got, err := r.d.Deployer.RemoveInstance(ctx, op, t.AccountID, t.Region, false)
	if err == nil && got != op {
		// AWS keeps the id silo chose; an emulator may hand out its own.
		// Either way the one recorded is the one waited on.
		if t, err = r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
			n.Operation = got
			setAttr(n, attrRemoveOp, got)
		}}); err != nil {
			return nil, err
		}
	}
	switch {
	case awsx.IsNotFound(err) || isNotFound(err):
		// No instance (never deployed, or already removed).
		return r.checkpoint(ctx, t, stepInstanceRemoved, "instance_removed", nil)
	case isStackSetBusy(err):
		// Another operation runs on the stack set (maybe the deploy this
		// tenant was in): wait for the stack set, then look again.
		return r.waitStackSet(ctx, t, err)
	case err != nil:
		return nil, fmt.Errorf("remove stack instance: %w", err)
	}
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	if _, err := r.d.Deployer.Wait(bctx, got); err != nil {
		var oe *stacksets.OperationError
		switch {
		case isNotFound(err):
			return r.checkpoint(ctx, t, stepInstanceRemoved, "instance_removed", nil)
		case errors.As(err, &oe):
			return r.fail(ctx, t, "remove the stack instance: "+r.deployReason(ctx, t, got, oe))
		case cutOff(ctx, bctx):
			return r.overdue(ctx, t, err)
		}
		return nil, fmt.Errorf("wait for stack instance removal: %w", err)
	}
	return r.checkpoint(ctx, t, stepInstanceRemoved, "instance_removed", map[string]string{"operation": got})
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, stacksets.ErrNotFound) }

func (r *Reconciler) moveTo(ctx context.Context, account, ou string) error {
	parents, err := r.d.Org.ListParents(ctx, &organizations.ListParentsInput{ChildId: aws.String(account)})
	if err != nil {
		return fmt.Errorf("read parent of %s: %w", account, err)
	}
	if len(parents.Parents) != 1 || aws.ToString(parents.Parents[0].Id) == ou {
		return nil
	}
	_, err = r.d.Org.MoveAccount(ctx, &organizations.MoveAccountInput{
		AccountId: aws.String(account), SourceParentId: parents.Parents[0].Id, DestinationParentId: aws.String(ou),
	})
	if err != nil && !awsx.IsAlreadyExists(err) {
		return fmt.Errorf("move %s to %s: %w", account, ou, err)
	}
	return nil
}

// closeAccount closes the account once the rolling closure quota allows;
// until then it waits, in order, holding no slot, with a quota note on
// the tenant: the closure quota can hold a decommission for days, which is
// AWS's rationing, not a stuck tenant.
func (r *Reconciler) closeAccount(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	note := func(what string) func(context.Context) error {
		return func(ctx context.Context) error {
			noted, err := r.noteWaiting(ctx, t, what)
			if err == nil {
				t = noted
			}
			return err
		}
	}
	q := r.d.Governor.Quotas()
	if err := r.d.Governor.AcquireClose(ctx, r.cfg.Deadlines.QuotaNote/4,
		note(fmt.Sprintf("account closure: %d closures at once", q.MaxConcurrentClosures))); err != nil {
		return nil, err
	}
	defer r.d.Governor.ReleaseClose()
	for {
		members, err := r.countAccounts(ctx)
		if err != nil {
			return nil, err
		}
		closed, err := r.d.Registry.Closures(ctx, r.now().Add(-q.ClosureWindow))
		if err != nil {
			return nil, err
		}
		if len(closed) < q.ClosureLimit(members) {
			break
		}
		r.d.Log.WarnContext(ctx, "closure quota reached; waiting", "tenant", t.ID, "closed_in_window", len(closed), "limit", q.ClosureLimit(members))
		if err := note(fmt.Sprintf("account closure quota: %d of %d closures in the rolling %s", len(closed), q.ClosureLimit(members), q.ClosureWindow))(ctx); err != nil {
			return nil, err
		}
		if err := awsx.Sleep(ctx, r.cfg.MaxPollInterval); err != nil {
			return nil, err
		}
	}
	if err := r.checkOwner(ctx, t); err != nil {
		return nil, err
	}
	_, err := r.d.Org.CloseAccount(ctx, &organizations.CloseAccountInput{AccountId: aws.String(t.AccountID)})
	if err != nil && !awsx.IsConflict(err) && !awsx.IsNotFound(err) && awsx.ErrorCode(err) != "AccountAlreadyClosedException" {
		return nil, fmt.Errorf("close account %s: %w", t.AccountID, err)
	}
	return t, r.d.Registry.RecordClosure(ctx, t.AccountID, r.now(), q.ClosureWindow)
}

func (r *Reconciler) countAccounts(ctx context.Context) (int, error) {
	n := 0
	p := organizations.NewListAccountsPaginator(r.d.Org, &organizations.ListAccountsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("count accounts: %w", err)
		}
		n += len(page.Accounts)
	}
	return n, nil
}

func (r *Reconciler) close(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	next, err := r.transition(ctx, t, registry.StateClosed, "", func(n *registry.Tenant) {
		n.Endpoint, n.Operation = "", ""
		delete(n.Attributes, attrDecomStep)
		delete(n.Attributes, attrRemoveOp)
	})
	if err != nil {
		return nil, err
	}
	r.d.Events.Publish(ctx, "tenant.decommissioned", next)
	return next, nil
}

// DeletionReport is what a decommission checked and found in the account.
type DeletionReport struct {
	Account string    `json:"account"`
	Region  string    `json:"region"`
	At      time.Time `json:"at"`
	// Checked lists the kinds of resource looked for.
	Checked []string `json:"checked"`
	// Found is everything found, with what was done about it.
	Found []Found `json:"found"`
	// Remaining is what a second inventory still found, with the action
	// and error of its removal (no action: it appeared meanwhile); empty on
	// success.
	Remaining []Found `json:"remaining"`
}

// Found is one resource a decommission found.
type Found struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Tagged is true when the resource carries the tenant's tag (it came
	// from the stack); false for anything created outside it.
	Tagged bool   `json:"tagged"`
	Action string `json:"action"` // deleted, deletion_scheduled, left
	Error  string `json:"error,omitempty"`
}
