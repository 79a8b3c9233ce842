package vending

import (
	"os"
	"testing"

	"github.com/silo-saas/silo/internal/emulator"
)

// emu is the package's emulator; tests that need AWS reset it.
var emu *emulator.Emulator

func TestMain(m *testing.M) { os.Exit(emulator.RunTests(m, &emu)) }
