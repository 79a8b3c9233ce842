// Package local runs the silo platform on one machine with no AWS account:
// the AWS emulator (behind its fault-injecting proxy), a seeded organization,
// and the control plane wired to them. It is one of the two places that wire
// silo's packages together (the Lambda mains are the other).
package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/vending"
	"github.com/silo-saas/silo/registry"
)

// Options configure a local platform.
type Options struct {
	// Table is the registry table's name; registry.DefaultTable when empty.
	Table string
	// EmulatorLog receives moto's own output (nil discards it).
	EmulatorLog io.Writer
}

// Info is what a person or a script needs to reach a running platform. It
// is what `silo local --ready-file` writes.
type Info struct {
	AWSEndpoint         string            `json:"aws_endpoint"`
	Region              string            `json:"region"`
	AccessKeyID         string            `json:"aws_access_key_id"`
	SecretAccessKey     string            `json:"aws_secret_access_key"`
	ManagementAccountID string            `json:"management_account_id"`
	OrganizationID      string            `json:"organization_id"`
	OUs                 map[string]string `json:"ous"`
	RegistryTable       string            `json:"registry_table"`
}

// Platform is a running local silo.
type Platform struct {
	Info     Info
	Registry *registry.Store
	Counter  *awsx.Counter
	Control  *Control
	Runner   *vending.Runner

	emu    *emulator.Emulator
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Start brings the platform up: it starts and seeds the emulator, wires the
// control plane onto it (registry, guardrails, release, StackSet, bus) and
// runs the reconciler. Close stops it.
func Start(ctx context.Context, o Options, log *slog.Logger) (*Platform, error) {
	began := time.Now()
	emu, err := emulator.Start(ctx, o.EmulatorLog)
	if err != nil {
		return nil, err
	}
	p := &Platform{emu: emu, log: log, Counter: awsx.NewCounter()}
	log.InfoContext(ctx, "emulator started", "endpoint", emu.Endpoint)
	org, err := emu.Seed(ctx)
	if err != nil {
		p.Close()
		return nil, err
	}
	log.InfoContext(ctx, "organization seeded", "organization", org.OrganizationID, "management_account", org.ManagementAccountID)
	p.Control, err = Wire(ctx, org, ControlOptions{Table: o.Table, Counter: p.Counter}, log)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Registry = p.Control.Registry
	p.Runner = vending.NewRunner(p.Control.Reconciler, 0)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		_ = p.Runner.Run(runCtx, 5*time.Second)
	}()
	log.InfoContext(ctx, "registry ready", "table", p.Registry.Table(), "elapsed", time.Since(began).Round(time.Millisecond))
	p.Info = Info{
		AWSEndpoint: org.Endpoint, Region: org.Region,
		AccessKeyID: org.AccessKeyID, SecretAccessKey: org.SecretAccessKey,
		ManagementAccountID: org.ManagementAccountID, OrganizationID: org.OrganizationID,
		OUs: org.OUs, RegistryTable: p.Registry.Table(),
	}
	return p, nil
}

// Done is closed if the emulator dies under the platform.
func (p *Platform) Done() <-chan struct{} { return p.emu.Done() }

// Close stops everything the platform started: the reconciler first (it
// waits for it), then the emulator.
func (p *Platform) Close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	p.emu.Stop()
}

// Describe returns a short error-free summary for logs.
func (p *Platform) String() string {
	return fmt.Sprintf("silo local: emulator %s, registry table %s", p.Info.AWSEndpoint, p.Info.RegistryTable)
}
