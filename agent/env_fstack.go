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

// oneProcess is why scenarios with proc= sockets cannot be measured here:
// F-Stack's stack lives inside the agent's process, and no other process
// can have sockets in it.
const oneProcess = "not supported on this target: F-Stack's stack lives in one process, so no second process can hold sockets (proc=)"

// noLingerWait is why a close that lingers cannot be measured here.
const noLingerWait = "not supported on this target: F-Stack cannot sleep (_sleep returns EPERM, lib/ff_kern_synch.c), so a close with SO_LINGER on a time cannot wait it out"

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

// notMeasurable skips scenarios whose outcome would be F-Stack's rather
// than FreeBSD's: binding a reserved port (below IPPORT_RESERVED: FreeBSD
// checks PRIV_NETINET_RESERVEDPORT in in_pcbbind_setup) and, through
// otherUser, another user's sockets, as F-Stack grants every privilege;
// sockets of a second process (proc=), as F-Stack has one; and a close
// that lingers on a time, as F-Stack cannot wait (noLingerWait).
func notMeasurable(sc wire.Scenario) string {
	lingering := map[string]bool{}
	for _, st := range sc.Steps {
		if st.Proc != "" {
			return oneProcess
		}
		for _, o := range st.Options {
			if o.Name == "SO_LINGER" && (st.Verb == wire.VerbSocket || st.Verb == wire.VerbSetopt) {
				lingering[st.Sock] = !o.Off && o.Value > 0
			}
		}
		if st.Verb == wire.VerbClose && lingering[st.Sock] {
			return noLingerWait
		}
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

// slowBeside: as the steps of any goroutine, a slow scenario's calls are
// tasks the F-Stack thread runs one at a time between the others' (onLoop),
// so slow scenarios run beside the others, interleaved on that one thread;
// their waits (waitfree's, sleep's) are on their own goroutines.
const slowBeside = true

// startProcess is never called: notMeasurable skips scenarios with proc=
// sockets, and otherUser leaves no user for user=other ones.
func startProcess(string) (process, error) { return nil, fmt.Errorf("%s", oneProcess) }

// localUnicast: F-Stack's stack has none of the host's addresses, so if
// lo0's aliases cannot be added there is nothing to fall back on.
func localUnicast() []string { return nil }
