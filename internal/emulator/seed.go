package emulator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	orgtypes "github.com/aws/aws-sdk-go-v2/service/organizations/types"

	"github.com/silo-saas/silo/internal/awsx"
)

// Region is the emulator's home region.
const Region = "us-east-1"

// AdminUser is the IAM user in the management account whose access key silo
// uses against the emulator. moto maps unknown keys (test/test) to a default
// account and gets slower as accounts grow, so a real key is created.
const AdminUser = "silo-admin"

// OU paths silo relies on, below the organization root.
const (
	OUTenants    = "Tenants"
	OUProduction = "Tenants/Production"
	OUPreview    = "Tenants/Preview"
	OUSuspended  = "Suspended"
	OUPool       = "Pool"
)

// ouTree lists the OUs to create, parents before children.
var ouTree = []string{OUTenants, OUProduction, OUPreview, OUSuspended, OUPool}

// Org describes a seeded emulator: the management account, its credentials
// and the organization's OUs.
type Org struct {
	Endpoint            string
	Region              string
	ManagementAccountID string
	AccessKeyID         string
	SecretAccessKey     string
	OrganizationID      string
	RootID              string
	// OUs maps an OU path ("Tenants/Production") to its id.
	OUs map[string]string

	// emu is the emulator this organization lives in, for the calls that
	// go to moto's own control API rather than to AWS (SetCosts).
	emu *Emulator
}

// Options returns awsx options acting as the management account.
func (o *Org) Options() awsx.Options {
	return awsx.Options{Endpoint: o.Endpoint, Region: o.Region, AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey}
}

// Config returns an aws.Config acting as the management account, with an
// optional call counter.
func (o *Org) Config(ctx context.Context, counter *awsx.Counter) (aws.Config, error) {
	opts := o.Options()
	opts.Counter = counter
	return awsx.Load(ctx, opts)
}

// Seed makes a fresh emulator look like a real management account. Call it
// once after Start or Reset; seeding twice fails (the organization exists).
func (e *Emulator) Seed(ctx context.Context) (*Org, error) {
	// Bootstrap credentials: moto maps any unknown key to its default
	// account, which becomes the management account.
	boot, err := awsx.Load(ctx, awsx.Options{Endpoint: e.Endpoint, Region: Region, AccessKeyID: "bootstrap", SecretAccessKey: "bootstrap"})
	if err != nil {
		return nil, err
	}
	im := iam.NewFromConfig(boot)
	if _, err := im.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(AdminUser)}); err != nil {
		return nil, fmt.Errorf("seed: create iam user: %w", err)
	}
	// An inline policy rather than AdministratorAccess: moto loads AWS
	// managed policies only when asked to, and this keeps seeding fast.
	if _, err := im.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(AdminUser), PolicyName: aws.String("admin"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`),
	}); err != nil {
		return nil, fmt.Errorf("seed: admin policy: %w", err)
	}
	key, err := im.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(AdminUser)})
	if err != nil {
		return nil, fmt.Errorf("seed: create access key: %w", err)
	}
	o := &Org{
		Endpoint:        e.Endpoint,
		Region:          Region,
		AccessKeyID:     aws.ToString(key.AccessKey.AccessKeyId),
		SecretAccessKey: aws.ToString(key.AccessKey.SecretAccessKey),
		OUs:             map[string]string{},
		emu:             e,
	}
	cfg, err := o.Config(ctx, nil)
	if err != nil {
		return nil, err
	}
	org := organizations.NewFromConfig(cfg)
	created, err := org.CreateOrganization(ctx, &organizations.CreateOrganizationInput{FeatureSet: orgtypes.OrganizationFeatureSetAll})
	if err != nil {
		return nil, fmt.Errorf("seed: create organization: %w", err)
	}
	o.OrganizationID = aws.ToString(created.Organization.Id)
	o.ManagementAccountID = aws.ToString(created.Organization.MasterAccountId)
	roots, err := org.ListRoots(ctx, &organizations.ListRootsInput{})
	if err != nil || len(roots.Roots) == 0 {
		return nil, fmt.Errorf("seed: list roots: %v", err)
	}
	o.RootID = aws.ToString(roots.Roots[0].Id)
	if _, err := org.EnablePolicyType(ctx, &organizations.EnablePolicyTypeInput{
		RootId: aws.String(o.RootID), PolicyType: orgtypes.PolicyTypeServiceControlPolicy,
	}); err != nil && !awsx.IsConflict(err) && awsx.ErrorCode(err) != "PolicyTypeAlreadyEnabledException" {
		return nil, fmt.Errorf("seed: enable SCPs: %w", err)
	}
	for _, path := range ouTree {
		parent, name := o.RootID, path
		if i := strings.LastIndex(path, "/"); i >= 0 {
			parent, name = o.OUs[path[:i]], path[i+1:]
		}
		ou, err := org.CreateOrganizationalUnit(ctx, &organizations.CreateOrganizationalUnitInput{
			ParentId: aws.String(parent), Name: aws.String(name),
		})
		if err != nil {
			return nil, fmt.Errorf("seed: create OU %s: %w", path, err)
		}
		o.OUs[path] = aws.ToString(ou.OrganizationalUnit.Id)
	}
	return o, nil
}

// Reset clears all emulator state and seeds it again, returning the new
// management credentials (reset removes the old IAM user and key). The
// proxy's faults, hook, counters and pending operations go too, so every
// test starts from an emulator that injects nothing.
func (e *Emulator) Reset(ctx context.Context) (*Org, error) {
	e.Proxy.Reset()
	e.iamMu.Lock()
	err := e.relaxIAM(ctx)
	e.enforcing, e.locked = 0, false
	e.iamMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.post(ctx, "/moto-api/reset", "", ""); err != nil {
		return nil, err
	}
	o, err := e.Seed(ctx)
	// Once more, so that the proxy's counters and call numbers (which a
	// Hook sees) start with the caller's first call, not with seeding's.
	e.Proxy.Reset()
	return o, err
}

// EnforceIAM turns on IAM policy enforcement (moto accepts everything by
// default): from the next request on, every call is checked against the
// caller's identity policies (not resource policies or SCPs: moto evaluates
// neither). Enforcement is emulator-wide, so whoever turns it on turns it off
// again with RelaxIAM, and for as short a window as it can. Windows may
// overlap (two audits at once): enforcement stays on until the last one is
// relaxed. Reset turns it off whatever is pending. The management user
// holds an inline allow-all policy and every member account's
// OrganizationAccountAccessRole the equivalent (patch 8 in
// py/sitecustomize.py), so the control plane keeps working meanwhile.
func (e *Emulator) EnforceIAM(ctx context.Context) error {
	e.iamMu.Lock()
	defer e.iamMu.Unlock()
	if e.enforcing == 0 && !e.locked {
		if err := e.post(ctx, "/moto-api/reset-auth", "text/plain", "0"); err != nil {
			return err
		}
	}
	e.enforcing++
	return nil
}

// RelaxIAM ends one EnforceIAM window, turning enforcement off when it was
// the last and no LockIAM holds it on.
func (e *Emulator) RelaxIAM(ctx context.Context) error {
	e.iamMu.Lock()
	defer e.iamMu.Unlock()
	if e.enforcing > 1 {
		e.enforcing--
		return nil
	}
	if e.locked {
		// The window ends, enforcement stays: the deployed-mode harness
		// runs a control plane that AWS always checks.
		e.enforcing = 0
		return nil
	}
	if err := e.relaxIAM(ctx); err != nil {
		return err
	}
	e.enforcing = 0
	return nil
}

// LockIAM turns IAM enforcement on until UnlockIAM (or Reset), whatever
// EnforceIAM windows open and close meanwhile: the deployed-mode harness
// holds it for its whole run, so that the functions' roles, and nothing
// else, decide what each may do, as in AWS.
func (e *Emulator) LockIAM(ctx context.Context) error {
	e.iamMu.Lock()
	defer e.iamMu.Unlock()
	if e.enforcing == 0 && !e.locked {
		if err := e.post(ctx, "/moto-api/reset-auth", "text/plain", "0"); err != nil {
			return err
		}
	}
	e.locked = true
	return nil
}

// UnlockIAM ends LockIAM: enforcement goes off unless an EnforceIAM
// window is open.
func (e *Emulator) UnlockIAM(ctx context.Context) error {
	e.iamMu.Lock()
	defer e.iamMu.Unlock()
	if !e.locked {
		return nil
	}
	if e.enforcing == 0 {
		if err := e.relaxIAM(ctx); err != nil {
			return err
		}
	}
	e.locked = false
	return nil
}

// IAMEnforced reports whether IAM enforcement is on (a window is open or
// LockIAM holds it).
func (e *Emulator) IAMEnforced() bool {
	e.iamMu.Lock()
	defer e.iamMu.Unlock()
	return e.enforcing > 0 || e.locked
}

func (e *Emulator) relaxIAM(ctx context.Context) error {
	return e.post(ctx, "/moto-api/reset-auth", "text/plain", "inf")
}

// EnforceIAM turns on IAM enforcement in the emulator this organization
// lives in (see Emulator.EnforceIAM).
func (o *Org) EnforceIAM(ctx context.Context) error { return o.emu.EnforceIAM(ctx) }

// RelaxIAM turns IAM enforcement off in the emulator this organization
// lives in.
func (o *Org) RelaxIAM(ctx context.Context) error { return o.emu.RelaxIAM(ctx) }

func (e *Emulator) post(ctx context.Context, path, ctype, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.MotoEndpoint+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("emulator %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("emulator %s: %s: %s", path, resp.Status, msg)
	}
	return nil
}
