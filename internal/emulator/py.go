package emulator

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

// pyPatches holds Python that moto loads at start-up (see
// py/sitecustomize.py for what it changes and why).
//
//go:embed py/sitecustomize.py
var pyPatches embed.FS

// writePatches puts the patches in a fresh directory for PYTHONPATH.
func writePatches() (string, error) {
	dir, err := os.MkdirTemp("", "silo-moto-")
	if err != nil {
		return "", fmt.Errorf("emulator patches: %w", err)
	}
	b, err := pyPatches.ReadFile("py/sitecustomize.py")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "sitecustomize.py"), b, 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("emulator patches: %w", err)
	}
	return dir, nil
}
