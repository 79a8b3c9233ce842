// Command silo is silo's one CLI: the local platform, tenants, previews,
// fleet, rollouts, the isolation audit, the guardrails and synth. It only
// parses flags and wires packages together; the work happens in the
// packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes: 0 ok, 1 failure, 2 usage, 3 superseded (preview up --wait:
// another up's build replaced this one's).
const (
	exitFailure    = 1
	exitUsage      = 2
	exitSuperseded = 3
)

// usageError marks an error the caller made in the command line.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "silo:", err)
	var ue usageError
	// cobra reports missing required flags as a plain error: a usage error.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "required flag") {
		os.Exit(exitUsage)
	}
	var se supersededError
	if errors.As(err, &se) {
		os.Exit(exitSuperseded)
	}
	os.Exit(exitFailure)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "silo",
		Short: "Account-vending platform: one AWS account per tenant",
		Long: `silo vends one AWS account per tenant, deploys the tenant's application stack
into it with CloudFormation StackSets, keeps a DynamoDB tenant registry, and
probes every tenant endpoint of the fleet.

Run "silo local" for the whole platform on this machine, backed by a local
AWS emulator; no AWS account is needed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(commands()...)
	return root
}
