package rump

import (
	"os/exec"
	"syscall"
)

// killGroup makes cmd the leader of a process group, cancelling it kill the
// whole group (make starts compilers that would outlive it), and the leader
// die with lab if lab is killed before it can cancel.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
