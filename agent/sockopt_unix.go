//go:build unix && !rump && !fstack

package agent

import "golang.org/x/sys/unix"

// sockopt maps an option name to its level and number on this OS; ok is
// false when the OS does not define it. The options every Unix has are
// here; the rest come from osSockopt in the per-OS files.
func sockopt(name string, ip6 bool) (level, opt int, ok bool) {
	switch name {
	case "SO_REUSEADDR":
		return unix.SOL_SOCKET, unix.SO_REUSEADDR, true
	case "IPV6_V6ONLY":
		return unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, true
	}
	opt, ok = osSockopt(name)
	return unix.SOL_SOCKET, opt, ok
}
