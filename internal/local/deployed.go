package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/organizations"

	"github.com/silo-saas/silo/internal/api"
	"github.com/silo-saas/silo/internal/awsx"
	"github.com/silo-saas/silo/internal/deployed"
	"github.com/silo-saas/silo/internal/emulator"
	"github.com/silo-saas/silo/internal/guardrails"
	"github.com/silo-saas/silo/internal/issuer"
	"github.com/silo-saas/silo/internal/server"
)

// The REST APIs of the control-plane stack, by name (cdk/controlplane).
const (
	apiName     = "silo"
	consoleName = "silo-console"
)

// DeployedOptions configure the platform in its deployed topology.
type DeployedOptions struct {
	// EmulatorLog receives moto's own output (nil discards it).
	EmulatorLog io.Writer
	// APIAddr and ConsoleAddr are where the API's and the console's front
	// doors listen; free loopback ports when empty.
	APIAddr, ConsoleAddr string
	// Speed runs the harness clock faster than real time (schedules and
	// visibility timeouts); 1 when zero.
	Speed float64
	// FunctionLogs receives a log file per function; a directory of the
	// harness's (removed on Close) when empty.
	FunctionLogs string
	// SourceDir is the silo checkout the functions are built from; found
	// from the working directory when empty.
	SourceDir string
	// AllowedRegions are the stack's AllowedRegions parameter and the
	// regions of the guardrail SCPs applied to the tenant OUs; every
	// known region when empty (as silo local).
	AllowedRegions []string
}

// Deployed is the platform running as it is deployed in AWS: the
// control-plane stack created in the emulator and its functions' real
// binaries (internal/deployed), with what AWS would not run in that stack
// around it as in local mode: the emulator itself, seeded as a management
// account, with the guardrails applied to the tenant OUs (what an operator
// does with `silo guardrails apply` after `cdk deploy`), and the token
// issuer whose key the stack's OperatorPublicKey parameter is, so the
// tokens it mints are accepted by the deployed API and console. The app
// host that serves tenants' endpoints in local mode is not started:
// nothing deploys a tenant in this topology yet (the reconciler function
// does not reconcile), and a deployed tenant's endpoint is its own stack's
// REST API, which the reconciler's work will have to serve (issue 18).
type Deployed struct {
	Info    Info
	Harness *deployed.Harness
	// Issuer mints operator tokens the deployed API and console accept.
	Issuer *issuer.Issuer

	emu       *emulator.Emulator
	issuerSrv *http.Server
	serving   chan struct{}
}

// StartDeployed brings the deployed topology up; Close stops it.
func StartDeployed(ctx context.Context, o DeployedOptions, log *slog.Logger) (*Deployed, error) {
	began := time.Now()
	emu, err := emulator.Start(ctx, o.EmulatorLog)
	if err != nil {
		return nil, err
	}
	d := &Deployed{emu: emu}
	log.InfoContext(ctx, "emulator started", "endpoint", emu.Endpoint)
	org, err := emu.Seed(ctx)
	if err != nil {
		d.Close()
		return nil, err
	}
	if err := d.startIssuer(log); err != nil {
		d.Close()
		return nil, err
	}
	regions := o.AllowedRegions
	if len(regions) == 0 {
		regions = awsx.Regions()
	}
	if err := applyGuardrails(ctx, org, regions, log); err != nil {
		d.Close()
		return nil, err
	}
	key, err := d.Issuer.PublicKeyPEM()
	if err != nil {
		d.Close()
		return nil, err
	}
	d.Harness, err = deployed.Start(ctx, deployed.Options{
		Emulator: emu, Org: org,
		Parameters: map[string]string{
			"OperatorIssuer": d.Issuer.URL(), "OperatorPublicKey": key, "AllowedRegions": strings.Join(regions, ","),
		},
		SourceDir: o.SourceDir, LogDir: o.FunctionLogs,
		Clock:          deployed.NewClock(time.Now(), o.Speed),
		FrontDoorAddrs: map[string]string{apiName: o.APIAddr, consoleName: o.ConsoleAddr},
		Log:            log,
	})
	if err != nil {
		d.Close()
		return nil, err
	}
	h := d.Harness
	d.Info = Info{
		AWSEndpoint: org.Endpoint, Region: org.Region,
		AccessKeyID: org.AccessKeyID, SecretAccessKey: org.SecretAccessKey,
		ManagementAccountID: org.ManagementAccountID, OrganizationID: org.OrganizationID,
		OUs: org.OUs, Issuer: d.Issuer.URL(),
		StackName: h.StackName, FunctionLogs: h.LogDir,
	}
	if fn := h.Function("silo-api"); fn != nil {
		d.Info.RegistryTable = fn.Config.Environment["SILO_REGISTRY_TABLE"]
	}
	for name, url := range map[string]*string{apiName: &d.Info.API, consoleName: &d.Info.Console} {
		door := h.FrontDoor(name)
		if door == nil || len(door.Stages()) != 1 {
			d.Close()
			return nil, fmt.Errorf("the stack's REST API %s is missing or has no single stage", name)
		}
		*url = door.StageURL(door.Stages()[0])
	}
	for role, dst := range map[api.Role]*string{api.RoleAdmin: &d.Info.AdminToken, api.RoleViewer: &d.Info.ViewerToken} {
		if *dst, err = d.Issuer.Mint("", "local-"+string(role), 24*time.Hour, map[string]any{"aud": api.Audience, api.RoleClaim: string(role)}); err != nil {
			d.Close()
			return nil, err
		}
	}
	log.InfoContext(ctx, "deployed topology ready", "stack", h.StackName, "api", d.Info.API, "console", d.Info.Console,
		"harness", h.Timings.Total.Round(time.Millisecond), "elapsed", time.Since(began).Round(time.Millisecond))
	return d, nil
}

// applyGuardrails attaches silo's guardrail SCPs, built from regions, to
// the tenant OUs, as `silo guardrails apply` does once the stack is
// deployed: the stack's daily audit checks they are there.
func applyGuardrails(ctx context.Context, org *emulator.Org, regions []string, log *slog.Logger) error {
	cfg, err := org.Config(ctx, nil)
	if err != nil {
		return err
	}
	policies, err := guardrails.Policies(guardrails.Options{AllowedRegions: regions})
	if err != nil {
		return err
	}
	if _, err := guardrails.New(organizations.NewFromConfig(cfg), log).Apply(ctx, policies, org.OUs); err != nil {
		return fmt.Errorf("apply guardrails: %w", err)
	}
	return nil
}

// startIssuer serves a new token issuer on a loopback port of its own.
func (d *Deployed) startIssuer(log *slog.Logger) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("issuer listener: %w", err)
	}
	if d.Issuer, err = issuer.New("http://"+ln.Addr().String(), issuer.Options{}); err != nil {
		ln.Close()
		return err
	}
	d.issuerSrv = server.New(d.Issuer, server.Default)
	d.serving = make(chan struct{})
	go func() {
		defer close(d.serving)
		if err := d.issuerSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("issuer stopped", "err", err)
		}
	}()
	return nil
}

// Done is closed if the emulator dies under the platform.
func (d *Deployed) Done() <-chan struct{} { return d.emu.Done() }

// Close stops the harness (every function's processes), the issuer and
// the emulator.
func (d *Deployed) Close() {
	if d.Harness != nil {
		d.Harness.Close()
	}
	if d.issuerSrv != nil {
		_ = d.issuerSrv.Close()
		<-d.serving
	}
	d.emu.Stop()
}

// String summarizes the platform for logs.
func (d *Deployed) String() string {
	return fmt.Sprintf("silo local --deployed: stack %s, emulator %s, API %s", d.Info.StackName, d.Info.AWSEndpoint, d.Info.API)
}
