package bench

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/silo-saas/silo/internal/emulator"
)

var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }

// mayBeZero are the fault kinds a short soak may legitimately not inject:
//   - "creation refused at 5 in progress": the quota governor keeps the
//     creations in progress under AWS's limit, so the proxy never has to
//     refuse one (a refusal would be a governor bug, and still survived);
//   - "StackSet operation busy": another operation must be running on the
//     stack set at the very moment one starts, which depends on timing;
//   - "API call retried": the soak retries a 5xx, a 429 or a broken
//     connection; throttled registry calls are retried inside the API by
//     the SDK, so the API rarely answers 5xx at all.
var mayBeZero = map[string]bool{
	"creation refused at 5 in progress":              true,
	"StackSet operation busy":                        true,
	"API call retried (5xx, 429, broken connection)": true,
}

// TestSoak is the short soak: the same code as `silo bench soak`, with 24
// tenants for 90 seconds under every fault at once. Every check must pass,
// and every kind of fault must have been injected and survived.
func TestSoak(t *testing.T) {
	var progress bytes.Buffer
	res, err := Soak(t.Context(), SoakOptions{
		Tenants: 24, Duration: 90 * time.Second, Faults: "mixed", Emulator: emu,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	}, &progress)
	if err != nil {
		t.Fatalf("soak: %v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Logf("progress:\n%s\n%s", progress.String(), out.String())
	for _, c := range res.Checks {
		if !c.Pass {
			t.Errorf("check %q failed: %v", c.Name, c.Problems)
		}
	}
	for _, f := range res.Faults {
		if !f.Survived {
			t.Errorf("fault %q (%d injected) not survived", f.Kind, f.Injected)
		}
		if f.Injected == 0 && !mayBeZero[f.Kind] {
			t.Errorf("fault %q never injected", f.Kind)
		}
	}
	if len(res.Faults) < 14 {
		t.Errorf("%d kinds of fault in the table, want every kind of the mixed set", len(res.Faults))
	}
}
