package target

import "syscall"

// childProcAttr makes the kernel kill a child of lab (the local agent, a
// wineserver) if lab dies, so a crashed lab leaves no process behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
