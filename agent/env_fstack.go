//go:build fstack

package agent

import (
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"

	"lab/wire"
)

// FStackKernel is what the agent reports as its kernel: FreeBSD's network
// code in user space on Linux, never a booted FreeBSD release.
const FStackKernel = "FreeBSD 13.0-stable (F-Stack bfad7eec, user-space stack)"

// notOnFStack is why scenarios about privileges cannot be measured here.
const notOnFStack = "not supported on this target: F-Stack grants every privilege"

// kernelOS: the agent speaks for FreeBSD's stack, not the Linux host.
func kernelOS() string { return "freebsd" }

func kernelRelease() (release, version string) {
	version = fmt.Sprintf("FreeBSD 13.0-stable kernel TCP/IP and socket code (__FreeBSD_version %d) in F-Stack v1.25 ", fbFreeBSDVersion) +
		"(commit bfad7eec3ed71b1e2f9eb511a477e968a4e77edc) on DPDK's net_null device"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		version += ", in a process on Linux " + unix.ByteSliceToString(u.Release[:])
	}
	return FStackKernel, version
}

func hostname() string { h, _ := os.Hostname(); return h }

// uid is the credential F-Stack's sockets carry: root's (crget in
// ff_glue.c leaves cr_uid 0), whoever runs the process.
func uid() int { return 0 }

// otherUser: F-Stack has one credential and priv_check always passes
// (ff_glue.c), so a second user's socket cannot exist.
func otherUser(string) (string, string) { return "", notOnFStack }

func runAs(*exec.Cmd, string) error { return fmt.Errorf("%s", notOnFStack) }

// notMeasurable skips scenarios whose outcome would be F-Stack's blanket
// privilege rather than FreeBSD's rule: binding a reserved port (below
// IPPORT_RESERVED: FreeBSD checks PRIV_NETINET_RESERVEDPORT in
// in_pcbbind_setup) and, through otherUser, another user's sockets.
func notMeasurable(sc wire.Scenario) string {
	for _, st := range sc.Steps {
		if st.Verb != wire.VerbBind && st.Verb != wire.VerbTimewait {
			continue
		}
		var port int
		if _, err := fmt.Sscanf(st.Port, "%d", &port); err == nil && port > 0 && port < fbIPPortReserved {
			return notOnFStack + " (scenario binds reserved port " + st.Port + ")"
		}
	}
	return ""
}

// onKernelThread runs the agent's run f on the calling goroutine: each
// ff_* call is handed to the F-Stack thread on its own (onLoop), so the
// run itself may be anywhere.
func onKernelThread(f func()) { f() }

// goSteps runs a scenario's steps on their own goroutine, as on the host:
// their calls wait for the F-Stack thread, never block it.
func goSteps(f func()) { go f() }

// startOther is never called: otherUser leaves no user to start.
func startOther(string) (otherProcess, error) { return nil, fmt.Errorf("%s", notOnFStack) }

// localUnicast: F-Stack's stack has none of the host's addresses, so if
// lo0's aliases cannot be added there is nothing to fall back on.
func localUnicast() []string { return nil }
