package emulator

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// RunTests is a test package's TestMain body: it starts one emulator for the
// package, stores it in *e, runs the tests and stops the emulator, also when
// the run is interrupted. A missing emulator fails the package with an install
// hint; it never skips.
//
//	var emu *emulator.Emulator
//	func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }
func RunTests(m *testing.M, e **Emulator) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	started, err := Start(ctx, nil)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local AWS emulator: %v\n", err)
		return 1
	}
	*e = started
	// On Ctrl-C stop moto before dying; the parent-death signal covers
	// harder deaths (SIGKILL, a panic in a test).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sig; ok {
			started.Stop()
			os.Exit(1)
		}
	}()
	defer func() {
		signal.Stop(sig)
		close(sig)
		started.Stop()
	}()
	return m.Run()
}

// ResetT resets and seeds the emulator for one test, failing it on error.
func (e *Emulator) ResetT(t testing.TB) *Org {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o, err := e.Reset(ctx)
	if err != nil {
		t.Fatalf("reset emulator: %v", err)
	}
	return o
}
