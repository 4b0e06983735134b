//go:build unix && !rump && !fstack

package agent

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func kernelRelease() (release, version string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", ""
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:])
}

func hostname() string { h, _ := os.Hostname(); return h }

func uid() int { return os.Geteuid() }

// otherUser picks the unprivileged user for user=other sockets: the one the
// request names, else labother (which lab's guests have), else nobody. Only
// root can start a process as another user.
func otherUser(requested string) (string, string) {
	if os.Geteuid() != 0 {
		return "", "needs root: the agent does not run as root, so it cannot create sockets as another user"
	}
	names := []string{requested}
	if requested == "" {
		names = []string{"labother", "nobody"}
	}
	for _, n := range names {
		if u, err := user.Lookup(n); err == nil && u.Uid != "0" {
			return n, ""
		}
	}
	return "", fmt.Sprintf("needs a second user: no unprivileged user %v exists on this machine", names)
}

// runAs makes cmd run as user, with that user's primary group only.
func runAs(cmd *exec.Cmd, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("looking up user %s: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s has a non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Dir = "/"
	return nil
}
