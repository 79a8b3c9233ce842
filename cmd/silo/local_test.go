package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLocalDeployedFlags: what does not apply to the deployed topology,
// or applies to it only, is a usage error naming the flag, before
// anything starts.
func TestLocalDeployedFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--deployed", "--demo"}, "--demo"},
		{[]string{"--deployed", "--pool-size", "3"}, "--pool-size"},
		{[]string{"--deployed", "--probe-every", "1s"}, "--probe-every"},
		{[]string{"--speed", "10"}, "--speed"},
		{[]string{"--function-logs", "/tmp/x"}, "--function-logs"},
		{[]string{"--source", "."}, "--source"},
		{[]string{"--deployed", "--speed", "0.5"}, "--speed"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{"local"}, c.args...))
			err := root.ExecuteContext(t.Context())
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("silo local %s: %v, want a usage error naming %s", strings.Join(c.args, " "), err, c.want)
			}
		})
	}
}
