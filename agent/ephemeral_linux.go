//go:build !rump && !fstack

package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// sysEphemeralPorts reads the range Linux picks local ports from for port 0
// and an unbound connect (net.ipv4.ip_local_port_range, which IPv6 shares).
func sysEphemeralPorts() (lo, hi int, err error) {
	const path = "/proc/sys/net/ipv4/ip_local_port_range"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %s holds %q, not two ports", path, b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %s holds %q, not two ports", path, b)
	}
	return lo, hi, nil
}
