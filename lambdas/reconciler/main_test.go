package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/silo-saas/silo/internal/audit"
)

// fakeRunner stands in for the auditor (tested against the emulator in
// internal/audit): the handler only starts a run and tallies it.
type fakeRunner struct {
	mu    sync.Mutex
	fleet *audit.Fleet
	err   error
	runs  []audit.RunOptions
}

func (f *fakeRunner) Run(_ context.Context, o audit.RunOptions) (*audit.Fleet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, o)
	return f.fleet, f.err
}

func reports(statuses map[string]audit.Status) *audit.Fleet {
	f := &audit.Fleet{StartedAt: time.Unix(0, 0), FinishedAt: time.Unix(60, 0)}
	for id, st := range statuses {
		f.Reports = append(f.Reports, audit.Report{TenantID: id, Status: st})
	}
	return f
}

func TestHandleAudit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fleet *audit.Fleet
		want  string
	}{
		{"a healthy fleet", reports(map[string]audit.Status{"acme-1": audit.StatusPass, "beta-2": audit.StatusPass}),
			`{"task":"audit-isolation","tenants":2,"passed":2,"failed":0,"errored":0,"failing":[]}`},
		{"a failure and an error", reports(map[string]audit.Status{"acme-1": audit.StatusPass, "evil-2": audit.StatusFail, "gamma-3": audit.StatusError}),
			`{"task":"audit-isolation","tenants":3,"passed":1,"failed":1,"errored":1,"failing":["evil-2","gamma-3"]}`},
		{"no tenants", &audit.Fleet{}, `{"task":"audit-isolation","tenants":0,"passed":0,"failed":0,"errored":0,"failing":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{fleet: tc.fleet}
			// The constant input the control-plane schedule sends.
			res, err := handle(t.Context(), json.RawMessage(`{"task":"audit-isolation"}`), r)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(res)
			if string(got) != tc.want {
				t.Errorf("answer %s\nwant   %s", got, tc.want)
			}
			if diff := cmp.Diff([]audit.RunOptions{{Actor: "schedule:daily-audit"}}, r.runs); diff != "" {
				t.Errorf("the run (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("the audit cannot run", func(t *testing.T) {
		r := &fakeRunner{err: errors.New("list tenants: throttled")}
		if _, err := handle(t.Context(), json.RawMessage(`{"task":"audit-isolation"}`), r); err == nil || !strings.Contains(err.Error(), "throttled") {
			t.Errorf("error %v", err)
		}
	})
}

func TestHandleOtherEvents(t *testing.T) {
	for _, ev := range []string{
		`{}`,
		`{"task":"reconcile"}`,
		`{"task":"AUDIT-ISOLATION"}`,
		`{"Records":[{"messageId":"1","body":"{\"tenant\":\"acme-1\"}","eventSource":"aws:sqs"}]}`,
		`{"version":"0","source":"aws.events","detail-type":"Scheduled Event","detail":{}}`,
		`null`, `[]`, `"audit-isolation"`, ``,
	} {
		r := &fakeRunner{fleet: &audit.Fleet{}}
		res, err := handle(t.Context(), json.RawMessage(ev), r)
		if !errors.Is(err, errNotImplemented) || res != nil {
			t.Errorf("%s: %v %+v, want not implemented", ev, err, res)
		}
		if len(r.runs) != 0 {
			t.Errorf("%s started an audit", ev)
		}
	}
}

func TestLazyAuditor(t *testing.T) {
	env := map[string]string{"SILO_REGISTRY_TABLE": "silo-registry", "SILO_EVENT_BUS": "silo-events", "SILO_ORGANIZATION_ID": "o-abc",
		"SILO_ALLOWED_REGIONS": "us-east-1, eu-west-1,"}

	t.Run("missing environment", func(t *testing.T) {
		l := &lazyAuditor{env: func(k string) string {
			if k == "SILO_EVENT_BUS" {
				return ""
			}
			return env[k]
		}}
		_, err := l.Run(t.Context(), audit.RunOptions{})
		if err == nil || !strings.Contains(err.Error(), "missing environment: SILO_EVENT_BUS") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("no allowed regions", func(t *testing.T) {
		for _, regions := range []string{"", " , "} {
			l := &lazyAuditor{env: func(k string) string {
				if k == "SILO_ALLOWED_REGIONS" {
					return regions
				}
				return env[k]
			}}
			_, err := l.Run(t.Context(), audit.RunOptions{})
			if err == nil || !strings.Contains(err.Error(), "missing environment: SILO_ALLOWED_REGIONS") {
				t.Errorf("SILO_ALLOWED_REGIONS=%q: error %v", regions, err)
			}
		}
	})

	t.Run("built once, from the environment", func(t *testing.T) {
		var builds []config
		fake := &fakeRunner{fleet: &audit.Fleet{}}
		l := &lazyAuditor{env: func(k string) string { return env[k] }, build: func(_ context.Context, c config) (runner, error) {
			builds = append(builds, c)
			return fake, nil
		}}
		for range 2 {
			if _, err := handle(t.Context(), json.RawMessage(`{"task":"audit-isolation"}`), l); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff([]config{{Table: "silo-registry", Bus: "silo-events", OrganizationID: "o-abc", AllowedRegions: []string{"us-east-1", "eu-west-1"}}}, builds); diff != "" {
			t.Errorf("builds (-want +got):\n%s", diff)
		}
		if len(fake.runs) != 2 {
			t.Errorf("%d runs, want 2", len(fake.runs))
		}
	})
}
