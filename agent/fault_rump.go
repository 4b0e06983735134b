//go:build rump && rumpfault

package agent

// The fault-test build (-tags rump,rumpfault) of the rump agent: a bind to
// the address in LAB_RUMP_PANIC_ON_BIND makes a call the rump kernel
// refuses with a panic instead, so a test can watch the agent die mid-run.
// The ordinary rump build has no such path (nofault_rump.go).

/*
#include <sys/types.h>
#include <stdint.h>
#include <rump/rump.h>
*/
import "C"

import (
	"net/netip"
	"os"
)

// faultBind panics the rump kernel when ap is LAB_RUMP_PANIC_ON_BIND: it
// switches the thread to the lwp it is already running, which
// rump_lwproc_switch (sys/rump/librump/rumpkern/lwproc.c) answers with
// panic("lwp %p (%d:%d) already running").
func faultBind(ap netip.AddrPort) {
	if want := os.Getenv("LAB_RUMP_PANIC_ON_BIND"); want == "" || want != ap.String() {
		return
	}
	do(mainProc, func() { C.rump_pub_lwproc_switch(C.rump_pub_lwproc_curlwp()) })
}
