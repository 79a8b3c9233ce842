// Command reconciler is the reconciler Lambda of the silo control plane.
//
// It handles one task so far: the event {"task":"audit-isolation"}, which
// the control-plane stack's daily schedule sends, runs the isolation audit
// (internal/audit) over every active tenant; the auditor keeps each
// tenant's report in the registry and records a violation event for each
// failure. It answers the run's tally:
//
//	{"task":"audit-isolation","tenants":N,"passed":P,"failed":F,"errored":E,"failing":[ids]}
//
// where failing lists every tenant that did not pass (failed or errored).
// A run that finds violations succeeds (a retry would only audit again);
// a run that cannot audit at all fails.
//
// NOT IMPLEMENTED YET: every other event (the reconcile queue's messages,
// the minute sweep) logs that and fails, so nobody mistakes it for working.
//
// The auditor acts with the function's own credentials (the management
// account's): it reads the organization's OUs and SCPs, finds each
// tenant's stack through the tenant stack set, and assumes
// OrganizationAccountAccessRole in each tenant account to check it and to
// start its probes. AWS enforces IAM itself, so nothing switches it on.
//
// Environment (set by the control-plane stack; all required):
//
//	SILO_REGISTRY_TABLE   the registry table
//	SILO_EVENT_BUS        the bus violation events go to
//	SILO_ORGANIZATION_ID  the organization the tenant accounts belong to
//	SILO_ALLOWED_REGIONS  the regions tenants may use, comma-separated: the
//	                      guardrail SCPs the audit expects are built from
//	                      them, so they must be the regions the attached
//	                      SCPs were written with
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

// TaskAuditIsolation is the task of the daily audit's event
// (controlplane.AuditTask).
const TaskAuditIsolation = "audit-isolation"

// scheduleActor is who asked, on the violation events of a scheduled run.
const scheduleActor = "schedule:daily-audit"

var errNotImplemented = errors.New("silo reconciler: handler not implemented yet")

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	aud := &lazyAuditor{env: os.Getenv, log: log}
	lambda.StartWithOptions(func(ctx context.Context, event json.RawMessage) (*AuditResult, error) {
		res, err := handle(ctx, event, aud)
		switch {
		case errors.Is(err, errNotImplemented):
			log.ErrorContext(ctx, "handler not implemented yet", "function", "reconciler")
		case err != nil:
			log.ErrorContext(ctx, "task failed", "task", TaskAuditIsolation, "error", err)
		default:
			log.InfoContext(ctx, "isolation audit", "tenants", res.Tenants, "passed", res.Passed,
				"failed", res.Failed, "errored", res.Errored, "failing", res.Failing)
		}
		return res, err
	}, lambda.WithContext(ctx))
}

// runner runs the isolation audit; *audit.Auditor satisfies it.
type runner interface {
	Run(ctx context.Context, o audit.RunOptions) (*audit.Fleet, error)
}

// taskEvent is an event that names a task. Other events (SQS batches,
// EventBridge's scheduled events) decode to an empty Task.
type taskEvent struct {
	Task string `json:"task"`
}

// AuditResult is what the audit task answers.
type AuditResult struct {
	Task    string `json:"task"`
	Tenants int    `json:"tenants"`
	Passed  int    `json:"passed"`
	Failed  int    `json:"failed"`
	Errored int    `json:"errored"`
	// Failing are the tenants that did not pass (failed or errored).
	Failing []string `json:"failing"`
}

// handle runs the task event names, with r as the auditor.
func handle(ctx context.Context, event json.RawMessage, r runner) (*AuditResult, error) {
	var ev taskEvent
	// Only the task matters; an event that is not an object names none.
	_ = json.Unmarshal(event, &ev)
	if ev.Task != TaskAuditIsolation {
		if ev.Task != "" {
			return nil, fmt.Errorf("task %q: %w", ev.Task, errNotImplemented)
		}
		return nil, errNotImplemented
	}
	f, err := r.Run(ctx, audit.RunOptions{Actor: scheduleActor})
	if err != nil {
		return nil, fmt.Errorf("isolation audit: %w", err)
	}
	res := &AuditResult{Task: TaskAuditIsolation, Tenants: len(f.Reports), Failing: []string{}}
	for _, rep := range f.Reports {
		switch rep.Status {
		case audit.StatusPass:
			res.Passed++
			continue
		case audit.StatusFail:
			res.Failed++
		default:
			res.Errored++
		}
		res.Failing = append(res.Failing, rep.TenantID)
	}
	slices.Sort(res.Failing)
	return res, nil
}

// config is what the auditor is built from.
type config struct {
	Table, Bus, OrganizationID string
	// AllowedRegions are SILO_ALLOWED_REGIONS, split.
	AllowedRegions []string
}

func loadConfig(env func(string) string) (config, error) {
	c := config{Table: env("SILO_REGISTRY_TABLE"), Bus: env("SILO_EVENT_BUS"), OrganizationID: env("SILO_ORGANIZATION_ID")}
	for _, r := range strings.Split(env("SILO_ALLOWED_REGIONS"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.AllowedRegions = append(c.AllowedRegions, r)
		}
	}
	var missing []string
	for _, v := range []struct {
		name string
		set  bool
	}{
		{"SILO_REGISTRY_TABLE", c.Table != ""}, {"SILO_EVENT_BUS", c.Bus != ""}, {"SILO_ORGANIZATION_ID", c.OrganizationID != ""},
		{"SILO_ALLOWED_REGIONS", len(c.AllowedRegions) > 0},
	} {
		if !v.set {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return config{}, fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// memberSession names the reconciler's sessions in tenant accounts (in
// their CloudTrail).
const memberSession = "silo-reconciler"

// newAuditor builds the isolation auditor from cfg, with the function's
// own AWS credentials (the management account's).
func newAuditor(ctx context.Context, cfg config, log *slog.Logger) (runner, error) {
	awsCfg, err := awsx.Load(ctx, awsx.Options{})
	if err != nil {
		return nil, err
	}
	stsc := sts.NewFromConfig(awsCfg)
	me, err := stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("read the caller identity: %w", err)
	}
	account, partition := aws.ToString(me.Account), awsx.ARNPartition(aws.ToString(me.Arn))
	// The SCPs name the member role by ARN, so the partition is part of
	// the content the audit compares with what is attached.
	scps, err := guardrails.Policies(guardrails.Options{AllowedRegions: cfg.AllowedRegions, Partition: partition})
	if err != nil {
		return nil, fmt.Errorf("SILO_ALLOWED_REGIONS: %w", err)
	}
	org := organizations.NewFromConfig(awsCfg)
	ous, err := guardrails.ResolveOUs(ctx, org, ouPaths(scps))
	if err != nil {
		return nil, err
	}
	accounts := awsx.NewAccounts(awsCfg, stsc, awsx.AccountsOptions{SessionName: memberSession, Partition: partition})
	return audit.New(audit.Deps{
		Registry:   registry.New(dynamodb.NewFromConfig(awsCfg), cfg.Table),
		Management: awsCfg,
		Org:        org,
		Accounts:   accounts,
		Stacks: stacksets.NewFromConfig(awsCfg, log, stacksets.Options{
			Accounts: accounts, Partition: partition, ManagementAccountID: account,
		}),
		// Enforcer nil: AWS enforces IAM on every call.
		Events: vending.NewBus(eventbridge.NewFromConfig(awsCfg), cfg.Bus, log),
		Log:    log,
	}, audit.Options{
		ManagementAccountID: account,
		OrganizationID:      cfg.OrganizationID,
		OUs:                 ous,
		Guardrails:          scps,
		Partition:           partition,
	})
}

// ouPaths are the OUs the audit looks accounts up in: the tenant OUs and
// every guardrail's targets.
func ouPaths(scps []guardrails.Policy) []string {
	paths := slices.Clone(guardrails.TenantOUs)
	for _, p := range scps {
		for _, t := range p.Targets {
			if !slices.Contains(paths, t) {
				paths = append(paths, t)
			}
		}
	}
	return paths
}

// lazyAuditor builds the auditor on the first audit an execution
// environment runs and keeps it, so the events the reconciler does not
// handle yet need no auditor and a failed build is retried next time.
type lazyAuditor struct {
	env func(string) string
	log *slog.Logger
	// build is newAuditor; tests replace it.
	build func(context.Context, config) (runner, error)

	mu sync.Mutex
	r  runner
}

func (l *lazyAuditor) Run(ctx context.Context, o audit.RunOptions) (*audit.Fleet, error) {
	l.mu.Lock()
	if l.r == nil {
		cfg, err := loadConfig(l.env)
		if err == nil {
			build := l.build
			if build == nil {
				build = func(ctx context.Context, c config) (runner, error) { return newAuditor(ctx, c, l.log) }
			}
			l.r, err = build(ctx, cfg)
		}
		if err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("build the auditor: %w", err)
		}
	}
	r := l.r
	l.mu.Unlock()
	return r.Run(ctx, o)
}
