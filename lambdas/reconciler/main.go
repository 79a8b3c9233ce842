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
// Environment (set by the control-plane stack):
//
//	SILO_REGISTRY_TABLE   the registry table
//	SILO_EVENT_BUS        the bus violation events go to
//	SILO_ORGANIZATION_ID  the organization the tenant accounts belong to
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

	"github.com/silo-saas/silo/internal/audit"
)

// TaskAuditIsolation is the task of the daily audit's event
// (controlplane.AuditTask).
const TaskAuditIsolation = "audit-isolation"

// scheduleActor is who asked, on the violation events of a scheduled run.
const scheduleActor = "schedule:daily-audit"

var errNotImplemented = errors.New("silo reconciler: handler not implemented yet")

// errAuditorNotWired is what the audit task fails with until newAuditor
// builds the real auditor.
var errAuditorNotWired = errors.New("silo reconciler: the isolation auditor is not wired")

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	aud := &lazyAuditor{env: os.Getenv}
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
}

func loadConfig(env func(string) string) (config, error) {
	c := config{Table: env("SILO_REGISTRY_TABLE"), Bus: env("SILO_EVENT_BUS"), OrganizationID: env("SILO_ORGANIZATION_ID")}
	var missing []string
	for _, v := range []struct{ name, val string }{
		{"SILO_REGISTRY_TABLE", c.Table}, {"SILO_EVENT_BUS", c.Bus}, {"SILO_ORGANIZATION_ID", c.OrganizationID},
	} {
		if v.val == "" {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return config{}, fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// newAuditor builds the isolation auditor from cfg, with the function's
// own AWS credentials (the management account's).
//
// WIRE HERE (issue 9): internal/audit's engine lands on its own branch;
// once merged, build the *audit.Auditor here (registry.New(dynamodb
// client, cfg.Table), the bus on cfg.Bus, ...) and return it.
func newAuditor(ctx context.Context, cfg config) (runner, error) {
	return nil, errAuditorNotWired
}

// lazyAuditor builds the auditor on the first audit an execution
// environment runs and keeps it, so the events the reconciler does not
// handle yet need no auditor and a failed build is retried next time.
type lazyAuditor struct {
	env func(string) string
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
				build = newAuditor
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
