package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/jsii-runtime-go"
	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/cdk/controlplane"
	"github.com/silo-saas/silo/cdk/tenantapp"
)

// synthResult is what `silo synth --json` prints.
type synthResult struct {
	TenantTemplate       string `json:"tenant_template"`
	ControlPlaneTemplate string `json:"control_plane_template"`
	Committed            string `json:"committed_tenant_template,omitempty"`
}

func newSynthCmd() *cobra.Command {
	var out, codeDir, commit string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "synth",
		Short: "Synthesize the tenant and control-plane CloudFormation templates",
		Long: `synth writes the tenant stack's self-contained template (the StackSet
template) and the control-plane stack's cloud assembly into --out. The
control plane needs the Lambda zips of "make build" in --code-dir.
With --commit it also refreshes the committed, embedded tenant template.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer jsii.Close()
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			tpl, err := tenantapp.Synth()
			if err != nil {
				return fmt.Errorf("synth tenant stack: %w", err)
			}
			res := synthResult{TenantTemplate: filepath.Join(out, "tenantapp.template.json")}
			if err := os.WriteFile(res.TenantTemplate, tpl, 0o644); err != nil {
				return err
			}
			if commit != "" {
				if err := os.WriteFile(commit, tpl, 0o644); err != nil {
					return err
				}
				res.Committed = commit
			}
			res.ControlPlaneTemplate, err = controlplane.Synth(out, controlplane.Props{CodeDir: codeDir})
			if err != nil {
				return fmt.Errorf("synth control plane: %w", err)
			}
			if rel, err := filepath.Rel(mustWd(), res.ControlPlaneTemplate); err == nil {
				res.ControlPlaneTemplate = rel
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintln(w, "tenant template:       ", res.TenantTemplate)
			fmt.Fprintln(w, "control-plane template:", res.ControlPlaneTemplate)
			if res.Committed != "" {
				fmt.Fprintln(w, "refreshed:             ", res.Committed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "cdk.out", "output directory")
	cmd.Flags().StringVar(&codeDir, "code-dir", controlplane.DefaultCodeDir, "directory holding the control-plane Lambda zips")
	cmd.Flags().StringVar(&commit, "commit", "", "also write the tenant template to this path (make synth: stacksets/tenantapp.template.json)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the written paths as JSON")
	return cmd
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}
