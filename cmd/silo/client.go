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
}

func (f *apiFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.addr, "api", os.Getenv("SILO_API"), "silo API address (default $SILO_API)")
	cmd.PersistentFlags().StringVar(&f.token, "token", os.Getenv("SILO_TOKEN"), "bearer token (default $SILO_TOKEN)")
	cmd.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print JSON instead of a table")
}

func (f *apiFlags) client() (*api.Client, error) {
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
