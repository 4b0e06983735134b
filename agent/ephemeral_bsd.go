//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sysEphemeralPorts reads the range the kernel picks local ports from for
// port 0 and an unbound connect, from the two sysctls that bound it
// (ephemeralSysctls, per BSD).
func sysEphemeralPorts() (lo, hi int, err error) {
	first, err := unix.SysctlUint32(ephemeralSysctls[0])
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: sysctl %s: %w", ephemeralSysctls[0], err)
	}
	last, err := unix.SysctlUint32(ephemeralSysctls[1])
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: sysctl %s: %w", ephemeralSysctls[1], err)
	}
	if first > last { // FreeBSD accepts the pair reversed and means the same range
		first, last = last, first
	}
	return int(first), int(last), nil
}
