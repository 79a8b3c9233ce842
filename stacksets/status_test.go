package stacksets

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOperationStatus describes an operation once: a known one with its
// action and status, an unknown one as ErrNotFound.
func TestOperationStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := setup(ctx, t)
	code := codeZip(t, "v1")
	rel, err := f.m.Publish(ctx, TenantTemplate(), code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.EnsureStackSet(ctx, rel, Rollout{}); err != nil {
		t.Fatal(err)
	}
	rel2, err := f.m.Publish(ctx, []byte(strings.Replace(rel.TemplateBody, "Application release version", "Application release (semver)", 1)), code)
	if err != nil {
		t.Fatal(err)
	}
	op, err := f.m.EnsureStackSet(ctx, rel2, Rollout{OperationID: OperationID("fleet", "release-"+rel2.ID, 1)})
	if err != nil || op == "" {
		t.Fatalf("update: operation %q, %v", op, err)
	}
	res, err := f.m.OperationStatus(ctx, op)
	if err != nil || res.ID != op || res.Action != "UPDATE" || res.Status != "SUCCEEDED" {
		t.Fatalf("OperationStatus(%s) = %+v, %v", op, res, err)
	}
	if _, err := f.m.OperationStatus(ctx, OperationID("nobody", "deploy", 1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OperationStatus of an unknown operation: %v, want ErrNotFound", err)
	}
}
