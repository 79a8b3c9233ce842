// Package cfnlint runs cfn-lint, the CloudFormation linter, on synthesized
// templates for silo's CDK tests.
package cfnlint

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
)

// Command is the linter's executable.
const Command = "cfn-lint"

// InstallHint tells a person how to get the linter.
const InstallHint = "install it with: python3 -m pip install cfn-lint"

// ErrNotInstalled means cfn-lint is not on PATH.
var ErrNotInstalled = errors.New("cfn-lint is not installed: " + InstallHint)

// Ignored lists the checks silo does not enforce. W3005 (redundant
// DependsOn) fires on every CDK template: CDK adds explicit dependencies that
// are also implied by references.
var Ignored = []string{"W3005"}

// Lint runs cfn-lint on the template at path and returns its findings as
// an error, or nil when the template is clean.
func Lint(ctx context.Context, path string) error {
	bin, err := exec.LookPath(Command)
	if err != nil {
		return ErrNotInstalled
	}
	args := []string{}
	for _, c := range Ignored {
		args = append(args, "--ignore-checks", c)
	}
	args = append(args, "--", path)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cfn-lint %s: %w\n%s", path, err, out)
	}
	return nil
}
