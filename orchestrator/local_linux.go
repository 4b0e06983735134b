package orchestrator

import "syscall"

// agentProcAttr makes the kernel kill the local agent if lab dies, so a
// crashed lab leaves no agent behind.
func agentProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
