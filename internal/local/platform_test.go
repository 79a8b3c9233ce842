package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/registry"
	"github.com/silo-saas/silo/stacksets"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// TestReleaseCode vends a tenant and reads the code package its stack
// instance runs, as the app host does.
func TestReleaseCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	org := emu.ResetT(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := Wire(ctx, org, ControlOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Registry.Create(ctx, registry.Spec{
		ID: "acme", Name: "Acme", Email: "owner@acme.example", Tier: registry.TierStandard, Region: org.Region,
	}, "signup-acme", "test"); err != nil {
		t.Fatal(err)
	}
	tn, err := c.Reconciler.Drive(ctx, "acme")
	if err != nil || tn.State != registry.StateActive {
		t.Fatalf("drive: %+v, %v", tn, err)
	}
	mgmt, err := org.Config(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	artifacts := s3.NewFromConfig(mgmt, func(o *s3.Options) { o.UsePathStyle = true })

	tn.Region = "" // the default region stands in
	location, pkg, err := releaseCode(ctx, c.StackSets, artifacts, tn, org.Region)
	if err != nil {
		t.Fatal(err)
	}
	want, err := localCode()
	if err != nil {
		t.Fatal(err)
	}
	if wantLoc := "s3://" + c.Release.CodeBucket + "/" + c.Release.CodeKey; location != wantLoc || !bytes.Equal(pkg, want) {
		t.Errorf("releaseCode = %s (%d bytes), want %s (%d bytes)", location, len(pkg), wantLoc, len(want))
	}

	stranger := &registry.Tenant{Spec: registry.Spec{ID: "nobody", Region: org.Region}, AccountID: org.ManagementAccountID}
	if _, _, err := releaseCode(ctx, c.StackSets, artifacts, stranger, org.Region); !errors.Is(err, stacksets.ErrNotFound) {
		t.Errorf("releaseCode of an account without an instance: %v, want ErrNotFound", err)
	}
}
