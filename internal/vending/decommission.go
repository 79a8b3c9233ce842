package vending

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"

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

// decommission takes a DECOMMISSIONING tenant to CLOSED: stop serving,
// delete the stack instance, delete and verify by inventory what remains,
// schedule the key's deletion, park the account in Suspended, and close it
// when the closure quota allows. Every destructive call passes the guard.
func (r *Reconciler) decommission(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	if t.AccountID == "" {
		// Never got an account: nothing to take down.
		return r.close(ctx, t)
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
		step = t.Attributes[attrDecomStep]
	}
	if step == stepInstanceRemoved && t.Kind == registry.KindPreview {
		// A preview's account goes back to the pool, whose reset cleans it
		// and proves it clean before anyone leases it again.
		return r.returnToPool(ctx, t)
	}
	if step == stepInstanceRemoved {
		report, err := r.d.Cleaner.Clean(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("clean account %s: %w", t.AccountID, err)
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
	}
	if err := r.closeAccount(ctx, t); err != nil {
		return nil, err
	}
	return r.close(ctx, t)
}

func (r *Reconciler) checkpoint(ctx context.Context, t *registry.Tenant, step, event string, detail map[string]string) (*registry.Tenant, error) {
	return r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: event, Detail: detail, Mutate: func(n *registry.Tenant) {
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
	if op == "" || t.Endpoint != "" || t.Attributes[AttrDNSName] != "" {
		// Stop serving first (the endpoint goes), then record the removal's
		// operation id before issuing it.
		var err error
		t, err = r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) {
			n.Endpoint = ""
			delete(n.Attributes, AttrDNSName)
			n.Operation = removeOpID(n.ID, attemptOf(n))
		}})
		if err != nil {
			return nil, err
		}
		op = t.Operation
	}
	got, err := r.d.Deployer.RemoveInstance(ctx, op, t.AccountID, t.Region, false)
	switch {
	case awsx.IsNotFound(err) || isNotFound(err):
		// No instance (never deployed, or already removed).
		return r.checkpoint(ctx, t, stepInstanceRemoved, "instance_removed", nil)
	case err != nil:
		return nil, fmt.Errorf("remove stack instance: %w", err)
	}
	if _, err := r.d.Deployer.Wait(ctx, got); err != nil {
		if isNotFound(err) {
			return r.checkpoint(ctx, t, stepInstanceRemoved, "instance_removed", nil)
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
// until then it waits, in order, holding no slot.
func (r *Reconciler) closeAccount(ctx context.Context, t *registry.Tenant) error {
	if err := r.d.Governor.AcquireClose(ctx); err != nil {
		return err
	}
	defer r.d.Governor.ReleaseClose()
	q := r.d.Governor.Quotas()
	for {
		members, err := r.countAccounts(ctx)
		if err != nil {
			return err
		}
		closed, err := r.d.Registry.Closures(ctx, r.now().Add(-q.ClosureWindow))
		if err != nil {
			return err
		}
		if len(closed) < q.ClosureLimit(members) {
			break
		}
		r.d.Log.WarnContext(ctx, "closure quota reached; waiting", "tenant", t.ID, "closed_in_window", len(closed), "limit", q.ClosureLimit(members))
		if err := awsx.Sleep(ctx, r.cfg.MaxPollInterval); err != nil {
			return err
		}
	}
	if err := r.guard.Check(ctx, t.AccountID, t.ID); err != nil {
		return err
	}
	_, err := r.d.Org.CloseAccount(ctx, &organizations.CloseAccountInput{AccountId: aws.String(t.AccountID)})
	if err != nil && !awsx.IsConflict(err) && !awsx.IsNotFound(err) && awsx.ErrorCode(err) != "AccountAlreadyClosedException" {
		return fmt.Errorf("close account %s: %w", t.AccountID, err)
	}
	return r.d.Registry.RecordClosure(ctx, t.AccountID, r.now(), q.ClosureWindow)
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
