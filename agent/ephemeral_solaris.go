//go:build illumos || solaris

package agent

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// sysEphemeralPorts asks ipadm for TCP's anonymous port range
// (smallest_anon_port..largest_anon_port), which x/sys/unix has no call for.
func sysEphemeralPorts() (lo, hi int, err error) {
	out, err := exec.Command("/usr/sbin/ipadm", "show-prop", "-c", "-o", "current", "-p", "smallest_anon_port,largest_anon_port", "tcp").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: ipadm show-prop: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: ipadm printed %q, not two ports", out)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: ipadm printed %q, not two ports", out)
	}
	return lo, hi, nil
}
