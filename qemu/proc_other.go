//go:build !unix

package qemu

import (
	"syscall"
)

func sysProcAttr(bool) *syscall.SysProcAttr { return nil }

func listeningOn(pid, port int) bool { return dialListening(port) }
