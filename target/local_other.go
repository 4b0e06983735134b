//go:build !linux

package target

import "syscall"

// childProcAttr: only Linux can tie a child's life to its parent's; the
// agent elsewhere exits when its output pipe breaks.
func childProcAttr() *syscall.SysProcAttr { return nil }
