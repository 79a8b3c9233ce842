package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silo-saas/silo/internal/server"
	"github.com/silo-saas/silo/internal/sim"
)

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Simulators for tests and benchmarks"}
	cmd.AddCommand(newSimFleetCmd())
	return cmd
}

// modeNames maps the CLI's names to simulator modes.
var modeNames = map[string]sim.Mode{
	"up": sim.Up, "down": sim.Down, "slow": sim.Slow, "hang": sim.Hang, "flap": sim.Flap, "bad-body": sim.BadBody,
}

func newSimFleetCmd() *cobra.Command {
	var endpoints, listeners int
	var latMin, latMax, slow time.Duration
	var targetsFile, controlAddr string
	share := map[string]*float64{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Serve N simulated tenant endpoints on loopback",
		Long: `fleet serves N virtual tenant endpoints (GET /t/<id>/health) spread over a
few loopback listeners, each with a behaviour: up (latency drawn uniformly
from --latency-min..--latency-max), down (503), slow, hang (never answers),
flap (fails one request in two), bad-body (200 with status "degraded").
The --<mode> flags give the percentage of endpoints in each mode; the rest
are up.

Behaviours can change while it runs, through its control endpoint:
  curl -X POST '<control>/behaviour?id=<tenant>&mode=down[&every=N]'

With --targets-file F it writes the targets (tenant id and URL) as JSON to F
once serving. It runs until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if endpoints <= 0 {
				return usageError{errors.New("--endpoints must be positive")}
			}
			// Endpoint i's mode: the percentages fill the fleet in order.
			var bounds []struct {
				upto int
				mode sim.Mode
			}
			total := 0.0
			for _, name := range []string{"down", "slow", "hang", "flap", "bad-body"} {
				pct := *share[name]
				if pct < 0 || pct > 100 {
					return usageError{fmt.Errorf("--%s must be a percentage from 0 to 100", name)}
				}
				total += pct
				bounds = append(bounds, struct {
					upto int
					mode sim.Mode
				}{int(float64(endpoints) * total / 100), modeNames[name]})
			}
			if total > 100 {
				return usageError{errors.New("the mode percentages add up to more than 100")}
			}
			f, err := sim.Start(cmd.Context(), sim.Options{
				Endpoints: endpoints, Listeners: listeners, Latency: sim.Uniform(latMin, latMax), SlowLatency: slow,
				Behaviour: func(i int) sim.Behaviour {
					for _, b := range bounds {
						if i < b.upto {
							return sim.Behaviour{Mode: b.mode, Every: 2}
						}
					}
					return sim.Behaviour{Mode: sim.Up}
				},
			})
			if err != nil {
				return err
			}
			defer f.Close()
			ln, err := net.Listen("tcp", controlAddr)
			if err != nil {
				return fmt.Errorf("control listener: %w", err)
			}
			control := server.New(simControl(f), server.Default)
			served := make(chan error, 1)
			go func() { served <- control.Serve(ln) }()
			defer func() { _ = control.Close(); <-served }()

			if targetsFile != "" {
				if err := writeJSONFile(targetsFile, f.Targets()); err != nil {
					return err
				}
				defer os.Remove(targetsFile)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "endpoints\t%d over %d listeners\n", endpoints, listeners)
			for _, name := range []string{"down", "slow", "hang", "flap", "bad-body"} {
				if *share[name] > 0 {
					fmt.Fprintf(tw, "%s\t%g%%\n", name, *share[name])
				}
			}
			fmt.Fprintf(tw, "control\thttp://%s/behaviour?id=<tenant>&mode=<%s>\n", ln.Addr(), strings.Join(modeList(), "|"))
			if targetsFile != "" {
				fmt.Fprintf(tw, "targets\t%s\n", targetsFile)
			}
			tw.Flush()
			fmt.Fprintln(cmd.ErrOrStderr(), "serving; press Ctrl-C to stop.")
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&endpoints, "endpoints", 100, "number of tenant endpoints")
	cmd.Flags().IntVar(&listeners, "listeners", 4, "loopback listeners the endpoints are spread over")
	cmd.Flags().DurationVar(&latMin, "latency-min", 20*time.Millisecond, "fastest answer of an up endpoint")
	cmd.Flags().DurationVar(&latMax, "latency-max", 200*time.Millisecond, "slowest answer of an up endpoint")
	cmd.Flags().DurationVar(&slow, "slow-latency", 3*time.Second, "how long a slow endpoint takes")
	cmd.Flags().StringVar(&targetsFile, "targets-file", "", "write the targets as JSON to this file once serving")
	cmd.Flags().StringVar(&controlAddr, "control-addr", "127.0.0.1:0", "where the control endpoint listens")
	for _, name := range []string{"down", "slow", "hang", "flap", "bad-body"} {
		share[name] = cmd.Flags().Float64(name, 0, "percent of endpoints that are "+name)
	}
	return cmd
}

func modeList() []string {
	return []string{"up", "down", "slow", "hang", "flap", "bad-body"}
}

// simControl changes endpoint behaviours while the fleet runs.
func simControl(f *sim.Fleet) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /behaviour", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mode, ok := modeNames[q.Get("mode")]
		if !ok {
			http.Error(w, "mode must be one of "+strings.Join(modeList(), ", "), http.StatusBadRequest)
			return
		}
		every := 2
		if s := q.Get("every"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				http.Error(w, "every must be a positive whole number", http.StatusBadRequest)
				return
			}
			every = n
		}
		if err := f.SetBehaviour(q.Get("id"), sim.Behaviour{Mode: mode, Every: every}); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
