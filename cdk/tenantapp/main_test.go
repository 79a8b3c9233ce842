package tenantapp

import (
	"fmt"
	"os"
	"testing"

	"github.com/aws/jsii-runtime-go"

	"github.com/silo-saas/silo/internal/emulator"
)

var (
	emu *emulator.Emulator
	// template is synthesized once for the package: synthesis costs seconds
	// (a Node process through jsii), every test only reads the result.
	template []byte
)

func TestMain(m *testing.M) {
	b, err := Synth()
	jsii.Close() // once, after the only synthesis
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: synthesize tenant stack: %v\n", err)
		os.Exit(1)
	}
	template = b
	os.Exit(emulator.RunTests(m, &emu))
}
