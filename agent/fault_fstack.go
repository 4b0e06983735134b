//go:build fstack && fstackfault

package agent

// The fault tests' build (tags fstack fstackfault): a bind to FaultPort
// makes the F-Stack process fail the way $LAB_FSTACK_FAULT says, on the
// F-Stack thread, so the tests can check what survives a real crash or
// hang. Never part of an agent lab runs.

/*
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void lab_fault_segv(void) { volatile int *p = NULL; *p = 1; }
static void lab_fault_hang(void) { for (;;) sleep(1); }
*/
import "C"

import (
	"net/netip"
	"os"
	"time"
)

// FaultPort is the port whose bind triggers the fault.
const FaultPort = 4242

func init() {
	// Shorter watchdogs, so a test of a hang takes seconds.
	if d, err := time.ParseDuration(os.Getenv("LAB_FSTACK_HANG_TIMEOUT")); err == nil {
		ffHangTimeout = d
	}
	if d, err := time.ParseDuration(os.Getenv("LAB_FSTACK_SILENCE")); err == nil {
		silenceMargin = d
	}
}

// injectFault runs on the F-Stack thread inside the bind call:
// "segv" dereferences NULL in C, "abort" calls abort(3) (as DPDK's
// rte_panic does), "hang" never returns (the loop stops), "freeze" stops
// the whole process with SIGSTOP (nothing in it can notice).
func injectFault(ap netip.AddrPort) {
	if ap.Port() != FaultPort {
		return
	}
	switch os.Getenv("LAB_FSTACK_FAULT") {
	case "segv":
		C.lab_fault_segv()
	case "abort":
		C.abort()
	case "hang":
		C.lab_fault_hang()
	case "freeze":
		C.raise(C.SIGSTOP)
	}
}
