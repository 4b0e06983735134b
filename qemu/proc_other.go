//go:build !unix

package qemu

import (
	"syscall"
	"time"
)

const dialCheckTimeout = 200 * time.Millisecond

func sysProcAttr(bool) *syscall.SysProcAttr { return nil }

func listeningOn(pid, port int) bool { return dialListening(port) }
