//go:build !linux

package orchestrator

import "syscall"

// agentProcAttr: only Linux can tie a child's life to its parent's; the
// agent elsewhere exits when its output pipe breaks.
func agentProcAttr() *syscall.SysProcAttr { return nil }
