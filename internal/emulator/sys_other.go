//go:build !linux

package emulator

import "syscall"

// sysProcAttr puts the emulator in its own process group so Stop reaches
// every process behind it. Outside Linux there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
