package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/api"
)

// apiFlags are the flags of every command that talks to the API.
type apiFlags struct {
	addr, token string
	asJSON      bool
	cmd         *cobra.Command
}

// register adds the flags to cmd. --api and --token fall back to SILO_API
// and SILO_TOKEN when not given, read when the command runs (fromEnv),
// not as the flags' defaults: --help prints a flag's default, and the
// token is a secret.
func (f *apiFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.PersistentFlags().StringVar(&f.addr, "api", "", "silo API address (default $SILO_API)")
	cmd.PersistentFlags().StringVar(&f.token, "token", "", "bearer token (default $SILO_TOKEN)")
	cmd.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print JSON instead of a table")
}

// fromEnv fills --api and --token from the environment when they were
// not given (an empty --token given on purpose stays empty).
func (f *apiFlags) fromEnv() {
	if !f.cmd.PersistentFlags().Changed("api") {
		f.addr = os.Getenv("SILO_API")
	}
	if !f.cmd.PersistentFlags().Changed("token") {
		f.token = os.Getenv("SILO_TOKEN")
	}
}

func (f *apiFlags) client() (*api.Client, error) {
	f.fromEnv()
	if f.addr == "" {
		return nil, usageError{errors.New("no API address: pass --api or set SILO_API (silo local prints it)")}
	}
	c, err := api.NewClient(f.addr, f.token)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exactArgs is cobra.ExactArgs with a usage error (exit code 2).
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("expected %s", names)}
		}
		return nil
	}
}
