package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/silo-saas/silo/internal/audit"
	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/registry"
)

// slowAudits takes hold on every call before it answers, as a real run
// over a fleet takes minutes.
type slowAudits struct{ hold time.Duration }

func (s slowAudits) Run(ctx context.Context, _ audit.RunOptions) (*audit.Fleet, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return sampleFleet(), nil
}

func (s slowAudits) Report(ctx context.Context, id string) (*audit.Report, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return new(sampleReport(id, audit.StatusPass)), nil
}

func (s slowAudits) wait(ctx context.Context) error {
	t := time.NewTimer(s.hold)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// TestAuditOutlivesTheWriteTimeout: served by a server whose write timeout
// is shorter than an audit run, POST /v1/audit/isolation lifts its own
// deadline and answers; an ordinary route as slow is cut off by it, so the
// timeout is in force.
func TestAuditOutlivesTheWriteTimeout(t *testing.T) {
	store := registry.New(dynamodb.New(dynamodb.Options{Region: "us-east-1"}), "unused") // no registry call is made
	f := newAPI(t, store, nil, Options{})
	const write = 500 * time.Millisecond
	f.api.d.Audits = slowAudits{hold: 4 * write}
	srv := server.New(f.api, server.Timeouts{Write: write})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	token := f.token(t, "ops", RoleOperator)
	call := func(method, path, body string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	status, body, err := call(http.MethodPost, "/v1/audit/isolation", `{"tenants":["acme-1"]}`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("audit run: %d %s %v, want 200", status, body, err)
	}
	var run audit.Fleet
	if err := json.Unmarshal(body, &run); err != nil || len(run.Reports) != 2 {
		t.Errorf("audit run answered %s (%v), want the run's two reports", body, err)
	}

	if status, body, err := call(http.MethodGet, "/v1/tenants/acme-1/isolation", ""); err == nil {
		t.Errorf("a report read as slow as the run answered %d %s: the write timeout is not in force", status, body)
	}
}
