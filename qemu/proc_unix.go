//go:build unix && !linux

package qemu

import (
	"syscall"
)

// sysProcAttr puts QEMU in its own process group, so that a Ctrl-C in lab's terminal
// reaches lab, which then stops its guests in order. Only Linux can also have QEMU killed
// when lab dies (Pdeathsig).
// A detached QEMU gets its own session instead.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true}
}

// listeningOn has no /proc to look in here, so it connects to the port.
func listeningOn(pid, port int) bool { return dialListening(port) }
