//go:build !rump && !fstack

package agent

import (
	"net"
	"runtime"
	"sort"
)

// This file is what the agent needs beyond socket calls when those calls
// reach the kernel it runs on (and not a kernel linked into it, as with the
// rump build, *_rump.go).

// kernelOS is the OS whose kernel the socket calls reach, as Go names it.
func kernelOS() string { return runtime.GOOS }

// onKernelThread runs the agent's run f: on the host kernel, from any
// thread.
func onKernelThread(f func()) { f() }

// goSteps runs a scenario's steps on their own goroutine, so that a call
// blocking despite its deadline cannot hang the agent.
func goSteps(f func()) { go f() }

// slowBeside: the host kernel takes calls from any thread, so slow
// scenarios run on goroutines beside the others.
const slowBeside = true

// startProcess starts a process for a scenario's proc= or user=other
// sockets: the helper, this binary run again, as user when user is not ""
// (as the agent's own user otherwise).
func startProcess(user string) (process, error) {
	h, err := startHelper(user)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// localUnicast lists this machine's non-loopback IPv4 unicast addresses,
// sorted so runs on one machine choose the same ones.
func localUnicast() []string {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range ifaddrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	sort.Strings(out)
	return out
}
