package emulator

import "syscall"

// sysProcAttr puts the emulator in its own process group (so Stop reaches
// the python behind a shim) and has the kernel kill it when silo dies, even
// by SIGKILL or a test binary's panic.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
