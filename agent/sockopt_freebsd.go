package agent

import "golang.org/x/sys/unix"

// osSockopt: FreeBSD 12 added SO_REUSEPORT_LB, a SO_REUSEPORT that also
// balances load across the group the way Linux's does; older releases
// refuse it with ENOPROTOOPT, which sysSetopt reports as unsupported.
func osSockopt(name string) (int, bool) {
	switch name {
	case "SO_REUSEPORT":
		return unix.SO_REUSEPORT, true
	case "SO_REUSEPORT_LB":
		return unix.SO_REUSEPORT_LB, true
	}
	return 0, false
}
