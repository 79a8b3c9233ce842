package main

import "github.com/spf13/cobra"

func newLocalCmd() *cobra.Command {
	return &cobra.Command{Use: "local", Short: "Run the whole platform on this machine (in progress)"}
}
