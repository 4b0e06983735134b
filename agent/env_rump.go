//go:build rump

package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// kernelOS: the socket calls reach NetBSD's kernel code.
func kernelOS() string { return "netbsd" }

// kernelRelease says what the kernel is in the rump kernel's own words
// (kern.osrelease, kern.version), marked as a rump kernel of the sources it
// was built from, so that no report takes it for a booted NetBSD release:
// "7.99.34 (rump kernel, src-netbsd 82f3a690, 2016-08-02)".
func kernelRelease() (release, version string) {
	rel, err := sysctlString("kern.osrelease")
	if err != nil {
		rel = "unknown"
	}
	ostype, _ := sysctlString("kern.ostype")
	ver, _ := sysctlString("kern.version")
	ver = strings.Join(strings.Fields(ver), " ")
	if ver == "" {
		ver = ostype + " " + rel
	}
	return rel + " (rump kernel, " + rumpSource() + ")", ver + " (rump kernel in a " + hostOS() + " process)"
}

// hostOS names the system the rump kernel runs inside.
func hostOS() string {
	b, err := os.ReadFile("/proc/sys/kernel/ostype")
	if err != nil {
		return "host"
	}
	return strings.TrimSpace(string(b))
}

// hostname is the host's: the rump kernel has none of its own.
func hostname() string { h, _ := os.Hostname(); return h }

// rumpAgentUID is the uid of the agent's process in the rump kernel: root,
// as the kernel's init it is forked from. proc=NAME processes get it too.
const rumpAgentUID = 0

// uid is the agent's process's uid in the rump kernel (rumpAgentUID).
func uid() int {
	var u int
	do(mainProc, func() { u = rumpGetuid() })
	return u
}

// otherUID is the uid of the rump process that holds user=other sockets
// when the request names none.
const otherUID = 1000

// otherUser picks the uid for user=other sockets. A rump kernel has no user
// database, so users are uids ("uid 1000", or a number the request gives);
// the second process is the rump kernel's, so the host user needs no
// privilege for it.
func otherUser(requested string) (string, string) {
	if requested == "" {
		return "uid " + strconv.Itoa(otherUID), ""
	}
	if _, err := parseUID(requested); err != nil {
		return "", err.Error()
	}
	return "uid " + strings.TrimPrefix(requested, "uid "), ""
}

func parseUID(user string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(user, "uid "))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("a rump kernel has no users by name: other_user must be a uid other than 0, not %q", user)
	}
	return n, nil
}

// runAs is never used by the rump agent (helper.go needs it to build):
// proc= and user=other sockets live in a second rump process, not a host
// process.
func runAs(cmd *exec.Cmd, name string) error {
	return errors.New("the rump agent runs user=other sockets in a second rump process, not as a host user")
}

// aliasLoopback adds ips to lo0 as /32 aliases, as ifconfig lo0 alias does
// on a NetBSD machine, where only 127.0.0.1 is local after boot. They live
// in this process's rump kernel and go with it: remove has nothing to do.
func aliasLoopback(ips []string) (added []string, remove func() error, err error) {
	for _, ip := range ips {
		do(mainProc, func() { err = netconfig4(ip, 32) })
		if err != nil {
			return nil, nil, err
		}
	}
	return ips, func() error { return nil }, nil
}

// localUnicast: lo0 is the rump kernel's only interface.
func localUnicast() []string { return nil }
