package main

import "github.com/spf13/cobra"

// commands lists silo's subcommands; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newLocalCmd(),
		newSynthCmd(),
		newBenchCmd(),
		newSignupCmd(),
		newTenantsCmd(),
		newPreviewCmd(),
		newReleaseCmd(),
		newRolloutCmd(),
		newAuditCmd(),
		newGuardrailsCmd(),
		newSimCmd(),
	}
}
