package vending

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// What the reconciler does for the preview pool (package preview owns the
// pool itself): it creates pool accounts like tenants' and hands them over,
// takes a leased account through PREPARING and DEPLOYING for a preview, and
// gives it back when the preview is released.

// PoolTag is the silo:tenant tag of an account waiting in the preview pool:
// the guard accepts destructive calls on it for the pool, and for no tenant.
const PoolTag = "silo-pool"

// parked reports whether t waits for something other than the reconciler:
// a preview in REQUESTED waits for the pool to lease it an account.
func parked(t *registry.Tenant) bool {
	return t.Kind == registry.KindPreview && t.State == registry.StateRequested && t.AccountID == ""
}

// claimPooled makes the account of a pool account or a preview carry the
// right silo:tenant tag before anything is done in it: PoolTag for a new
// pool account, the preview's id for a leased one. A leased account is
// retagged only when the guard proves it is a pool account (or already
// this preview's, after a crash).
func (r *Reconciler) claimPooled(ctx context.Context, t *registry.Tenant) error {
	var want string
	switch t.Kind {
	case registry.KindPool:
		want = PoolTag
		if err := r.guard.Check(ctx, t.AccountID, t.ID); err != nil {
			if r.guard.Check(ctx, t.AccountID, PoolTag) == nil {
				return nil // tagged already, before a crash
			}
			return err
		}
	case registry.KindPreview:
		want = t.ID
		if err := r.guard.Check(ctx, t.AccountID, t.ID); err == nil {
			return nil
		}
		if err := r.guard.Check(ctx, t.AccountID, PoolTag); err != nil {
			return err
		}
	default:
		return nil
	}
	_, err := r.d.Org.TagResource(ctx, &organizations.TagResourceInput{
		ResourceId: aws.String(t.AccountID),
		Tags:       []orgtypes.Tag{{Key: aws.String(TagTenant), Value: aws.String(want)}},
	})
	if err != nil {
		return fmt.Errorf("tag account %s for %s: %w", t.AccountID, want, err)
	}
	return nil
}

// claimOrFail runs claimPooled; a refusal fails the tenant (returned as
// next), any other error is for the caller to retry.
func (r *Reconciler) claimOrFail(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	err := r.claimPooled(ctx, t)
	if errors.Is(err, ErrRefused) {
		return r.fail(ctx, t, err.Error())
	}
	return nil, err
}

// checkOwner is the guard before a decommission: a preview's account may
// still carry the pool's tag when the preview is released before its
// account was prepared, and a pool account's record carries it once its
// account was retagged for the pool.
func (r *Reconciler) checkOwner(ctx context.Context, t *registry.Tenant) error {
	err := r.guard.Check(ctx, t.AccountID, t.ID)
	if err != nil && (t.Kind == registry.KindPreview || t.Kind == registry.KindPool) && r.guard.Check(ctx, t.AccountID, PoolTag) == nil {
		return nil
	}
	return err
}

// handToPool gives a prepared pool account to the preview pool.
func (r *Reconciler) handToPool(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	_, next, err := r.d.Registry.AddPoolAccount(ctx, t, r.cfg.Actor)
	if err != nil {
		return nil, err
	}
	r.d.Log.InfoContext(ctx, "pool account ready", "tenant", t.ID, "account", t.AccountID)
	r.d.Events.Publish(ctx, "pool.account_added", next)
	return next, nil
}

// returnToPool ends a released preview: its account goes to resetting.
func (r *Reconciler) returnToPool(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	_, next, err := r.d.Registry.ReturnLease(ctx, t, r.cfg.Actor, func(n *registry.Tenant) {
		// The next lease of this preview starts from scratch.
		delete(n.Attributes, attrDecomStep)
		delete(n.Attributes, attrDeployRelease)
		delete(n.Attributes, attrRemoveOp)
	})
	if err != nil {
		return nil, err
	}
	r.d.Log.InfoContext(ctx, "preview released", "tenant", t.ID, "account", t.AccountID)
	r.d.Events.Publish(ctx, "tenant.decommissioned", next)
	return next, nil
}

// targetRelease names the release t should run: its target; for a
// tenant without one, the current release a completed rollout set, or the
// configured one.
func (r *Reconciler) targetRelease(ctx context.Context, t *registry.Tenant) (string, error) {
	if t.TargetVersion != "" {
		return t.TargetVersion, nil
	}
	cur, err := r.d.Registry.CurrentRelease(ctx)
	if err != nil || cur != "" {
		return cur, err
	}
	return r.cfg.Release.Version, nil
}

// ErrUnknownRelease marks a release the catalog does not have.
var ErrUnknownRelease = errors.New("unknown release")

// Release returns the release named version: the configured current
// release, or one from the registry's catalog.
func (r *Reconciler) Release(ctx context.Context, version string) (Release, error) {
	if version == "" || version == r.cfg.Release.Version {
		return r.cfg.Release, nil
	}
	rel, err := r.d.Registry.GetRelease(ctx, version)
	if errors.Is(err, registry.ErrNotFound) {
		return Release{}, fmt.Errorf("release %s is not in the catalog: %w", version, ErrUnknownRelease)
	}
	if err != nil {
		return Release{}, err
	}
	return Release{Version: rel.Version, CodeBucket: rel.CodeBucket, CodeKey: rel.CodeKey}, nil
}

func setAttr(t *registry.Tenant, k, v string) {
	if t.Attributes == nil {
		t.Attributes = map[string]string{}
	}
	t.Attributes[k] = v
}

func updateOpID(tenant, version string, attempt int) string {
	return registry.UpdateOperationID(tenant, version, attempt)
}

// update brings an UPDATING tenant's stack instance to its target release
// and goes back to ACTIVE. The operation id and the release it carries are
// recorded before the operation is issued; a target changed meanwhile is
// picked up by the next update (see Drive).
func (r *Reconciler) update(ctx context.Context, t *registry.Tenant) (*registry.Tenant, error) {
	if t.Operation == "" || t.Attributes[attrDeployRelease] == "" {
		n, _ := strconv.Atoi(t.Attributes[attrUpdateAttempt])
		want, err := r.targetRelease(ctx, t)
		if err != nil {
			return nil, err
		}
		recorded, err := r.d.Registry.Update(ctx, t, registry.Change{Actor: r.cfg.Actor, Type: "update_started", Progress: true,
			Detail: map[string]string{"release": want},
			Mutate: func(m *registry.Tenant) {
				setAttr(m, attrUpdateAttempt, strconv.Itoa(n+1))
				setAttr(m, attrDeployRelease, want)
				m.Operation = updateOpID(m.ID, want, n+1)
			}})
		if err != nil {
			return nil, err
		}
		t = recorded
	}
	rel, err := r.Release(ctx, t.Attributes[attrDeployRelease])
	if err != nil {
		if errors.Is(err, ErrUnknownRelease) {
			return r.fail(ctx, t, err.Error())
		}
		return nil, err
	}
	got, err := r.d.Deployer.UpdateInstance(ctx, t.Operation, t.AccountID, t.Region, r.Params(t, rel))
	if err != nil {
		if isStackSetBusy(err) || awsx.IsAlreadyExists(err) {
			return r.waitStackSet(ctx, t, err)
		}
		return nil, fmt.Errorf("update stack instance: %w", err)
	}
	if got != t.Operation {
		if t, err = r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) { n.Operation = got }}); err != nil {
			return nil, err
		}
	}
	bctx, cancel := r.bounded(ctx, t)
	defer cancel()
	if _, err := r.d.Deployer.Wait(bctx, t.Operation); err != nil {
		var oe *stacksets.OperationError
		if errors.As(err, &oe) {
			reason, err := r.instanceFailure(ctx, t, oe)
			if err != nil {
				return nil, err
			}
			return r.fail(ctx, t, fmt.Sprintf("update to %s: %s", rel.Version, reason))
		}
		if cutOff(ctx, bctx) {
			return r.overdue(ctx, t, err)
		}
		if isNotFound(err) {
			return r.d.Registry.Update(ctx, t, registry.Change{Mutate: func(n *registry.Tenant) { n.Operation = "" }})
		}
		return nil, fmt.Errorf("wait for stack instance update: %w", err)
	}
	return r.CompleteUpdate(ctx, t, rel, nil)
}

// CompleteUpdate ends an update whose stack instance runs rel: it reads the
// stack's outputs, (re)serves the endpoint, and moves t to ACTIVE on rel,
// with mutate's further changes in the same write. The reconciler's own
// updates and rollout waves both end here.
func (r *Reconciler) CompleteUpdate(ctx context.Context, t *registry.Tenant, rel Release, mutate func(*registry.Tenant)) (*registry.Tenant, error) {
	endpoint, err := r.UpdatedEndpoint(ctx, t)
	if err != nil {
		return nil, err
	}
	next, err := r.transition(ctx, t, registry.StateActive, "", func(n *registry.Tenant) {
		Updated(n, endpoint, rel)
		awaitProbe(n, r.now())
		if mutate != nil {
			mutate(n)
		}
	})
	if err != nil {
		return nil, err
	}
	r.Announce(ctx, "tenant.updated", next)
	return next, nil
}

// UpdatedEndpoint reads the outputs of t's updated stack and (re)serves its
// endpoint: the first half of CompleteUpdate, for callers that write many
// tenants' ends in one batch.
func (r *Reconciler) UpdatedEndpoint(ctx context.Context, t *registry.Tenant) (string, error) {
	outputs, err := r.d.Deployer.InstanceOutputs(ctx, t.AccountID, t.Region)
	if err != nil {
		return "", fmt.Errorf("read stack outputs: %w", err)
	}
	endpoint, err := r.d.Endpoint(ctx, t, outputs)
	if err != nil {
		return "", err
	}
	// An update may change the endpoint (a new API): the DNS name follows.
	if _, err := r.serveDNS(ctx, t, endpoint); err != nil {
		return "", err
	}
	return endpoint, nil
}

// Updated makes n a tenant whose update to rel ended, serving endpoint.
func Updated(n *registry.Tenant, endpoint string, rel Release) {
	n.Endpoint, n.AppVersion, n.Operation = endpoint, rel.Version, ""
	delete(n.Attributes, attrDeployRelease)
}

// awaitProbe asks the prober for a verdict on the build n starts running
// at now (registry.AttrProbeAfter): until one is recorded, the health n
// carries is about the build before, and a caller waiting for this build
// (preview up --wait) must not take it for this one's.
func awaitProbe(n *registry.Tenant, now time.Time) {
	setAttr(n, registry.AttrProbeAfter, now.Format(time.RFC3339Nano))
}

// Announce publishes a tenant event on the reconciler's bus.
func (r *Reconciler) Announce(ctx context.Context, kind string, t *registry.Tenant) {
	r.d.Events.Publish(ctx, kind, t)
}
